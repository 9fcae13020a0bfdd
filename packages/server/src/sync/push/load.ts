import { randomUUID } from 'node:crypto';
import type { ConflictReport } from '@fieldsync/protocol/sync';
import type { Queryable } from '../../db/db.js';
import { isUuid } from '../../lib/values.js';
import { externalIds, type CollectionDef, type CollectionRegistry } from '../collections.js';
import type { Policy } from '../conflicts.js';
import type { TenantPolicies } from '../policies.js';
import { isScoped, rolesOf } from '../scopes.js';
import { stateKey, type ChangeResult, type Parsed, type PushCaller, type RecordState, type WritableDef } from './types.js';

/** Policies that decide by time, for which a change without a base is compared with every earlier edit. */
const timeBased = (policy: Policy) => ['most_recent_wins', 'field_merge', 'preserve_escalation'].includes(policy.strategy);

/** Everything a batch reads before deciding: a fixed number of queries, whatever its size. */
export interface BatchContext {
  /** Results of changes this device sent before, by change key. */
  receipts: Map<string, ChangeResult>;
  /** The device's local ids as stored (the newest record per local id). */
  localMap: Map<string, string>;
  /** Local ids of records created in this batch (the newest wins). */
  batchLocal: Map<string, string>;
  /** The record each change targets (a create's new id included). */
  targets: Map<Parsed, string | undefined>;
  /** The records the batch touches or references, by stateKey. */
  states: Map<string, RecordState>;
  /** State keys of ids that belong to another tenant. */
  foreign: Set<string>;
  /** The caller's roles by audience key, in the scopes the batch touches. */
  roles: Map<string, string>;
  /** Unique values taken by live records: `collection:field:value` -> id. */
  taken: Map<string, string>;
  /** External ids the tenant does not have: `collection:field:id`. */
  missing: Set<string>;
  /** The base version a change is compared from. */
  baseOf(p: Parsed, state: RecordState): number;
}

/**
 * The second step of a push: reads, under the tenant lock, what the live changes need —
 * receipts and local ids, the records they target or reference, the caller's scope roles, the
 * audit history of records that may conflict, and unique values already taken.
 */
export async function loadBatch(
  tx: Queryable,
  registry: CollectionRegistry,
  caller: PushCaller,
  live: Parsed[],
  opts: { receipts: boolean; policies: TenantPolicies },
): Promise<BatchContext> {
  // 1. Receipts (a re-sent change gets its original result) and the device's local ids (the
  // changes' own and those their references name), read together: one round trip.
  const keys = opts.receipts ? live.map((p) => p.key) : [];
  const localIds = new Set<string>();
  for (const p of live) {
    if (p.raw.localId) localIds.add(p.raw.localId);
    for (const local of Object.values(p.localRefs)) localIds.add(local);
  }
  const receipts = new Map<string, ChangeResult>();
  const localMap = new Map<string, string>();
  if (keys.length > 0 || localIds.size > 0) {
    // One primary-key probe per key and per id (the LIMITs keep the planner from scanning all
    // of the device's receipts and ids, which only grow, and filtering them). Not prepared: a
    // plan cached while the tables were small would scan them once they grew.
    const { rows } = await tx.query<{ key: string; ack: ChangeResult['ack'] | null; conflict: ConflictReport | null; server_id: string | null }>(
      `SELECT r.change_key AS key, r.ack, r.conflict, NULL::uuid AS server_id FROM unnest($3::text[]) AS k(key) CROSS JOIN LATERAL (
         SELECT p.change_key, p.ack, p.conflict FROM push_receipts p
          WHERE p.tenant_id = $1 AND p.device_id = $2 AND p.change_key = k.key LIMIT 1) r
       UNION ALL
       SELECT c.local_id, NULL, NULL, c.server_id FROM unnest($4::text[]) AS l(id) CROSS JOIN LATERAL (
         SELECT m.local_id, m.server_id FROM client_ids m
          WHERE m.tenant_id = $1 AND m.device_id = $2 AND m.local_id = l.id LIMIT 1) c`,
      [caller.tenantId, caller.deviceId, keys, [...localIds]],
    );
    for (const r of rows) {
      if (r.server_id) localMap.set(r.key, r.server_id);
      else if (r.ack) receipts.set(r.key, { ack: r.ack, conflict: r.conflict ?? undefined });
    }
  }

  // 2. Target ids, and every record the batch reads (targets and referenced parents). A create
  // is always a new record, also when its local id is mapped already (an app reinstalled, a
  // local counter reset): a re-sent create is known by its receipt, not by its local id.
  const targets = new Map<Parsed, string | undefined>();
  const wanted = new Map<CollectionDef, Set<string>>();
  const want = (def: CollectionDef, id: string) => {
    if (!wanted.has(def)) wanted.set(def, new Set());
    wanted.get(def)!.add(id);
  };
  const batchLocal = new Map<string, string>();
  const localOf = (local: string) => batchLocal.get(local) ?? localMap.get(local);
  for (const p of live) {
    if (receipts.has(p.key)) continue;
    let id = p.raw.id;
    // A client's id may exist already (a re-sent create, another record); one the server
    // makes here cannot, so it is not read.
    if (id) want(p.def, id);
    if (p.op === 'create') {
      // A record identified by what it is takes its derived id when the client names none
      // (or always, for collections where two ids for one thing must not exist).
      const derived = p.def.write.identity?.(p.fields, caller);
      if (derived && (id === undefined || p.def.write.identityWins)) want(p.def, (id = derived));
      id ??= randomUUID();
      if (p.raw.localId) batchLocal.set(p.raw.localId, id);
    } else if (!id && p.raw.localId) {
      id = localOf(p.raw.localId);
      if (id) want(p.def, id);
    }
    targets.set(p, id);
    for (const ref of p.def.write.refs ?? []) {
      const local = p.localRefs[ref.field];
      const refId = local ? localMap.get(local) : p.fields[ref.field];
      const refDef = registry.resolve(ref.collection);
      if (isUuid(refId) && refDef) want(refDef, refId);
    }
  }
  const { states, foreign } = await loadRecords(tx, caller.tenantId, wanted);

  // 3. The caller's roles in the scopes of the collections involved.
  const kinds = [...new Set(live.filter((p) => isScoped(p.def)).map((p) => p.def.scope.kind))];
  const roles = kinds.length > 0 && caller.userId ? await rolesOf(tx, caller.tenantId, caller.userId, kinds) : new Map<string, string>();

  // 4. Audit history of records that may conflict: base version older than the record, or
  // no base at all under a time-based policy (then every earlier edit counts).
  const baseOf = (p: Parsed, state: RecordState) => p.raw.baseVersion ?? (timeBased(opts.policies.get(p.def.name)) ? 0 : state.version);
  const byCollection = new Map<CollectionDef, { ids: string[]; since: number }>();
  for (const p of live) {
    const id = targets.get(p);
    const state = id ? states.get(stateKey(p.def.name, id)) : undefined;
    if (!state || p.op === 'create' || baseOf(p, state) >= state.version) continue;
    const entry = byCollection.get(p.def) ?? { ids: [], since: Number.MAX_SAFE_INTEGER };
    entry.ids.push(state.id);
    entry.since = Math.min(entry.since, baseOf(p, state));
    byCollection.set(p.def, entry);
  }
  for (const [def, { ids, since }] of byCollection) {
    const { rows } = await tx.query<{ record_id: string; version: number; changed_fields: string[]; at: number; device_id: string | null }>(
      `SELECT record_id, version, changed_fields, (extract(epoch from change_ts) * 1000)::float8 AS at, device_id
         FROM audit_log WHERE tenant_id = $1 AND collection = $2 AND record_id = ANY($3::uuid[]) AND version > $4`,
      [caller.tenantId, def.name, [...new Set(ids)], since],
    );
    for (const row of rows) {
      states.get(stateKey(def.name, row.record_id))?.edits.push({ version: row.version, fields: row.changed_fields, at: row.at, device: row.device_id });
    }
  }

  // 5. Unique values (contacts' primary phone) already taken by live records.
  const taken = new Map<string, string>();
  for (const def of new Set(live.map((p) => p.def))) {
    for (const field of def.write.unique ?? []) {
      const values = live.filter((p) => p.def === def && typeof p.fields[field] === 'string').map((p) => p.fields[field] as string);
      if (values.length === 0) continue;
      const column = def.write.fields[field].column;
      const { rows } = await tx.query<{ id: string; value: string }>(
        `SELECT id, ${column} AS value FROM ${def.table} WHERE tenant_id = $1 AND NOT is_deleted AND ${column} = ANY($2::text[])`,
        [caller.tenantId, values],
      );
      for (const r of rows) taken.set(`${def.name}:${field}:${r.value}`, r.id);
    }
  }

  // 6. Ids of things outside the synced collections (files) that the tenant does not have.
  const missing = new Set<string>();
  for (const def of new Set(live.map((p) => p.def))) {
    for (const ext of def.write.external ?? []) {
      // Text keys too (a project's external id); a uuid field's values were checked by the parser.
      const ids = [...new Set(live.filter((p) => p.def === def).flatMap((p) => externalIds(ext, p.fields[ext.field])))];
      if (ids.length === 0) continue;
      const found = await ext.existing(tx, caller.tenantId, ids, { userId: caller.userId });
      for (const id of ids) if (!found.has(id)) missing.add(`${def.name}:${ext.field}:${id}`);
    }
  }

  return { receipts, localMap, batchLocal, targets, states, foreign, roles, taken, missing, baseOf };
}

/** Loads the records a batch touches, by collection: id -> state (ids of other tenants flagged). */
async function loadRecords(tx: Queryable, tenantId: string, wanted: Map<CollectionDef, Set<string>>) {
  const states = new Map<string, RecordState>();
  const foreign = new Set<string>();
  for (const [def, ids] of wanted) {
    if (ids.size === 0) continue;
    const { rows } = await tx.query<{ mine: boolean; id: string; version: number; is_deleted: boolean; data: Record<string, unknown> }>(
      `SELECT r.tenant_id = $1 AS mine, r.id, r.version, r.is_deleted, ${def.wireSql} AS data FROM ${def.table} r WHERE r.id = ANY($2::uuid[])`,
      [tenantId, [...ids]],
    );
    for (const row of rows) {
      if (!row.mine) {
        foreign.add(stateKey(def.name, row.id));
        continue;
      }
      states.set(stateKey(def.name, row.id), {
        def: def as WritableDef,
        id: row.id,
        data: row.data,
        version: row.version,
        isDeleted: row.is_deleted,
        exists: true,
        edits: [],
        dirty: false,
      });
    }
  }
  return { states, foreign };
}
