import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/db.js';
import { AppError, notFound } from '../../errors.js';
import type { CollectionDef, CollectionRegistry } from '../../sync/collections.js';
import type { PushEngine } from '../../sync/push.js';
import { visibleSql } from '../../sync/scopes.js';
import type { Principal } from '../auth/principal.js';

export type ListCollection = 'spaces' | 'categories' | 'items';

export interface ListFilter {
  spaceId?: string;
  categoryId?: string;
  includeDeleted?: boolean;
}

export interface ListsService {
  list(p: Principal, collection: ListCollection, filter: ListFilter): Promise<Record<string, unknown>[]>;
  get(p: Principal, collection: ListCollection, id: string): Promise<Record<string, unknown>>;
  create(p: Principal, collection: ListCollection, fields: Record<string, unknown>): Promise<Record<string, unknown>>;
  update(p: Principal, collection: ListCollection, id: string, fields: Record<string, unknown>, version?: number): Promise<Record<string, unknown>>;
  remove(p: Principal, collection: ListCollection, id: string): Promise<void>;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Spaces, categories and items over REST. Writes go through the push engine as one-change
 * batches, so REST and sync share every rule (scopes, roles, references, cascades, audit).
 */
export function createListsService(deps: { db: Db; registry: CollectionRegistry; push: PushEngine }): ListsService {
  const { db } = deps;
  const defOf = (collection: ListCollection) => deps.registry.resolve(collection) as CollectionDef;

  /** Records the caller may see: the members of their space ($1 tenant, $2 user). */
  const visible = (def: CollectionDef) => visibleSql(def, 'r', '$1', '$2');

  const find = async (p: Principal, collection: ListCollection, id: string) => {
    if (!UUID_RE.test(id)) return undefined;
    const def = defOf(collection);
    const { rows } = await db.query<{ data: Record<string, unknown> }>(
      `SELECT ${def.wireSql} AS data FROM ${def.table} r WHERE r.tenant_id = $1 AND r.id = $3 AND NOT r.is_deleted AND ${visible(def)}`,
      [p.tenantId, p.userId, id],
    );
    return rows[0]?.data;
  };

  const write = async (p: Principal, collection: ListCollection, change: Record<string, unknown>, expectedVersion?: number) => {
    const caller = { tenantId: p.tenantId, userId: p.userId, agentCode: p.agentCode, deviceId: p.deviceId ?? 'rest' };
    const outcome = await deps.push.apply(caller, [{ changeId: randomUUID(), entityType: collection, timestamp: Date.now(), ...change }], {
      receipts: false,
      expectedVersion,
    });
    const { ack } = outcome.results[0];
    if (!ack.success) throw new AppError(ack.code ?? 'VALIDATION_FAILED', ack.error ?? 'Rejected');
    return ack.serverId as string;
  };

  return {
    async list(p, collection, filter) {
      const def = defOf(collection);
      const params: unknown[] = [p.tenantId, p.userId];
      const clauses = ['r.tenant_id = $1', visible(def)];
      if (!filter.includeDeleted) clauses.push('NOT r.is_deleted');
      if (filter.spaceId && collection !== 'spaces') {
        params.push(filter.spaceId);
        clauses.push(`r.space_id = $${params.length}`);
      }
      if (filter.categoryId && collection === 'items') {
        params.push(filter.categoryId);
        clauses.push(`r.category_id = $${params.length}`);
      }
      const { rows } = await db.query<{ data: Record<string, unknown> }>(
        `SELECT ${def.wireSql} AS data FROM ${def.table} r WHERE ${clauses.join(' AND ')} ORDER BY r.sort_order, r.created_at, r.id LIMIT 5000`,
        params,
      );
      return rows.map((r) => r.data);
    },
    async get(p, collection, id) {
      const found = await find(p, collection, id);
      if (!found) throw notFound(collection === 'categories' ? 'Category' : collection === 'items' ? 'Item' : 'Space');
      return found;
    },
    async create(p, collection, fields) {
      const id = await write(p, collection, { operation: 'create', id: randomUUID(), data: fields });
      return this.get(p, collection, id);
    },
    async update(p, collection, id, fields, version) {
      // A deleted (or invisible) record is a 404 first, as for contacts; a push would answer
      // it as a conflict the server keeps.
      await this.get(p, collection, id);
      await write(p, collection, { operation: 'update', id, data: fields }, version);
      return this.get(p, collection, id);
    },
    async remove(p, collection, id) {
      await this.get(p, collection, id);
      await write(p, collection, { operation: 'delete', id });
    },
  };
}
