import { AsyncLocalStorage } from 'node:async_hooks';
import type { Db, Queryable } from '../db/db.js';

/** The tenant write the current async context runs inside, while it is open. */
const openWrite = new AsyncLocalStorage<{ tenantId: string; open: boolean }>();

/** The version row each open transaction has locked, and its version as the last writer left it. */
const heldRows = new WeakMap<Queryable, { tenantId: string; version: number }>();

/** A write transaction of one tenant, with versions handed out in order. */
export interface TenantTx extends Queryable {
  readonly tenantId: string;
  /** The version before this transaction's first change. */
  readonly baseVersion: number;
  /**
   * The next version, for a change of `collection`; every record change and scope event takes
   * exactly one. The collection is marked on the tenant's version row at commit, which lets a
   * pull leave out collections with nothing above its checkpoint (`collectionsAbove`).
   */
  nextVersion(collection: string): number;
  /** The last version handed out so far (baseVersion when none). */
  currentVersion(): number;
  /**
   * Runs `fn` under a savepoint: when it throws, its statements and the versions it took are
   * undone and the transaction goes on (a push contains one change's database error so).
   */
  savepoint<T>(fn: () => Promise<T>): Promise<T>;
}

/** What a tenant write committed: the version range and whatever `fn` returned. */
export interface Committed<T> {
  result: T;
  fromVersion: number;
  toVersion: number;
}

/**
 * Runs `fn` as a write of `tenantId`: locks the tenant's version row first and holds it until
 * commit, so no other writer of the tenant can take a version until this one is committed.
 * Versions therefore become visible in order, and a reader that sees version V sees every
 * version below it (gap-free visibility; docs/sync-protocol.md). Rolled back: nothing used.
 *
 * Writers of one tenant queue in this process first and take a connection only when it is
 * their turn, so a burst of one tenant's writes holds one pooled connection, not all of them;
 * the row lock still orders writers of several instances. Writers that wait together share one
 * transaction and one commit (group commit, `TransactionOptions.group`): each under its own
 * savepoint, in arrival order, each with its own contiguous version range (the version row is
 * locked and read by the first, written by each), none answered before the shared commit; one that
 * throws is rolled back alone. A full queue, or a lock or statement
 * timeout, throws a retryable 503 (`Db.transaction`). A write of the tenant started inside
 * `fn` would wait for itself forever: it throws instead (pass the `TenantTx` down).
 */
export async function withTenantWrite<T>(db: Db, tenantId: string, fn: (tx: TenantTx) => Promise<T>): Promise<Committed<T>> {
  const outer = openWrite.getStore();
  if (outer?.open && outer.tenantId === tenantId) {
    throw new Error(`withTenantWrite of tenant ${tenantId} inside a write of the same tenant would wait for itself; pass its TenantTx down`);
  }
  return db.transaction(async (q) => {
    // A writer grouped behind another in this transaction finds the row locked already and
    // its version where the one before left it (a writer that threw left the row as it was).
    const held = heldRows.get(q);
    let base: number;
    if (held?.tenantId === tenantId) {
      base = held.version;
    } else {
      const locked = await q.query<{ current_version: number }>(
        'SELECT current_version FROM tenant_versions WHERE tenant_id = $1 FOR UPDATE',
        [tenantId],
      );
      if (locked.rows.length === 0) throw new Error(`tenant ${tenantId} has no version row`);
      base = locked.rows[0].current_version;
    }
    let current = base;
    // Collections that took a version here; a savepoint rolled back leaves its marks (a mark
    // above a collection's real latest version only costs a pull a branch with nothing in it).
    const touched = new Set<string>();
    const tx: TenantTx = {
      tenantId,
      baseVersion: base,
      query: (sql, params, opts) => q.query(sql, params, opts),
      exec: (sql) => q.exec(sql),
      nextVersion: (collection) => {
        touched.add(collection);
        return ++current;
      },
      currentVersion: () => current,
      async savepoint(fn) {
        const mark = current;
        await q.query('SAVEPOINT fieldsync_sp');
        try {
          const result = await fn();
          await q.query('RELEASE SAVEPOINT fieldsync_sp');
          return result;
        } catch (error) {
          await q.query('ROLLBACK TO SAVEPOINT fieldsync_sp');
          current = mark;
          throw error;
        }
      },
    };
    const marker = { tenantId, open: true };
    let result: T;
    try {
      result = await openWrite.run(marker, () => fn(tx));
    } finally {
      // Work `fn` left behind (a timer, an unawaited promise) may write the tenant later.
      marker.open = false;
    }
    if (current !== base) {
      // Each collection written is marked with this write's last version: at or above every
      // version it holds, committed with them, so any snapshot that sees a change sees its mark.
      const marks: Record<string, number> = {};
      for (const collection of touched) marks[collection] = current;
      await q.query(
        'UPDATE tenant_versions SET current_version = $2, collection_marks = collection_marks || $3::jsonb, updated_at = now() WHERE tenant_id = $1',
        [tenantId, current, JSON.stringify(marks)],
        { prepare: 'tenant-version-commit' },
      );
    }
    heldRows.set(q, { tenantId, version: current });
    return { result, fromVersion: base, toVersion: current };
  }, { queue: `tenant-write:${tenantId}`, group: true });
}
