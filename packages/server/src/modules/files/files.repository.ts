import type { Queryable } from '../../db/db.js';

/** A chunked upload session as stored. */
export interface SessionRow {
  id: string;
  tenantId: string;
  userId: string | null;
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
  chunkSize: number;
  totalChunks: number;
  fileId: string | null;
  expiresAt: Date;
}

/** A file (finished, or a tus upload still arriving) as stored. */
export interface FileRow {
  id: string;
  tenantId: string;
  ownerId: string | null;
  protocol: 'chunked' | 'tus';
  status: 'uploading' | 'ready';
  filename: string;
  contentType: string;
  size: number;
  sha256: string | null;
  storageName: string;
  expiresAt: Date | null;
}

const SESSION_COLUMNS = `id, tenant_id AS "tenantId", user_id AS "userId", filename, content_type AS "contentType", size,
  sha256, chunk_size AS "chunkSize", total_chunks AS "totalChunks", file_id AS "fileId", expires_at AS "expiresAt"`;

const FILE_COLUMNS = `id, tenant_id AS "tenantId", owner_id AS "ownerId", protocol, status, filename, content_type AS "contentType",
  size, sha256, storage_name AS "storageName", expires_at AS "expiresAt"`;

/**
 * Adds `bytes` to the tenant's storage in use when the total stays within `quota`; false when
 * it would not. One statement under the tenant's usage row lock: concurrent reservations on
 * any instance see each other's.
 */
export async function reserveStorage(q: Queryable, tenantId: string, bytes: number, quota: number): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO storage_usage AS u (tenant_id, used_bytes) SELECT $1, $2::bigint WHERE $2::bigint <= $3::bigint
     ON CONFLICT (tenant_id) DO UPDATE SET used_bytes = u.used_bytes + EXCLUDED.used_bytes, updated_at = now()
       WHERE u.used_bytes + EXCLUDED.used_bytes <= $3::bigint
     RETURNING used_bytes`,
    [tenantId, bytes, quota],
  );
  return rowCount === 1;
}

/** Gives back `bytes` of the tenant's storage (an upload that ended without a file). */
export async function releaseStorage(q: Queryable, tenantId: string, bytes: number): Promise<void> {
  if (bytes <= 0) return;
  await q.query(
    'UPDATE storage_usage SET used_bytes = greatest(0, used_bytes - $2::bigint), updated_at = now() WHERE tenant_id = $1',
    [tenantId, bytes],
  );
}

/** The tenant's storage in use, reservations included. */
export async function storageUsed(q: Queryable, tenantId: string): Promise<number> {
  const { rows } = await q.query<{ used: number }>('SELECT used_bytes AS used FROM storage_usage WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.used ?? 0;
}

export async function insertSession(
  q: Queryable,
  s: Omit<SessionRow, 'fileId'>,
): Promise<void> {
  await q.query(
    `INSERT INTO upload_sessions (id, tenant_id, user_id, filename, content_type, size, sha256, chunk_size, total_chunks, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [s.id, s.tenantId, s.userId, s.filename, s.contentType, s.size, s.sha256, s.chunkSize, s.totalChunks, s.expiresAt],
  );
}

/** A session of `userId` in the tenant (expired or not). */
export async function findSession(q: Queryable, tenantId: string, userId: string, id: string): Promise<SessionRow | undefined> {
  const { rows } = await q.query<SessionRow>(
    `SELECT ${SESSION_COLUMNS} FROM upload_sessions WHERE tenant_id = $1 AND id = $2 AND user_id = $3`,
    [tenantId, id, userId],
  );
  return rows[0];
}

/** A session of `userId` with the checksum its chunk `index` was stored with (null when not stored): one round trip per chunk. */
export async function findSessionChunk(
  q: Queryable,
  tenantId: string,
  userId: string,
  id: string,
  index: number,
): Promise<(SessionRow & { chunkSha: string | null }) | undefined> {
  const { rows } = await q.query<SessionRow & { chunkSha: string | null }>(
    `SELECT ${SESSION_COLUMNS},
       (SELECT c.sha256 FROM upload_chunks c WHERE c.tenant_id = $1 AND c.upload_id = s.id AND c.chunk_index = $4) AS "chunkSha"
     FROM upload_sessions s WHERE s.tenant_id = $1 AND s.id = $2 AND s.user_id = $3`,
    [tenantId, id, userId, index],
  );
  return rows[0];
}

/** Records chunk `index` as stored (a second record of it changes nothing); the indexes stored since. */
export async function recordChunk(q: Queryable, tenantId: string, uploadId: string, index: number, sha256: string): Promise<number[]> {
  // The statement's snapshot does not see its own insert: the new index joins by UNION.
  const { rows } = await q.query<{ received: number[] }>(
    `WITH added AS (
       INSERT INTO upload_chunks (tenant_id, upload_id, chunk_index, sha256) VALUES ($1, $2, $3, $4)
       ON CONFLICT (upload_id, chunk_index) DO NOTHING RETURNING chunk_index)
     SELECT coalesce(array_agg(chunk_index ORDER BY chunk_index), '{}') AS received FROM (
       SELECT chunk_index FROM upload_chunks WHERE tenant_id = $1 AND upload_id = $2
       UNION SELECT chunk_index FROM added) c`,
    [tenantId, uploadId, index, sha256],
  );
  return rows[0].received;
}

/** The indexes of the chunks stored for a session, ascending. */
export async function receivedChunks(q: Queryable, tenantId: string, uploadId: string): Promise<number[]> {
  const { rows } = await q.query<{ received: number[] }>(
    `SELECT coalesce(array_agg(chunk_index ORDER BY chunk_index), '{}') AS received
     FROM upload_chunks WHERE tenant_id = $1 AND upload_id = $2`,
    [tenantId, uploadId],
  );
  return rows[0].received;
}

/** Binds a session to the file it became; false when another finalize did first. */
export async function bindSessionFile(q: Queryable, tenantId: string, uploadId: string, fileId: string): Promise<boolean> {
  const { rowCount } = await q.query(
    'UPDATE upload_sessions SET file_id = $3 WHERE tenant_id = $1 AND id = $2 AND file_id IS NULL',
    [tenantId, uploadId, fileId],
  );
  return rowCount === 1;
}

/** Deletes a session that has no file; its size when it did (to release), else undefined. */
export async function deleteUnfinishedSession(q: Queryable, tenantId: string, uploadId: string): Promise<number | undefined> {
  const { rows } = await q.query<{ size: number }>(
    'DELETE FROM upload_sessions WHERE tenant_id = $1 AND id = $2 AND file_id IS NULL RETURNING size',
    [tenantId, uploadId],
  );
  return rows[0]?.size;
}

export async function insertFile(
  q: Queryable,
  f: Omit<FileRow, 'expiresAt'> & { expiresAt?: Date | null },
): Promise<void> {
  await q.query(
    `INSERT INTO files (id, tenant_id, owner_id, protocol, status, filename, content_type, size, sha256, storage_name, expires_at, completed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CASE WHEN $5 = 'ready' THEN now() END)`,
    [f.id, f.tenantId, f.ownerId, f.protocol, f.status, f.filename, f.contentType, f.size, f.sha256, f.storageName, f.expiresAt ?? null],
  );
}

export async function findFile(q: Queryable, tenantId: string, id: string): Promise<FileRow | undefined> {
  const { rows } = await q.query<FileRow>(`SELECT ${FILE_COLUMNS} FROM files WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
  return rows[0];
}

/** The ready files among `ids` in the tenant. */
export async function findReadyFiles(q: Queryable, tenantId: string, ids: string[]): Promise<FileRow[]> {
  const { rows } = await q.query<FileRow>(
    `SELECT ${FILE_COLUMNS} FROM files WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND status = 'ready'`,
    [tenantId, ids],
  );
  return rows;
}

/** Marks a tus upload finished; false when it is no longer there (expired and swept). */
export async function markFileReady(q: Queryable, tenantId: string, id: string, sha256: string): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE files SET status = 'ready', sha256 = $3, completed_at = coalesce(completed_at, now()), expires_at = NULL
     WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id, sha256],
  );
  return rowCount === 1;
}

/** Deletes an unfinished tus upload; its size (to release), or undefined when there was none. */
export async function deleteUploadingFile(q: Queryable, tenantId: string, id: string): Promise<number | undefined> {
  const { rows } = await q.query<{ size: number }>(
    `DELETE FROM files WHERE tenant_id = $1 AND id = $2 AND status = 'uploading' RETURNING size`,
    [tenantId, id],
  );
  return rows[0]?.size;
}

/**
 * Deletes up to `limit` sessions expired at `now`, across tenants (the expiry job's sweep);
 * returns them, with `released` set on those that had no file (their reservation goes back).
 */
export async function deleteExpiredSessions(q: Queryable, now: Date, limit: number) {
  const { rows } = await q.query<{ id: string; tenantId: string; size: number; fileId: string | null }>(
    `DELETE FROM upload_sessions WHERE id IN (SELECT id FROM upload_sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)
     RETURNING id, tenant_id AS "tenantId", size, file_id AS "fileId"`,
    [now, limit],
  );
  return rows;
}

/** Deletes up to `limit` tus uploads that did not finish by their expiry, across tenants. */
export async function deleteExpiredUploads(q: Queryable, now: Date, limit: number) {
  const { rows } = await q.query<{ id: string; tenantId: string; size: number }>(
    `DELETE FROM files WHERE id IN (
       SELECT id FROM files WHERE status = 'uploading' AND expires_at <= $1 ORDER BY expires_at LIMIT $2)
     RETURNING id, tenant_id AS "tenantId", size`,
    [now, limit],
  );
  return rows;
}

/** Which of `ids` are live sessions (any tenant): the orphan sweep keeps their chunk folders. */
export async function existingSessionIds(q: Queryable, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await q.query<{ id: string }>('SELECT id FROM upload_sessions WHERE id = ANY($1::uuid[])', [ids]);
  return new Set(rows.map((r) => r.id));
}
