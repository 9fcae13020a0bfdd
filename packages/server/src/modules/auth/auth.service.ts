import { randomUUID } from 'node:crypto';
import { createSigner, createVerifier } from 'fast-jwt';
import type { LoginBody, Tokens, User } from '@fieldsync/protocol/auth';
import type { Db } from '../../db/db.js';
import { AppError } from '../../errors.js';
import { TtlCache } from '../../lib/ttl-cache.js';
import * as repo from './auth.repository.js';
import { generateRefreshToken, sha256, verifyPassword } from './credentials.js';
import type { Principal } from './principal.js';

export const ACCESS_TOKEN_TTL_S = 15 * 60;
const REFRESH_TOKEN_TTL_MS = 30 * 24 * 3600 * 1000;

export interface AuthService {
  /** The caller of an API key; `agentCode`, when sent, must match the key's agent. */
  authenticateApiKey(key: string, opts?: { agentCode?: string; deviceId?: string }): Promise<Principal>;
  /** The caller of an access token. */
  authenticateAccessToken(token: string, opts?: { deviceId?: string }): Promise<Principal>;
  login(body: LoginBody): Promise<Tokens>;
  refresh(refreshToken: string): Promise<Tokens>;
  logout(refreshToken: string): Promise<void>;
  /** Forget cached credentials of a user (after deactivation or key revocation). */
  forgetUser(userId: string): void;
}

const unauthorized = (message = 'Missing or invalid credentials') => new AppError('UNAUTHORIZED', message);

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
 * API keys, access tokens (JWT, 15 min) and rotating refresh tokens. A refresh token is used
 * once; presenting a used one again means it leaked, so its whole family is revoked.
 */
export function createAuthService(deps: { db: Db; jwtSecret: string; cacheMs: number }): AuthService {
  const { db } = deps;
  const sign = createSigner({ key: deps.jwtSecret, algorithm: 'HS256', expiresIn: ACCESS_TOKEN_TTL_S * 1000 });
  const verify = createVerifier({ key: deps.jwtSecret, algorithms: ['HS256'], cache: 1000 });
  // Key lookups are cached briefly: the hot path (every pull) then costs no query.
  const keyCache = new TtlCache<string, repo.KeyLookupRow>(deps.cacheMs, 10_000);
  const userCache = new TtlCache<string, repo.UserRow>(deps.cacheMs, 10_000);

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
    const accessToken = sign({ sub: user.id, tid: user.tenantId, role: user.role, code: user.agentCode });
    return { accessToken, refreshToken, expiresIn: ACCESS_TOKEN_TTL_S, user: toUser(user) };
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
      let claims: { sub: string; tid: string };
      try {
        claims = verify(token) as { sub: string; tid: string };
      } catch {
        throw unauthorized('Invalid or expired access token');
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

    async login({ login, password, tenant }) {
      // A named tenant scopes the login to it; otherwise the password must single out one user.
      const candidates = (await repo.findUsersByLogin(db, login, tenant)).filter((u) => u.passwordHash !== null);
      const matches: repo.UserRow[] = [];
      for (const user of candidates) {
        if (await verifyPassword(user.passwordHash as string, password)) matches.push(user);
      }
      if (matches.length > 1) throw new AppError('CONFLICT', 'This login exists in several tenants: name the tenant');
      const user = matches[0];
      if (!user) throw unauthorized('Wrong login or password');
      activeOrThrow(user);
      await db.query('UPDATE users SET last_seen_at = now() WHERE id = $1', [user.id]);
      return issueTokens(user, randomUUID());
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
    },

    forgetUser(userId) {
      keyCache.deleteWhere((row) => row.id === userId);
      userCache.deleteWhere((row) => row.id === userId);
    },
  };
}
