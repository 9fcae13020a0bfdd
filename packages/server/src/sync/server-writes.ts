import type { Change } from '@fieldsync/protocol/sync';
import type { Db } from '../db/db.js';
import { audienceOf, type CollectionRegistry, type HookResult } from './collections.js';
import type { ChangeFeed, CommitEmit, CommitOrigin } from './feed.js';
import { withTenantWrite, type TenantTx } from './versions.js';

/** A server-side write of one tenant: a tenant transaction that can re-version records. */
export interface ServerTx extends TenantTx {
  /**
   * Gives each live or deleted record of `collection` among `ids` the next version (in id
   * order) and publishes its stored state: the records changed by the caller's own statements
   * in this transaction reach devices by the pull and by `changes`.
   */
  touch(collection: string, ids: string[]): Promise<Change[]>;
  /** Publishes `emit` beside the commit's changes, after commit. */
  emit(emit: CommitEmit): void;
  /** Publishes what a scope change wrote (HookResult of `setMembers`). */
  publish(result: HookResult): void;
}

/**
 * Versioned writes that are the server's own, not a device's edit: read receipts, directory
 * changes, membership bookkeeping. They take versions under the tenant lock like a push (so
 * the delta pull stays gap-free) and publish to the feed after commit, but pass no conflict
 * policy and write no audit entry: nobody edited the record's fields.
 */
export function createServerWrites(deps: { db: Db; registry: CollectionRegistry; feed: ChangeFeed }) {
  const { db, registry, feed } = deps;
  return {
    async write<T>(tenantId: string, origin: CommitOrigin, fn: (tx: ServerTx) => Promise<T>): Promise<T> {
      const published: { change: Change; audience: string | null }[] = [];
      const emits: CommitEmit[] = [];
      const userChanges: NonNullable<HookResult['userChanges']> = [];
      const membership: NonNullable<HookResult['membership']> = [];
      const committed = await withTenantWrite(db, tenantId, (base) => {
        const tx: ServerTx = Object.assign(Object.create(base) as TenantTx, {
          async touch(collection: string, ids: string[]) {
            const def = registry.resolve(collection);
            if (!def) throw new Error(`unknown collection ${collection}`);
            if (ids.length === 0) return [];
            const { rows: found } = await base.query<{ id: string }>(
              `SELECT id FROM ${def.table} WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE`,
              [tenantId, [...new Set(ids)]],
            );
            if (found.length === 0) return [];
            const versions = found.map((r) => ({ id: r.id, version: base.nextVersion(def.name) }));
            const { rows } = await base.query<{ id: string; version: number; is_deleted: boolean; data: Record<string, unknown> }>(
              `UPDATE ${def.table} r SET version = v.version, updated_at = now()
                 FROM jsonb_to_recordset($2::jsonb) AS v(id uuid, version bigint)
                WHERE r.tenant_id = $1 AND r.id = v.id
               RETURNING r.id, r.version, r.is_deleted, ${def.wireSql} AS data`,
              [tenantId, JSON.stringify(versions)],
            );
            const changes = rows
              .map((r): Change => ({ collection: def.name, op: r.is_deleted ? 'delete' : 'upsert', id: r.id, version: Number(r.version), data: r.data }))
              .sort((a, b) => a.version - b.version);
            for (const change of changes) published.push({ change, audience: audienceOf(def, change.id, change.data) });
            return changes;
          },
          emit(emit: CommitEmit) {
            emits.push(emit);
          },
          publish(result: HookResult) {
            for (const change of result.changes) {
              const def = registry.resolve(change.collection)!;
              published.push({ change, audience: audienceOf(def, change.id, change.data) });
            }
            userChanges.push(...(result.userChanges ?? []));
            membership.push(...(result.membership ?? []));
          },
        });
        return fn(tx);
      });
      published.sort((a, b) => a.change.version - b.change.version);
      feed.publish({
        tenantId,
        fromVersion: committed.fromVersion,
        toVersion: committed.toVersion,
        changes: published.map((p) => p.change),
        audience: published.map((p) => p.audience),
        userChanges,
        membership,
        events: emits,
        origin,
      });
      return committed.result;
    },
  };
}

export type ServerWrites = ReturnType<typeof createServerWrites>;
