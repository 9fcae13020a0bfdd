import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/db.js';
import { AppError, notFound } from '../../errors.js';
import type { CollectionDef, CollectionRegistry } from '../../sync/collections.js';
import { STRATEGIES, type Policy } from '../../sync/conflicts.js';
import type { PolicyStore } from '../../sync/policies.js';
import type { PushEngine } from '../../sync/push.js';
import { isScoped, visibleSql } from '../../sync/scopes.js';
import { isoSql } from '../contacts/contacts.collection.js';
import type { Principal } from '../auth/principal.js';

export interface ConflictRecord {
  id: string;
  collection: string;
  recordId: string;
  deviceId: string | null;
  userId: string | null;
  strategy: string;
  clientChange: Record<string, unknown>;
  serverBefore: Record<string, unknown> | null;
  outcome: string;
  status: string;
  resolution: string | null;
  resolverId: string | null;
  resolvedAt: string | null;
  createdAt: string;
}

export interface ConflictsService {
  listPolicies(tenantId: string): Promise<({ collection: string } & Policy)[]>;
  setPolicy(tenantId: string, collection: string, policy: Policy): Promise<{ collection: string } & Policy>;
  /** The conflicts on records `p` may see now (see `visibleToCaller`). */
  list(p: Principal, query: { status?: string; collection?: string; limit: number; page: number }): Promise<{ items: ConflictRecord[]; total: number }>;
  /**
   * Resolves a pending conflict on a record `p` may see (else 404); the result is a new
   * version of the record that syncs to all.
   */
  resolve(p: Principal, id: string, choice: { choose: 'server' | 'client' | 'merged'; data?: Record<string, unknown> }): Promise<ConflictRecord>;
}

const COLUMNS = `c.id, c.collection, c.record_id AS "recordId", c.device_id AS "deviceId", c.user_id AS "userId", c.strategy,
  c.client_change AS "clientChange", c.server_before AS "serverBefore", c.outcome, c.status, c.resolution,
  c.resolver_id AS "resolverId", ${isoSql('c.resolved_at')} AS "resolvedAt", ${isoSql('c.created_at')} AS "createdAt"`;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * SQL condition over conflict `c`: its record is one the caller (`userParam`) may see now. A
 * conflict holds the record's fields (`serverBefore`, `clientChange`), so it is shown only to
 * those who may read the record: tenant-wide collections to every reviewer (admins and
 * managers, by the routes), scoped ones (spaces, conversations, owner-scoped records) to those
 * in the record's scope, whatever their role (the sync core's `visibleSql`). A conflict of a
 * collection no longer registered is shown to nobody.
 */
export function visibleToCaller(registry: CollectionRegistry, userParam: string): string {
  const ofDef = (def: CollectionDef) => {
    if (!isScoped(def)) return `c.collection = '${def.name}'`;
    return `(c.collection = '${def.name}' AND EXISTS (SELECT 1 FROM ${def.table} r WHERE r.tenant_id = c.tenant_id AND r.id = c.record_id
        AND ${visibleSql(def, 'r', 'c.tenant_id', userParam)}))`;
  };
  const branches = [...registry.all()].map(ofDef).filter((b) => b !== undefined);
  return branches.length > 0 ? `(${branches.join(' OR ')})` : 'false';
}

/** Conflict policies per collection, the conflict log and the manual review queue. */
export function createConflictsService(deps: { db: Db; registry: CollectionRegistry; policies: PolicyStore; push: PushEngine }): ConflictsService {
  const { db } = deps;
  /** The conflict if `p` may see it; `checked: false` skips the check (a resolver reading the outcome). */
  const find = async (p: Principal, id: string, checked = true) => {
    if (!UUID_RE.test(id)) return undefined;
    const { rows } = await db.query<ConflictRecord>(
      `SELECT ${COLUMNS} FROM conflicts c WHERE c.tenant_id = $1 AND c.id = $3 AND ($4::boolean OR ${visibleToCaller(deps.registry, '$2::uuid')})`,
      [p.tenantId, p.userId, id, !checked],
    );
    return rows[0];
  };

  return {
    listPolicies: (tenantId) => deps.policies.list(db, tenantId),

    async setPolicy(tenantId, collection, policy) {
      const def = deps.registry.resolve(collection);
      if (!def?.write) throw new AppError('NOT_FOUND', `No synced collection "${collection}"`);
      if (!STRATEGIES.includes(policy.strategy)) throw new AppError('VALIDATION_FAILED', `Unknown strategy ${policy.strategy}`);
      if (policy.strategy === 'preserve_escalation') {
        const fields = Object.keys(policy.monotonic ?? {});
        if (fields.length === 0) throw new AppError('VALIDATION_FAILED', 'preserve_escalation needs `monotonic` fields', [{ field: 'monotonic', message: 'required' }]);
        const unknown = fields.filter((f) => !(f in def.write!.fields));
        if (unknown.length > 0) throw new AppError('VALIDATION_FAILED', `Unknown field(s) of ${def.name}: ${unknown.join(', ')}`, [{ field: 'monotonic', message: 'unknown field' }]);
      } else if (policy.monotonic) {
        throw new AppError('VALIDATION_FAILED', '`monotonic` applies to preserve_escalation only', [{ field: 'monotonic', message: 'not allowed' }]);
      }
      await deps.policies.set(db, tenantId, def.name, policy);
      return { collection: def.name, ...policy };
    },

    async list(p, query) {
      const params: unknown[] = [p.tenantId, p.userId];
      const clauses = ['c.tenant_id = $1', visibleToCaller(deps.registry, '$2::uuid')];
      if (query.status) {
        params.push(query.status);
        clauses.push(`c.status = $${params.length}`);
      }
      if (query.collection) {
        params.push(deps.registry.resolve(query.collection)?.name ?? query.collection);
        clauses.push(`c.collection = $${params.length}`);
      }
      const where = clauses.join(' AND ');
      const [items, count] = await Promise.all([
        db.query<ConflictRecord>(
          `SELECT ${COLUMNS} FROM conflicts c WHERE ${where} ORDER BY c.created_at DESC, c.id LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
          [...params, query.limit, (query.page - 1) * query.limit],
        ),
        db.query<{ total: number }>(`SELECT count(*)::int AS total FROM conflicts c WHERE ${where}`, params),
      ]);
      return { items: items.rows, total: count.rows[0].total };
    },

    async resolve(p, id, choice) {
      const conflict = await find(p, id);
      if (!conflict) throw notFound('Conflict');
      if (conflict.status !== 'pending') throw new AppError('CONFLICT', `This conflict is ${conflict.status}, not pending`);
      const client = conflict.clientChange as { operation?: string; data?: Record<string, unknown> };
      let change: Record<string, unknown>;
      if (choice.choose === 'server') change = { operation: 'update', data: {} };
      else if (choice.choose === 'client') change = client.operation === 'delete' ? { operation: 'delete' } : { operation: 'update', data: client.data ?? {} };
      else {
        if (!choice.data || Object.keys(choice.data).length === 0) {
          throw new AppError('VALIDATION_FAILED', 'choose "merged" needs `data`', [{ field: 'data', message: 'required' }]);
        }
        change = { operation: 'update', data: choice.data };
      }
      const caller = { tenantId: p.tenantId, userId: p.userId, agentCode: p.agentCode, deviceId: p.deviceId ?? 'review' };
      const outcome = await deps.push.apply(
        caller,
        [{ changeId: randomUUID(), entityType: conflict.collection, id: conflict.recordId, timestamp: Date.now(), ...change }],
        {
          receipts: false,
          force: true,
          touch: true,
          // A resolution the record cannot take (a taken phone) must leave the conflict pending.
          allOrNothing: true,
          // Inside the write: only one resolver wins a pending conflict.
          within: async (tx) => {
            const { rowCount } = await tx.query(
              `UPDATE conflicts SET status = 'resolved', resolution = $3, resolved_data = $4, resolver_id = $5, resolved_at = now()
                WHERE tenant_id = $1 AND id = $2 AND status = 'pending'`,
              [p.tenantId, id, choice.choose, choice.data ? JSON.stringify(choice.data) : null, p.userId],
            );
            if (rowCount === 0) throw new AppError('CONFLICT', 'This conflict was resolved meanwhile');
          },
        },
      );
      const { ack } = outcome.results[0];
      if (!ack.success) throw new AppError(ack.code ?? 'VALIDATION_FAILED', ack.error ?? 'The resolution could not be applied');
      // Read back unchecked: a resolution may take the record out of the resolver's sight (a deleted space).
      return (await find(p, id, false)) as ConflictRecord;
    },
  };
}
