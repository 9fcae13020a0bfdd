import { randomUUID } from 'node:crypto';
import { createSigner, createVerifier } from 'fast-jwt';
import type { LoginBody, PasswordChange, Tokens, User } from '@fieldsync/protocol/auth';
import type { Db } from '../../db/db.js';
import { AppError } from '../../errors.js';
import { TtlCache } from '../../lib/ttl-cache.js';
import * as repo from './auth.repository.js';
import { dummyPasswordHash, generateRefreshToken, hashPassword, sha256, verifyPassword } from './credentials.js';
import { addressKey, type LoginThrottle } from './login-throttle.js';
import type { Principal } from './principal.js';

const REFRESH_TOKEN_TTL_MS = 30 * 24 * 3600 * 1000;

/** Where a login attempt comes from: the client address (the socket's unless TRUST_PROXY says otherwise). */
export interface LoginClient {
  address: string;
}

export interface AuthService {
  /** The caller of an API key; `agentCode`, when sent, must match the key's agent. */
  authenticateApiKey(key: string, opts?: { agentCode?: string; deviceId?: string }): Promise<Principal>;
  /** The caller of an access token. */
  authenticateAccessToken(token: string, opts?: { deviceId?: string }): Promise<Principal>;
  /** One password check per attempt, throttled per account and per client address (429). */
  login(body: LoginBody, client: LoginClient): Promise<Tokens>;
  /** A user changes their own password (throttled like logins); every refresh token of theirs is revoked. */
  changePassword(p: Principal, body: PasswordChange, client: LoginClient): Promise<void>;
  refresh(refreshToken: string): Promise<Tokens>;
  logout(refreshToken: string): Promise<void>;
  /** Forget cached credentials of a user (after deactivation or key revocation). */
  forgetUser(userId: string): void;
}

const unauthorized = (message = 'Missing or invalid credentials') => new AppError('UNAUTHORIZED', message);

/** The one answer to every failed login: it never says which of login and password was wrong. */
const loginFailed = () =>
  unauthorized('Wrong login or password (a login used in several tenants names its tenant: "tenant", or login@tenant-slug)');

const tooManyAttempts = (retryAfterMs: number) => {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new AppError('RATE_LIMITED', `Too many failed password attempts; retry in ${seconds} seconds`, undefined, { 'retry-after': String(seconds) });
};

/** A tenant slug after the last `@`: it has no dot, which every email domain has. */
const SLUG_SUFFIX = /^(.+)@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/i;

/** The login and the tenant it names: the `tenant` field, else an `@slug` suffix of the login. */
export function parseLogin(login: string, tenant?: string): { name: string; slug?: string } {
  if (tenant !== undefined) return { name: login, slug: tenant };
  const suffix = SLUG_SUFFIX.exec(login);
  return suffix ? { name: suffix[1], slug: suffix[2].toLowerCase() } : { name: login };
}

/** The throttle key of an account, or of a login that names none (unknown or ambiguous). */
const accountKey = (user: repo.UserRow | undefined, name: string, slug: string | undefined) =>
  user ? `u:${user.id}` : `n:${slug ?? ''}:${sha256(name.toLowerCase()).slice(0, 32)}`;

export function toUser(row: repo.UserRow): User {
  return {
    id: row.id,
    tenantId: row.tenantId,
    agentCode: row.agentCode,
    name: row.name,
    email: row.email,
    role: row.role,
    isActive: row.isActive,
    createdAt: row.createdAt.toISOString(),
    lastSeenAt: row.lastSeenAt ? row.lastSeenAt.toISOString() : null,
  };
}

/**
 * API keys, access tokens (JWT, ACCESS_TOKEN_TTL_SECONDS), passwords and rotating refresh
 * tokens. A refresh token is used once; presenting a used one again means it leaked, so its
 * whole family is revoked. Logins: docs/security.md "Logins".
 */
export function createAuthService(deps: {
  db: Db;
  jwtSecret: string;
  cacheMs: number;
  accessTokenTtlSeconds: number;
  throttle: LoginThrottle;
}): AuthService {
  const { db, throttle } = deps;
  const ttlSeconds = deps.accessTokenTtlSeconds;
  const sign = createSigner({ key: deps.jwtSecret, algorithm: 'HS256', expiresIn: ttlSeconds * 1000 });
  const verify = createVerifier({ key: deps.jwtSecret, algorithms: ['HS256'], cache: 1000 });
  // Key lookups are cached briefly: the hot path (every pull) then costs no query.
  const keyCache = new TtlCache<string, repo.KeyLookupRow>(deps.cacheMs, 10_000);
  const userCache = new TtlCache<string, repo.UserRow>(deps.cacheMs, 10_000);
  /** Whether a session (refresh-token family) was revoked: logout, a password change, token reuse. */
  const sessionCache = new TtlCache<string, boolean>(deps.cacheMs, 10_000);

  const activeOrThrow = (user: repo.UserRow) => {
    if (!user.isActive) throw new AppError('FORBIDDEN', 'This agent is inactive');
  };

  const issueTokens = async (user: repo.UserRow, familyId: string): Promise<Tokens> => {
    const refreshToken = generateRefreshToken();
    await repo.insertRefreshToken(db, {
      tenantId: user.tenantId,
      userId: user.id,
      familyId,
      tokenHash: sha256(refreshToken),
      expiresAt: new Date(Date.now() + REFRESH_TOKEN_TTL_MS),
    });
    // `sid` names the session (the refresh-token family): logging out ends its access tokens too.
    const accessToken = sign({ sub: user.id, tid: user.tenantId, role: user.role, code: user.agentCode, sid: familyId });
    return { accessToken, refreshToken, expiresIn: ttlSeconds, user: toUser(user) };
  };

  /**
   * Exactly one argon2 verification of `password`, against `user`'s hash or, when there is no
   * account or it has no password, against a dummy hash: a refusal takes as long either way.
   * Admitted by the throttle on `keys` (the account's first; 429 while locked). The account
   * when the password is right and `usable` accepts it; else the attempt counts as a failure.
   */
  const checkPassword = async (
    user: repo.UserRow | undefined,
    password: string,
    keys: string[],
    usable: (user: repo.UserRow) => boolean,
  ): Promise<repo.UserRow | undefined> => {
    const verdict = await throttle.begin(keys);
    if (!verdict.ok) throw tooManyAttempts(verdict.retryAfterMs);
    let passed: repo.UserRow | undefined;
    try {
      const right = await verifyPassword(user?.passwordHash ?? (await dummyPasswordHash()), password);
      if (right && user?.passwordHash && usable(user)) passed = user;
    } finally {
      if (!passed) await throttle.fail(verdict.attempt);
    }
    if (passed) await throttle.succeed(verdict.attempt, [keys[0]]);
    return passed;
  };

  return {
    async authenticateApiKey(key, opts = {}) {
      if (key.length < 16 || key.length > 256) throw unauthorized();
      const hash = sha256(key);
      let row = keyCache.get(hash);
      if (!row) {
        row = await repo.findUserByKeyHash(db, hash);
        if (!row) throw unauthorized('Unknown or revoked API key');
        keyCache.set(hash, row);
        void repo.touchKey(db, row.keyId).catch(() => {});
      }
      activeOrThrow(row);
      if (opts.agentCode !== undefined && opts.agentCode !== row.agentCode) {
        throw unauthorized('X-Agent-Code does not match the API key');
      }
      return {
        tenantId: row.tenantId,
        userId: row.id,
        agentCode: row.agentCode,
        role: row.role,
        keyId: row.keyId,
        deviceId: opts.deviceId,
        via: 'apiKey',
      };
    },

    async authenticateAccessToken(token, opts = {}) {
      let claims: { sub: string; tid: string; sid?: string };
      try {
        claims = verify(token) as { sub: string; tid: string; sid?: string };
      } catch {
        throw unauthorized('Invalid or expired access token');
      }
      if (claims.sid) {
        let revoked = sessionCache.get(claims.sid);
        if (revoked === undefined) {
          revoked = await repo.isFamilyRevoked(db, claims.sid);
          sessionCache.set(claims.sid, revoked);
        }
        if (revoked) throw unauthorized('This session has ended: log in again');
      }
      const cacheKey = `${claims.tid}:${claims.sub}`;
      let user = userCache.get(cacheKey);
      if (!user) {
        user = await repo.findUserById(db, claims.tid, claims.sub);
        if (!user) throw unauthorized('Unknown user');
        userCache.set(cacheKey, user);
      }
      activeOrThrow(user);
      return {
        tenantId: user.tenantId,
        userId: user.id,
        agentCode: user.agentCode,
        role: user.role,
        deviceId: opts.deviceId,
        via: 'jwt',
      };
    },

    async login({ login, password, tenant }, client) {
      const { name, slug } = parseLogin(login, tenant);
      const candidates = await repo.findLoginCandidates(db, name, slug);
      // A named tenant has at most one user with the login; without one, tenant `default`'s
      // user, else the only one. Several without a name: no account (name the tenant).
      const account = slug !== undefined || candidates[0]?.inDefault || candidates.length === 1 ? candidates[0] : undefined;
      const keys = [accountKey(account, name, slug), `ip:${addressKey(client.address)}`];
      // An inactive account answers like a wrong password: no answer tells the password was right.
      const user = await checkPassword(account, password, keys, (u) => u.isActive);
      if (!user) throw loginFailed();
      await db.query('UPDATE users SET last_seen_at = now() WHERE id = $1', [user.id]);
      return issueTokens(user, randomUUID());
    },

    async changePassword(p, body, client) {
      const account = await repo.findUserById(db, p.tenantId, p.userId);
      const keys = [accountKey(account, p.agentCode, undefined), `ip:${addressKey(client.address)}`];
      const user = await checkPassword(account, body.currentPassword, keys, () => true);
      if (!user) {
        // Not a 401: the caller's credentials are fine, and clients take a 401 for a lost session.
        throw new AppError('VALIDATION_FAILED', 'currentPassword is not the current password', [
          { field: 'currentPassword', message: 'is not the current password' },
        ]);
      }
      const hash = await hashPassword(body.newPassword);
      await db.transaction(async (tx) => {
        await repo.updatePasswordHash(tx, user.tenantId, user.id, hash);
        await repo.revokeUserRefreshTokens(tx, user.tenantId, user.id);
      });
    },

    async refresh(refreshToken) {
      const outcome = await db.transaction(async (tx) => {
        const row = await repo.findRefreshTokenForUpdate(tx, sha256(refreshToken));
        if (!row || row.revokedAt) return { error: unauthorized('Invalid refresh token') };
        if (row.usedAt) {
          // Reuse of a rotated token: someone else has it. Revoke the family, keep the revocation.
          await repo.revokeRefreshFamily(tx, row.familyId);
          return { error: unauthorized('Refresh token reuse detected; the session was revoked') };
        }
        if (row.expiresAt.getTime() < Date.now()) return { error: unauthorized('Refresh token expired') };
        const user = await repo.findUserById(tx, row.tenantId, row.userId);
        if (!user) return { error: unauthorized('Unknown user') };
        activeOrThrow(user);
        await repo.markRefreshTokenUsed(tx, row.id);
        return { user, familyId: row.familyId };
      });
      if ('error' in outcome) throw outcome.error;
      return issueTokens(outcome.user as repo.UserRow, outcome.familyId as string);
    },

    async logout(refreshToken) {
      await db.transaction(async (tx) => {
        const row = await repo.findRefreshTokenForUpdate(tx, sha256(refreshToken));
        if (row) await repo.revokeRefreshFamily(tx, row.familyId);
      });
      sessionCache.clear();
    },

    forgetUser(userId) {
      keyCache.deleteWhere((row) => row.id === userId);
      userCache.deleteWhere((row) => row.id === userId);
      sessionCache.clear();
    },
  };
}
