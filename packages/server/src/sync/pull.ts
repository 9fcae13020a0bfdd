import { createHash } from 'node:crypto';
import type { Delta } from '@fieldsync/protocol/sync';
import type { Queryable } from '../db/db.js';
import { AppError } from '../errors.js';
import { wireTextOf, type CollectionDef, type CollectionRegistry } from './collections.js';
import { isScoped, visibleSql } from './scopes.js';

export interface PullRequest {
  tenantId: string;
  /** Whose scopes apply: scoped records only reach the members of their scope (none without a user). */
  userId?: string;
  /** The version the device has applied; changes above it are returned. */
  since: number;
  limit: number;
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
 * The branches of the pull for one collection: its records, and its scope grants and revokes.
 *
 * Each visible record comes from exactly one branch, decided by facts that do not depend on
 * the checkpoint, so a page holds a record once and paging with nextVersion never delivers it
 * twice. A user has at most one scope event per record (the writer replaces older ones): a
 * record whose grant is newer than the record comes at the grant's version (the range scan
 * skips it); any other visible record comes at its own version; a record no longer visible
 * comes as a delete at its revoke.
 */
function branchesOf(def: CollectionDef): string[] {
  if (!isScoped(def)) {
    return [
      `(SELECT '${def.name}'::text AS collection, r.id, r.version, r.is_deleted, ${wireTextOf(def)} AS data
          FROM ${def.table} r WHERE r.tenant_id = $1 AND r.version > $2 ORDER BY r.version LIMIT $3)`,
    ];
  }
  const visible = (r: string) => visibleSql(def, r, '$1', '$4');
  // Scope events of the user for this collection above the checkpoint (the index's range).
  const events = (e: string) => `${e}.tenant_id = $1 AND ${e}.user_id = $4::uuid AND ${e}.version > $2 AND ${e}.collection = '${def.name}'`;
  return [
    // The common case: one range scan of (tenant_id, version), filtered by membership.
    `(SELECT '${def.name}'::text AS collection, r.id, r.version, r.is_deleted, ${wireTextOf(def)} AS data
        FROM ${def.table} r WHERE r.tenant_id = $1 AND r.version > $2 AND ${visible('r')}
         AND NOT EXISTS (SELECT 1 FROM scope_events g WHERE ${events('g')} AND g.record_id = r.id AND g.kind = 'grant' AND g.version > r.version)
       ORDER BY r.version LIMIT $3)`,
    // Access gained after the checkpoint: a record unchanged since its grant, at the grant's
    // version. The page is chosen first, so only its records are turned into wire objects.
    `(SELECT '${def.name}'::text, r.id, p.version, r.is_deleted, ${wireTextOf(def)}
        FROM (SELECT e.record_id, e.version FROM scope_events e JOIN ${def.table} c ON c.id = e.record_id AND c.tenant_id = $1
               WHERE ${events('e')} AND e.kind = 'grant' AND c.version < e.version AND ${visible('c')}
               ORDER BY e.version LIMIT $3) p
        JOIN ${def.table} r ON r.id = p.record_id
       ORDER BY p.version LIMIT $3)`,
    // Access lost after the checkpoint: a delete for each record no longer visible.
    `(SELECT '${def.name}'::text, e.record_id, e.version, true, json_build_object('id', e.record_id, 'isDeleted', true)::text
        FROM scope_events e
       WHERE ${events('e')} AND e.kind = 'revoke'
         AND NOT EXISTS (SELECT 1 FROM ${def.table} r WHERE r.id = e.record_id AND ${visible('r')}) ORDER BY e.version LIMIT $3)`,
  ];
}

const statements = new Map<string, { sql: string; name: string }>();

/** The branch of a pull with no collection to read: no rows (it names $2 and $3, or their types are unknown). */
const NO_CHANGES = `(SELECT NULL::text AS collection, NULL::uuid AS id, $2::bigint AS version, NULL::boolean AS is_deleted, NULL::text AS data WHERE false LIMIT $3)`;

/** The pull statement for a set of collections, built once, with a stable prepared-statement name. */
function pullStatement(defs: CollectionDef[]): { sql: string; name: string } {
  const key = defs.map((d) => d.name).join(',');
  let statement = statements.get(key);
  if (!statement) {
    // The page is built here as JSON text, one row in all: each change object around the
    // record's JSON, joined in version order; `found` (up to limit + 1) says whether there is more.
    const sql = `
    SELECT tv.current_version AS latest, tv.marks_from, tv.collection_marks AS marks, p.found, p.last_version, p.changes
      FROM tenant_versions tv
      LEFT JOIN LATERAL (
        SELECT count(*)::int AS found,
               max(c.version) FILTER (WHERE c.n < $3) AS last_version,
               coalesce(string_agg('{"collection":"' || c.collection || '","op":"' || CASE WHEN c.is_deleted THEN 'delete' ELSE 'upsert' END
                 || '","id":"' || c.id || '","version":' || c.version || ',"data":' || c.data || '}', ',' ORDER BY c.version)
                 FILTER (WHERE c.n < $3), '') AS changes
          FROM (SELECT u.*, row_number() OVER (ORDER BY u.version) AS n
                  FROM (SELECT * FROM (${defs.length > 0 ? defs.flatMap(branchesOf).join(' UNION ALL ') : NO_CHANGES}) u ORDER BY u.version LIMIT $3) u) c
      ) p ON true
     WHERE tv.tenant_id = $1`;
    statement = { sql, name: `pull:${createHash('sha1').update(sql).digest('hex').slice(0, 16)}` };
    statements.set(key, statement);
  }
  return statement;
}

/**
 * A page of a pull with its changes still JSON text, as PostgreSQL wrote them: an HTTP answer
 * splices it into the body without parsing and re-serialising every record.
 */
export interface PulledPage {
  latestVersion: number;
  nextVersion: number;
  hasMore: boolean;
  /** How many changes `changesJson` holds. */
  count: number;
  /** A JSON array of wire `Change` objects, in version order. */
  changesJson: string;
}

/**
 * What a tenant's version row says of its collections: each written collection's mark, a
 * version at or above every version it holds (records and scope events), complete for versions
 * above `from` (migration 0013_collection_marks).
 */
export interface CollectionMarks {
  from: number;
  marks: Record<string, number>;
}

/**
 * The collections of `defs` that may hold changes above `since`: all of them unless the marks
 * are known and complete there; otherwise those marked above it.
 */
export function collectionsAbove(defs: CollectionDef[], since: number, known: CollectionMarks | undefined): CollectionDef[] {
  if (!known || since < known.from) return defs;
  return defs.filter((d) => (known.marks[d.name] ?? 0) > since);
}

/**
 * The changes above `since` that the user may see, in version order, at most `limit`, with
 * the tenant's latest version read in the same statement, hence the same snapshot: every
 * version <= latestVersion is committed and visible to this statement (writers commit in
 * version order), so paging with nextVersion never skips a change.
 *
 * The statement has branches only for the collections that may have changed above `since`,
 * chosen by `marks` (the tenant's collection marks as last read, kept up to date here): each
 * branch costs PostgreSQL its start-up on every run, a union of every collection several times
 * a one-collection pull. The statement reads the marks in its own snapshot, and a collection
 * it left out that is marked above `since` there runs the statement again with that collection:
 * the page is always the one the full union would answer.
 */
export async function pullPage(db: Queryable, defs: CollectionDef[], req: PullRequest, marks?: Map<string, CollectionMarks>): Promise<PulledPage> {
  let chosen = collectionsAbove(defs, req.since, marks?.get(req.tenantId));
  // Marks only rise, so `needed` only grows: at most one run per collection, two in practice.
  for (;;) {
    const { sql, name } = pullStatement(chosen);
    const { rows } = await db.query<PullRow>(
      sql,
      [req.tenantId, req.since, req.limit + 1, ...(chosen.some(isScoped) ? [req.userId ?? null] : [])],
      // Planning this union costs several times running it, and its best plan (range scans of
      // (tenant_id, version)) does not depend on the values: plan it once per connection.
      { prepare: name, plan: 'generic' },
    );
    if (rows.length === 0) throw new AppError('NOT_FOUND', 'Tenant not found');
    const row = rows[0];
    const known: CollectionMarks = { from: row.marks_from, marks: row.marks };
    marks?.set(req.tenantId, known);
    const missing = collectionsAbove(defs, req.since, known).filter((d) => !chosen.includes(d));
    if (missing.length === 0) return pageOf(row, req);
    chosen = defs.filter((d) => chosen.includes(d) || missing.includes(d));
  }
}

/** The one row the pull statement answers. */
export interface PullRow {
  latest: number;
  /** The tenant's collection marks in the statement's snapshot (`CollectionMarks`). */
  marks_from: number;
  marks: Record<string, number>;
  /** Changes found above the checkpoint, up to limit + 1. */
  found: number;
  /** The version of the last change within the limit. */
  last_version: number | null;
  /** The changes within the limit, JSON objects joined by commas. */
  changes: string;
}

/** The page a row of the pull statement means (also what the benchmark's limit reads). */
export function pageOf(row: Pick<PullRow, 'latest' | 'found' | 'last_version' | 'changes'>, req: { since: number; limit: number }): PulledPage {
  const hasMore = row.found > req.limit;
  const nextVersion = hasMore ? row.last_version! : Math.max(row.latest, req.since);
  return { latestVersion: row.latest, nextVersion, hasMore, count: Math.min(row.found, req.limit), changesJson: `[${row.changes}]` };
}

/** A page as the protocol's `Delta` object (sockets, push answers). */
export function toDelta(page: PulledPage): Delta {
  return { changes: JSON.parse(page.changesJson), latestVersion: page.latestVersion, nextVersion: page.nextVersion, hasMore: page.hasMore };
}

/** The success envelope of a `Delta` as JSON text, the page's changes spliced in unparsed. */
export function deltaEnvelopeJson(page: PulledPage): string {
  return `{"success":true,"data":{"changes":${page.changesJson},"latestVersion":${page.latestVersion},"nextVersion":${page.nextVersion},"hasMore":${page.hasMore}}}`;
}

const encoded = new WeakMap<PulledPage, Buffer>();

/** `deltaEnvelopeJson` as UTF-8 bytes, encoded once per page: a cached page is sent many times. */
export function deltaEnvelopeBytes(page: PulledPage): Buffer {
  let bytes = encoded.get(page);
  if (!bytes) {
    bytes = Buffer.from(deltaEnvelopeJson(page), 'utf8');
    encoded.set(page, bytes);
  }
  return bytes;
}

/** An empty page: the tenant's latest version is at or below the checkpoint. */
export function emptyPage(latestVersion: number, since: number): PulledPage {
  return { latestVersion, nextVersion: Math.max(latestVersion, since), hasMore: false, count: 0, changesJson: '[]' };
}

/** `pullPage` as a `Delta` object. */
export async function pullChanges(db: Queryable, defs: CollectionDef[], req: PullRequest): Promise<Delta> {
  return toDelta(await pullPage(db, defs, req));
}
