import type { Change, Delta } from '@fieldsync/protocol/sync';
import type { Queryable } from '../db/db.js';
import { AppError } from '../errors.js';
import type { CollectionDef, CollectionRegistry } from './collections.js';

export interface PullRequest {
  tenantId: string;
  /** The version the device has applied; changes above it are returned. */
  since: number;
  limit: number;
  /** Collection names (plural or singular); all when undefined. */
  collections?: string[];
}

/** Resolves requested collection names; an unknown name is a 400 naming it. */
export function resolveCollections(registry: CollectionRegistry, names: string[] | undefined): CollectionDef[] {
  if (names === undefined || names.length === 0) return [...registry.all()];
  const defs = new Set<CollectionDef>();
  for (const name of names) {
    const def = registry.resolve(name);
    if (!def) {
      throw new AppError('VALIDATION_FAILED', `Unknown collection "${name}"`, [{ field: 'collections', message: `unknown collection ${name}` }]);
    }
    defs.add(def);
  }
  return [...defs];
}

/**
 * The changes above `since` in version order, at most `limit`, with the tenant's latest
 * version read in the same statement, hence the same snapshot: every version <= latestVersion
 * is committed and visible to this statement (writers commit in version order), so paging
 * with nextVersion never skips a change.
 */
export async function pullChanges(db: Queryable, defs: CollectionDef[], req: PullRequest): Promise<Delta> {
  const branches = defs.map(
    (def) =>
      `(SELECT '${def.name}'::text AS collection, r.id, r.version, r.is_deleted, ${def.wireSql} AS data
          FROM ${def.table} r
         WHERE r.tenant_id = $1 AND r.version > $2
         ORDER BY r.version LIMIT $3)`,
  );
  const sql = `
    SELECT tv.current_version AS latest, c.collection, c.id, c.version, c.is_deleted, c.data
      FROM tenant_versions tv
      LEFT JOIN LATERAL (
        SELECT * FROM (${branches.join(' UNION ALL ')}) u ORDER BY u.version LIMIT $3
      ) c ON true
     WHERE tv.tenant_id = $1
     ORDER BY c.version`;
  const { rows } = await db.query<{
    latest: number;
    collection: string | null;
    id: string;
    version: number;
    is_deleted: boolean;
    data: Record<string, unknown>;
  }>(sql, [req.tenantId, req.since, req.limit + 1]);

  if (rows.length === 0) throw new AppError('NOT_FOUND', 'Tenant not found');
  const latestVersion = rows[0].latest;
  const found = rows.filter((r) => r.collection !== null);
  const hasMore = found.length > req.limit;
  const page = hasMore ? found.slice(0, req.limit) : found;
  const changes: Change[] = page.map((r) => ({
    collection: r.collection as string,
    op: r.is_deleted ? 'delete' : 'upsert',
    id: r.id,
    version: r.version,
    data: r.data,
  }));
  const nextVersion = hasMore ? changes[changes.length - 1].version : Math.max(latestVersion, req.since);
  return { changes, latestVersion, nextVersion, hasMore };
}
