import type { Queryable } from '../../db/db.js';
import type { Role } from '@fieldsync/protocol/auth';
import type { UserRow } from '../auth/auth.repository.js';

const COLUMNS = `id, tenant_id AS "tenantId", agent_code AS "agentCode", name, email, role, is_active AS "isActive",
  password_hash AS "passwordHash", created_at AS "createdAt", last_seen_at AS "lastSeenAt"`;

export async function insertUser(
  db: Queryable,
  row: { tenantId: string; agentCode: string; name: string; email?: string; role: Role; passwordHash?: string },
): Promise<UserRow> {
  const { rows } = await db.query<UserRow>(
    `INSERT INTO users (tenant_id, agent_code, name, email, role, password_hash)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
    [row.tenantId, row.agentCode, row.name, row.email ?? null, row.role, row.passwordHash ?? null],
  );
  return rows[0];
}

export async function listUsers(db: Queryable, tenantId: string): Promise<UserRow[]> {
  const { rows } = await db.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY agent_code`, [tenantId]);
  return rows;
}

export async function findUserByCode(db: Queryable, tenantId: string, agentCode: string): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE tenant_id = $1 AND agent_code = $2`, [
    tenantId,
    agentCode,
  ]);
  return rows[0];
}

export async function updateUser(
  db: Queryable,
  tenantId: string,
  agentCode: string,
  patch: { isActive?: boolean; name?: string },
): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>(
    `UPDATE users SET is_active = coalesce($3, is_active), name = coalesce($4, name), updated_at = now()
      WHERE tenant_id = $1 AND agent_code = $2 RETURNING ${COLUMNS}`,
    [tenantId, agentCode, patch.isActive ?? null, patch.name ?? null],
  );
  return rows[0];
}

export interface KeyRow {
  id: string;
  prefix: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export async function insertApiKey(
  db: Queryable,
  row: { tenantId: string; userId: string; prefix: string; keyHash: string },
): Promise<KeyRow> {
  const { rows } = await db.query<KeyRow>(
    `INSERT INTO api_keys (tenant_id, user_id, prefix, key_hash) VALUES ($1, $2, $3, $4)
     RETURNING id, prefix, created_at AS "createdAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"`,
    [row.tenantId, row.userId, row.prefix, row.keyHash],
  );
  return rows[0];
}

export async function listApiKeys(db: Queryable, tenantId: string, userId: string): Promise<KeyRow[]> {
  const { rows } = await db.query<KeyRow>(
    `SELECT id, prefix, created_at AS "createdAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"
       FROM api_keys WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at`,
    [tenantId, userId],
  );
  return rows;
}

export async function revokeApiKey(db: Queryable, tenantId: string, userId: string, keyId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND user_id = $2 AND id = $3`,
    [tenantId, userId, keyId],
  );
  return rowCount > 0;
}
