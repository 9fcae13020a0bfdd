/**
 * Who is signed in on this browser: tokens from `POST /api/auth/login` (login + password),
 * refreshed before they expire, kept in localStorage so the app opens offline after a reload;
 * and this browser's device id for that user (a device id belongs to one user).
 */
export interface SessionUser {
  id: string;
  name: string;
  agentCode: string;
  role: string;
}

interface Session {
  accessToken: string;
  refreshToken: string;
  /** Epoch ms when the access token expires. */
  expiresAt: number;
  user: SessionUser;
}

const SESSION = 'fieldsync.app.session';
const DEVICES = 'fieldsync.app.devices';

export class LoginError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

function read<T>(key: string): T | null {
  try {
    return JSON.parse(localStorage.getItem(key) ?? 'null') as T | null;
  } catch {
    return null;
  }
}

export function currentSession(): Session | null {
  return read<Session>(SESSION);
}

function save(session: Session | null): void {
  if (session) localStorage.setItem(SESSION, JSON.stringify(session));
  else localStorage.removeItem(SESSION);
}

async function post(path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  let parsed: any;
  try {
    parsed = await res.json();
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed };
}

function fromTokens(data: { accessToken: string; refreshToken: string; expiresIn: number }, user: SessionUser): Session {
  return { accessToken: data.accessToken, refreshToken: data.refreshToken, expiresAt: Date.now() + data.expiresIn * 1000, user };
}

export async function login(loginName: string, password: string): Promise<Session> {
  let res;
  try {
    res = await post('/api/auth/login', { login: loginName, password });
  } catch {
    throw new LoginError('No network: signing in needs a connection (once; then the app works offline).', 0);
  }
  if (res.status !== 200 || !res.body?.success) {
    const message = res.status === 429 ? 'Too many attempts; wait a little and try again.' : (res.body?.message ?? `Sign-in failed (HTTP ${res.status})`);
    throw new LoginError(message, res.status);
  }
  const { user } = res.body.data;
  const session = fromTokens(res.body.data, { id: user.id, name: user.name, agentCode: user.agentCode, role: user.role });
  save(session);
  return session;
}

let refreshing: Promise<string> | undefined;

/**
 * A valid access token: the current one, or a refreshed one when it expires within a minute.
 * Offline (the refresh cannot be made) it answers the current one: requests fail and are retried anyway.
 */
export function accessToken(): Promise<string> {
  const session = currentSession();
  if (!session) return Promise.reject(new Error('Signed out'));
  if (session.expiresAt - Date.now() > 60_000) return Promise.resolve(session.accessToken);
  refreshing ??= (async () => {
    try {
      const res = await post('/api/auth/refresh', { refreshToken: session.refreshToken });
      if (res.status === 200 && res.body?.success) {
        const next = fromTokens(res.body.data, session.user);
        save(next);
        return next.accessToken;
      }
      if (res.status === 401) {
        save(null); // the refresh token is dead (expired, revoked, reused): sign in again
        location.reload();
      }
      return session.accessToken;
    } catch {
      return session.accessToken;
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

export async function logout(): Promise<void> {
  const session = currentSession();
  save(null);
  if (!session) return;
  await fetch('/api/auth/logout', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refreshToken: session.refreshToken }),
  }).catch(() => undefined);
}

/** This browser's device id for `userId`, made once and kept. */
export function deviceIdFor(userId: string): string {
  const devices = read<Record<string, string>>(DEVICES) ?? {};
  if (!devices[userId]) {
    devices[userId] = `web-${crypto.randomUUID()}`;
    localStorage.setItem(DEVICES, JSON.stringify(devices));
  }
  return devices[userId];
}
