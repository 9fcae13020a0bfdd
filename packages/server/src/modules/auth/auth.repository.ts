import type { Queryable } from '../../db/db.js';
import type { Role } from '@fieldsync/protocol/auth';

export interface UserRow {
  id: string;
  tenantId: string;
  agentCode: string;
  name: string;
  email: string | null;
  role: Role;
  isActive: boolean;
  passwordHash: string | null;
  createdAt: Date;
  lastSeenAt: Date | null;
}

const USER_COLUMNS = `u.id, u.tenant_id AS "tenantId", u.agent_code AS "agentCode", u.name, u.email, u.role,
  u.is_active AS "isActive", u.password_hash AS "passwordHash", u.created_at AS "createdAt",
  u.last_seen_at AS "lastSeenAt"`;

export interface KeyLookupRow extends UserRow {
  keyId: string;
}

export async function findUserByKeyHash(db: Queryable, keyHash: string): Promise<KeyLookupRow | undefined> {
  const { rows } = await db.query<KeyLookupRow>(
    `SELECT ${USER_COLUMNS}, k.id AS "keyId"
       FROM api_keys k JOIN users u ON u.id = k.user_id AND u.tenant_id = k.tenant_id
      WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
    [keyHash],
  );
  return rows[0];
}

export async function findUserById(db: Queryable, tenantId: string, userId: string): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.id = $2`, [
    tenantId,
    userId,
  ]);
  return rows[0];
}

export interface LoginCandidate extends UserRow {
  /** In tenant `default`, whose users a login without a tenant means first. */
  inDefault: boolean;
}

/**
 * Users whose agent code or email is `login`, in the tenant of slug `tenant` or, without one,
 * across tenants with those of tenant `default` first. At most 2: enough to tell one from many.
 */
export async function findLoginCandidates(db: Queryable, login: string, tenant: string | undefined): Promise<LoginCandidate[]> {
  const { rows } = await db.query<LoginCandidate>(
    `SELECT ${USER_COLUMNS}, t.slug = 'default' AS "inDefault"
       FROM users u JOIN tenants t ON t.id = u.tenant_id
      WHERE (u.agent_code = $1 OR lower(u.email) = lower($1)) AND ($2::text IS NULL OR t.slug = $2)
      ORDER BY t.slug = 'default' DESC, u.created_at LIMIT 2`,
    [login, tenant ?? null],
  );
  return rows;
}

export async function updatePasswordHash(db: Queryable, tenantId: string, userId: string, passwordHash: string): Promise<void> {
  await db.query('UPDATE users SET password_hash = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2', [tenantId, userId, passwordHash]);
}

/** Revokes every refresh token of a user (all sessions): after a password change or reset. */
export async function revokeUserRefreshTokens(db: Queryable, tenantId: string, userId: string): Promise<void> {
  await db.query('UPDATE refresh_tokens SET revoked_at = now() WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL', [tenantId, userId]);
}

export async function touchKey(db: Queryable, keyId: string): Promise<void> {
  await db.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1', [keyId]);
}

export async function insertRefreshToken(
  db: Queryable,
  row: { tenantId: string; userId: string; familyId: string; tokenHash: string; expiresAt: Date },
): Promise<void> {
  await db.query(
    `INSERT INTO refresh_tokens (tenant_id, user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)`,
    [row.tenantId, row.userId, row.familyId, row.tokenHash, row.expiresAt],
  );
}

export interface RefreshRow {
  id: string;
  tenantId: string;
  userId: string;
  familyId: string;
  expiresAt: Date;
  usedAt: Date | null;
  revokedAt: Date | null;
}

/** Locks the token row so two concurrent refreshes with one token cannot both succeed. */
export async function findRefreshTokenForUpdate(db: Queryable, tokenHash: string): Promise<RefreshRow | undefined> {
  const { rows } = await db.query<RefreshRow>(
    `SELECT id, tenant_id AS "tenantId", user_id AS "userId", family_id AS "familyId", expires_at AS "expiresAt",
            used_at AS "usedAt", revoked_at AS "revokedAt"
       FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`,
    [tokenHash],
  );
  return rows[0];
}

export async function markRefreshTokenUsed(db: Queryable, id: string): Promise<void> {
  await db.query('UPDATE refresh_tokens SET used_at = now() WHERE id = $1', [id]);
}

export async function revokeRefreshFamily(db: Queryable, familyId: string): Promise<void> {
  await db.query('UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL', [familyId]);
}

/** Whether any token of a refresh-token family (a session) was revoked: the session has ended. */
export async function isFamilyRevoked(db: Queryable, familyId: string): Promise<boolean> {
  const { rows } = await db.query<{ revoked: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL) AS revoked',
    [familyId],
  );
  return rows[0].revoked;
}
