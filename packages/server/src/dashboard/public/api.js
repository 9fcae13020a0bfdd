/** The API client of the dashboard: bearer tokens in sessionStorage, one refresh on a 401. */
const KEY = 'fieldsync.dashboard.session';

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error;
  }
}

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
    } catch {
      return null;
    }
  },
  set(value) {
    if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
    else sessionStorage.removeItem(KEY);
  },
};

async function send(method, path, body, token) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed };
}

export async function login(loginName, password) {
  const res = await send('POST', '/api/auth/login', { login: loginName, password });
  if (res.status !== 200) throw new ApiError(res.status, res.body);
  const data = res.body.data;
  session.set({ accessToken: data.accessToken, refreshToken: data.refreshToken, user: data.user });
  return data;
}

let refreshing;
/** Trades the refresh token for new tokens once, however many requests ask at the same time. */
export function refresh() {
  refreshing ??= (async () => {
    const current = session.get();
    if (!current?.refreshToken) throw new ApiError(401, { message: 'Signed out' });
    const res = await send('POST', '/api/auth/refresh', { refreshToken: current.refreshToken });
    if (res.status !== 200) {
      session.set(null);
      throw new ApiError(res.status, res.body);
    }
    session.set({ ...current, accessToken: res.body.data.accessToken, refreshToken: res.body.data.refreshToken });
  })().finally(() => {
    refreshing = undefined;
  });
  return refreshing;
}

/** Calls the API as the signed-in user; answers `data` (and `pagination`) or throws ApiError. */
export async function api(method, path, body) {
  let res = await send(method, path, body, session.get()?.accessToken);
  if (res.status === 401 && session.get()?.refreshToken) {
    await refresh();
    res = await send(method, path, body, session.get()?.accessToken);
  }
  if (res.status < 200 || res.status >= 300 || !res.body?.success) throw new ApiError(res.status, res.body);
  return res.body;
}

export async function logout() {
  const current = session.get();
  session.set(null);
  if (current?.refreshToken) await send('POST', '/api/auth/logout', { refreshToken: current.refreshToken }, current.accessToken).catch(() => {});
}
