import { randomUUID } from 'node:crypto';
import type { Change, ConflictReport, PushAck, PushChange } from '@fieldsync/protocol/sync';
import { PushChange as PushChangeSchema } from '@fieldsync/protocol/sync';
import { Type } from 'typebox';
import type { Db, Queryable } from '../db/db.js';
import { AppError } from '../errors.js';
import { compileBodyValidator } from '../http/validation.js';
import { AUDIT_INSERT_SQL, auditPayload, diffRecords, type AuditEntry } from './audit.js';
import type { AppliedChange, CollectionDef, CollectionRegistry, HookResult, WriteContext, WriteDef } from './collections.js';
import { clampTimestamp, decide, type Policy, type ServerEdit } from './conflicts.js';

/** Policies that decide by time, for which a change without a base is compared with every earlier edit. */
const timeBased = (policy: Policy) => ['most_recent_wins', 'field_merge', 'preserve_escalation'].includes(policy.strategy);
import type { ChangeFeed } from './feed.js';
import type { PolicyStore, TenantPolicies } from './policies.js';
import { withTenantWrite, type TenantTx } from './versions.js';

/** Per-change error codes: the same catalogue as HTTP, so REST can map them to a status. */
export type ChangeErrorCode = 'VALIDATION_FAILED' | 'NOT_FOUND' | 'FORBIDDEN' | 'DUPLICATE' | 'VERSION_MISMATCH';

class ChangeError extends Error {
  constructor(
    readonly code: ChangeErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface PushCaller {
  tenantId: string;
  userId: string;
  agentCode: string;
  deviceId: string;
}

/** The result of one change: what the ack and the conflict report say. */
export interface ChangeResult {
  ack: PushAck & { code?: ChangeErrorCode };
  conflict?: ConflictReport;
}

export interface PushOutcome {
  results: ChangeResult[];
  fromVersion: number;
  toVersion: number;
}

export interface PushOptions {
  /** Keep receipts so a re-sent change gets its original result (devices); REST does not. */
  receipts?: boolean;
  /** REST optimistic concurrency: the record must be at this version. */
  expectedVersion?: number;
  /** Conflict resolution writes as the given outcome, whatever the policy. */
  force?: boolean;
  /** The receipt time (ms); now by default. */
  now?: number;
  /** Write a new version even when an update changes nothing (a resolution that keeps the server's state). */
  touch?: boolean;
  /** Runs first inside the write transaction; throwing aborts the batch. */
  within?: (tx: Queryable) => Promise<void>;
  /** All or nothing: a rejected change throws its error and rolls the whole batch back (`within` included). */
  allOrNothing?: boolean;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const OPERATIONS = new Set(['create', 'update', 'delete']);
const checkChange = compileBodyValidator<PushChange>(PushChangeSchema);

/** A change that passed the per-change checks, with everything the engine needs. */
interface Parsed {
  index: number;
  raw: PushChange;
  def: CollectionDef & { write: WriteDef };
  op: 'create' | 'update' | 'delete';
  key: string;
  at: number;
  fields: Record<string, unknown>;
  /** Referenced local ids: field -> local id. */
  localRefs: Record<string, string>;
}

/** What the engine holds in memory of one record during a push. */
interface RecordState {
  def: CollectionDef & { write: WriteDef };
  id: string;
  data: Record<string, unknown>;
  version: number;
  isDeleted: boolean;
  exists: boolean;
  /** Known edits with their versions and devices (audit history plus this batch). */
  edits: { version: number; fields: string[]; at: number; device: string | null }[];
  dirty: boolean;
}

const stateKey = (collection: string, id: string) => `${collection}:${id}`;

/** NUL or a lone surrogate: text PostgreSQL cannot store (socket payloads skip the HTTP JSON parser's check). */
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** As deep as the HTTP JSON parser allows (MAX_JSON_DEPTH). */
const MAX_DEPTH = 32;

/** Why `value` cannot be stored as is (unstorable text in a string or key, or too deep), if so. */
function unstorable(value: unknown, depth = 0): string | undefined {
  if (typeof value === 'string') return UNSTORABLE.test(value) ? 'Strings must not contain NUL characters or lone surrogates' : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth >= MAX_DEPTH) return `A change must not nest deeper than ${MAX_DEPTH} levels`;
  for (const [key, v] of Object.entries(value)) {
    const why = unstorable(key) ?? unstorable(v, depth + 1);
    if (why) return why;
  }
  return undefined;
}

function parseTimestamp(value: string | number): number | undefined {
  const ms = typeof value === 'number' ? value : /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  return Number.isFinite(ms) && ms >= 0 && ms < 8.64e15 ? ms : undefined;
}

/**
 * A change sets only the fields its collection's schema names: an object schema that leaves
 * `additionalProperties` open (TypeBox's Omit drops it) is closed here, or unknown and
 * server-owned names (`isDeleted`, `createdByAgent`, ...) would reach the record.
 */
function closed(schema: object): object {
  const s = schema as { type?: unknown; additionalProperties?: unknown };
  return s.type === 'object' && s.additionalProperties === undefined ? { ...schema, additionalProperties: false } : schema;
}

/** The identity of a change: device + changeId, or device + record + operation + timestamp. */
export function changeKey(def: CollectionDef, raw: PushChange, op: string): string | undefined {
  if (raw.changeId) return `c:${raw.changeId}`;
  const target = raw.localId ?? raw.id;
  return target ? `r:${def.name}:${target}:${op}:${raw.timestamp}` : undefined;
}

/** For all-or-nothing writes: the first rejected change's error. */
function throwFirstRejection(results: ChangeResult[]): void {
  const rejected = results.find((r) => !r.ack.success);
  if (rejected) throw new AppError(rejected.ack.code ?? 'VALIDATION_FAILED', rejected.ack.error ?? 'The change was rejected');
}

/**
 * The write half of sync (SPEC §4 "Batched push"): applies a device's changes in order, each
 * with its own result, all accepted ones in one transaction of the tenant; re-sent changes
 * are answered from their receipts; conflicting ones go through the tenant's policy.
 * Per-change work is batched: a fixed number of queries per request, not per change.
 */
export function createPushEngine(deps: { db: Db; registry: CollectionRegistry; feed: ChangeFeed; policies: PolicyStore }) {
  const { db, registry } = deps;
  const fieldValidators = new Map<string, { create: ReturnType<typeof compileBodyValidator>; update: ReturnType<typeof compileBodyValidator> }>();
  const validatorsOf = (def: CollectionDef & { write: WriteDef }) => {
    let v = fieldValidators.get(def.name);
    if (!v) {
      v = { create: compileBodyValidator(closed(def.write.createSchema)), update: compileBodyValidator(closed(def.write.updateSchema)) };
      fieldValidators.set(def.name, v);
    }
    return v;
  };

  /** Per-change checks that need no database: shape, collection, operation, fields. */
  const parse = (raw: unknown, index: number, now: number): Parsed | ChangeResult => {
    const shape = checkChange(raw);
    const base = (raw ?? {}) as Partial<PushChange>;
    const reject = (code: ChangeErrorCode, error: string): ChangeResult => ({
      ack: {
        changeId: typeof base.changeId === 'string' ? base.changeId : undefined,
        localId: typeof base.localId === 'string' ? base.localId : null,
        serverId: typeof base.id === 'string' && UUID_RE.test(base.id) ? base.id : null,
        entityType: typeof base.entityType === 'string' ? base.entityType.slice(0, 64) : 'unknown',
        operation: typeof base.operation === 'string' ? base.operation.slice(0, 16) : 'unknown',
        success: false,
        status: 'rejected',
        code,
        error,
      },
    });
    if (!shape.ok) return reject('VALIDATION_FAILED', shape.errors.map((e) => `${e.field} ${e.message}`).join('; '));
    const change = shape.value;
    // Ids, keys and values reach text and jsonb columns: one bad string must not sink the batch.
    const bad = unstorable(change);
    if (bad) return reject('VALIDATION_FAILED', bad);
    const def = registry.resolve(change.entityType);
    if (!def || !def.write) return reject('VALIDATION_FAILED', `Unknown entityType "${change.entityType}"`);
    const write = def.write;
    if (!OPERATIONS.has(change.operation)) return reject('VALIDATION_FAILED', `Unknown operation "${change.operation}"`);
    const op = change.operation as Parsed['op'];
    if (!write.operations.includes(op)) return reject('VALIDATION_FAILED', `${def.name} accept no ${op}`);
    if (change.id !== undefined && !UUID_RE.test(change.id)) return reject('VALIDATION_FAILED', 'id must be a UUID');
    const key = changeKey(def, change, op);
    if (!key) return reject('VALIDATION_FAILED', 'A change needs a changeId, a localId or an id');
    const clientAt = parseTimestamp(change.timestamp);
    if (clientAt === undefined) return reject('VALIDATION_FAILED', 'timestamp must be an ISO date or epoch milliseconds');

    const data = { ...(change.data ?? {}) };
    const localRefs: Record<string, string> = {};
    for (const ref of write.refs ?? []) {
      const local = data[ref.localField];
      delete data[ref.localField];
      if (local === undefined || local === null) continue;
      if (typeof local !== 'string' || local.length === 0 || local.length > 128) {
        return reject('VALIDATION_FAILED', `${ref.localField} must be a string`);
      }
      if (data[ref.field] === undefined) localRefs[ref.field] = local;
    }
    let fields: Record<string, unknown> = {};
    if (op !== 'delete') {
      const checked = (op === 'create' ? validatorsOf(def as Parsed['def']).create : validatorsOf(def as Parsed['def']).update)({
        ...data,
        ...Object.fromEntries(Object.keys(localRefs).map((f) => [f, '00000000-0000-4000-8000-000000000000'])),
      });
      if (!checked.ok) return reject('VALIDATION_FAILED', checked.errors.map((e) => `${e.field}: ${e.message}`).join('; '));
      try {
        fields = write.normalise ? write.normalise(data) : data;
      } catch (error) {
        if (error instanceof AppError) return reject('VALIDATION_FAILED', error.message);
        throw error;
      }
    }
    return { index, raw: change, def: def as Parsed['def'], op, key, at: clampTimestamp(clientAt, now), fields, localRefs };
  };

  const ackOf = (p: Parsed, over: Partial<ChangeResult['ack']>): ChangeResult['ack'] => ({
    changeId: p.raw.changeId,
    localId: p.raw.localId ?? null,
    serverId: null,
    entityType: p.raw.entityType,
    operation: p.op,
    success: true,
    status: 'applied',
    ...over,
  });

  /** Loads the records a batch touches, by collection: id -> state (ids of other tenants flagged). */
  const loadRecords = async (tx: Queryable, tenantId: string, wanted: Map<CollectionDef, Set<string>>) => {
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
          def: def as Parsed['def'],
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
  };

  /** The audit history after `since` of the records that may conflict. */
  const loadEdits = async (tx: Queryable, tenantId: string, collection: string, ids: string[], since: number) => {
    if (ids.length === 0) return [];
    const { rows } = await tx.query<{ record_id: string; version: number; changed_fields: string[]; at: number; device_id: string | null }>(
      `SELECT record_id, version, changed_fields, (extract(epoch from change_ts) * 1000)::float8 AS at, device_id
         FROM audit_log WHERE tenant_id = $1 AND collection = $2 AND record_id = ANY($3::uuid[]) AND version > $4`,
      [tenantId, collection, ids, since],
    );
    return rows;
  };

  /** Applies one batch inside a tenant write; returns per-change results and what to publish. */
  const applyBatch = async (tx: TenantTx, caller: PushCaller, parsed: (Parsed | ChangeResult)[], opts: PushOptions & { policies: TenantPolicies }) => {
    const now = opts.now ?? Date.now();
    const ctx: WriteContext = { ...caller, now };
    await opts.within?.(tx);
    const results: (ChangeResult | undefined)[] = parsed.map((p) => ('ack' in p ? p : undefined));
    const live = parsed.filter((p): p is Parsed => !('ack' in p));

    // 1. Receipts (a re-sent change gets its original result) and the device's local ids (the
    // changes' own and those their references name), read together: one round trip under the lock.
    const keys = opts.receipts !== false ? live.map((p) => p.key) : [];
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
    const newLocal: { localId: string; collection: string; serverId: string }[] = [];

    // 3. Target ids, and every record the batch reads (targets and referenced parents).
    const targets = new Map<Parsed, string | undefined>();
    const wanted = new Map<CollectionDef, Set<string>>();
    const want = (def: CollectionDef, id: string) => {
      if (!wanted.has(def)) wanted.set(def, new Set());
      wanted.get(def)!.add(id);
    };
    const batchLocal = new Map<string, string>();
    for (const p of live) {
      if (receipts.has(p.key)) continue;
      let id = p.raw.id ?? (p.raw.localId ? localMap.get(p.raw.localId) ?? batchLocal.get(p.raw.localId) : undefined);
      if (!id && p.op === 'create') {
        id = randomUUID();
        if (p.raw.localId) batchLocal.set(p.raw.localId, id);
      }
      targets.set(p, id);
      if (id) want(p.def, id);
      for (const ref of p.def.write.refs ?? []) {
        const local = p.localRefs[ref.field];
        const refId = local ? localMap.get(local) : (p.fields[ref.field] as string | undefined);
        const refDef = registry.resolve(ref.collection);
        if (refId && refDef && UUID_RE.test(refId)) want(refDef, refId);
      }
    }
    const { states, foreign } = await loadRecords(tx, caller.tenantId, wanted);

    // 4. Space roles of the caller, when a space-scoped collection is involved.
    const roles = new Map<string, string>();
    if (live.some((p) => p.def.scope === 'space')) {
      const { rows } = await tx.query<{ space_id: string; role: string }>(
        'SELECT space_id, role FROM space_members WHERE tenant_id = $1 AND user_id = $2',
        [caller.tenantId, caller.userId],
      );
      for (const r of rows) roles.set(r.space_id, r.role);
    }

    // 5. Audit history of records that may conflict: base version older than the record, or
    // no base at all under a time-based policy (then every earlier edit counts).
    const { policies } = opts;
    const baseOf = (p: Parsed, state: RecordState) => p.raw.baseVersion ?? (timeBased(policies.get(p.def.name)) ? 0 : state.version);
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
      for (const row of await loadEdits(tx, caller.tenantId, def.name, [...new Set(ids)], since)) {
        states.get(stateKey(def.name, row.record_id))?.edits.push({ version: row.version, fields: row.changed_fields, at: row.at, device: row.device_id });
      }
    }

    // 6. Unique values (contacts' primary phone) already taken by live records.
    const taken = new Map<string, string>(); // collection:field:value -> id
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

    const applied = new Map<CollectionDef, AppliedChange[]>();
    const audits: AuditEntry[] = [];
    const conflictRows: unknown[] = [];
    const receiptRows: { change_key: string; ack: unknown; conflict: unknown }[] = [];
    const seenKeys = new Map<string, ChangeResult>();

    const spaceOf = (def: CollectionDef, id: string, record: Record<string, unknown>) =>
      def.scope !== 'space' ? undefined : def.table === 'spaces' ? id : (record.spaceId as string | undefined);
    const roleIn = (spaceId: string | undefined) => (spaceId ? roles.get(spaceId) : undefined);

    const checkUnique = (def: CollectionDef & { write: WriteDef }, id: string, before: Record<string, unknown> | undefined, after: Record<string, unknown>) => {
      for (const field of def.write.unique ?? []) {
        const value = after[field];
        if (typeof value !== 'string' || before?.[field] === value) continue;
        const owner = taken.get(`${def.name}:${field}:${value}`);
        if (owner && owner !== id) throw new ChangeError('DUPLICATE', `${field} is already used by ${def.name} ${owner}`);
      }
    };
    const claimUnique = (def: CollectionDef & { write: WriteDef }, id: string, before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined) => {
      for (const field of def.write.unique ?? []) {
        if (before && typeof before[field] === 'string' && taken.get(`${def.name}:${field}:${before[field]}`) === id) {
          taken.delete(`${def.name}:${field}:${before[field]}`);
        }
        if (after && typeof after[field] === 'string') taken.set(`${def.name}:${field}:${after[field]}`, id);
      }
    };

    const record = (def: CollectionDef, change: AppliedChange) => {
      if (!applied.has(def)) applied.set(def, []);
      applied.get(def)!.push(change);
    };

    for (const p of live) {
      const replay = receipts.get(p.key) ?? seenKeys.get(p.key);
      if (replay) {
        results[p.index] = { ack: { ...replay.ack, status: 'duplicate' }, conflict: replay.conflict };
        continue;
      }
      let result: ChangeResult;
      try {
        result = applyChange(p);
      } catch (error) {
        if (!(error instanceof ChangeError)) throw error;
        result = { ack: ackOf(p, { serverId: targets.get(p) ?? null, success: false, status: 'rejected', code: error.code, error: error.message }) };
      }
      results[p.index] = result;
      seenKeys.set(p.key, result);
      if (opts.receipts !== false) receiptRows.push({ change_key: p.key, ack: result.ack, conflict: result.conflict ?? null });
    }

    function applyChange(p: Parsed): ChangeResult {
      const write = p.def.write;
      const id = targets.get(p);
      if (!id) throw new ChangeError('NOT_FOUND', `Unknown ${p.def.name} record: send its id or a localId this device created`);
      const key = stateKey(p.def.name, id);
      if (foreign.has(key)) {
        // Said without revealing that another tenant has it.
        throw p.op === 'create'
          ? new ChangeError('VALIDATION_FAILED', 'This id cannot be used: leave it to the server, or send a localId')
          : new ChangeError('NOT_FOUND', `${p.def.name} record not found`);
      }
      const state = states.get(key);

      // Resolve references (spaceId / categoryId given by local id) and check them.
      const fields = { ...p.fields };
      for (const ref of write.refs ?? []) {
        const local = p.localRefs[ref.field];
        if (local) {
          const refId = localMap.get(local) ?? batchLocal.get(local);
          if (!refId) throw new ChangeError('NOT_FOUND', `${ref.localField} ${local} names nothing this device created`);
          fields[ref.field] = refId;
        }
        const refId = fields[ref.field];
        if (refId === undefined || refId === null) continue;
        const parent = states.get(stateKey(ref.collection, refId as string));
        if (!parent || parent.isDeleted) throw new ChangeError('NOT_FOUND', `${ref.field} names no live ${ref.collection} record`);
        const parentSpace = spaceOf(parent.def, parent.id, parent.data);
        if (parentSpace && !roleIn(parentSpace)) throw new ChangeError('NOT_FOUND', `${ref.field} names no live ${ref.collection} record`);
        // A category named by an item must be in the item's own space.
        const ownSpace = (fields.spaceId ?? state?.data.spaceId) as string | undefined;
        if (parent.def.table !== 'spaces' && parentSpace && ownSpace && parentSpace !== ownSpace) {
          throw new ChangeError('VALIDATION_FAILED', `${ref.field} belongs to another space`);
        }
      }

      if (p.op === 'create') {
        if (state) {
          // The same record created again (a re-sent create with a new timestamp): same result.
          if (p.raw.localId && localMap.get(p.raw.localId) === id) {
            return { ack: ackOf(p, { serverId: id, status: 'duplicate', version: state.version }) };
          }
          throw new ChangeError('DUPLICATE', 'A record with this id already exists');
        }
        const prepared = write.prepare ? write.prepare('create', fields, undefined, ctx) : fields;
        const data: Record<string, unknown> = { ...write.defaults, ...prepared, id };
        const space = spaceOf(p.def, id, data);
        const denied = write.authorize?.('create', data, { ...ctx, role: roleIn(space) }, fields);
        if (denied) throw new ChangeError(denied.startsWith('not found') ? 'NOT_FOUND' : 'FORBIDDEN', denied);
        checkUnique(p.def, id, undefined, data);
        const version = tx.nextVersion();
        const created: RecordState = { def: p.def, id, data: { ...data, version, isDeleted: false }, version, isDeleted: false, exists: false, edits: [{ version, fields: Object.keys(prepared), at: p.at, device: caller.deviceId }], dirty: true };
        states.set(key, created);
        claimUnique(p.def, id, undefined, data);
        if (p.def.table === 'spaces') roles.set(id, 'owner');
        if (p.raw.localId && !localMap.has(p.raw.localId)) {
          localMap.set(p.raw.localId, id);
          newLocal.push({ localId: p.raw.localId, collection: p.def.name, serverId: id });
        }
        audits.push(auditOf(p, id, version, 'create', undefined, created.data));
        record(p.def, { id, op: 'create', before: undefined, after: created.data });
        return { ack: ackOf(p, { serverId: id, version }) };
      }

      if (!state) throw new ChangeError('NOT_FOUND', `${p.def.name} record not found`);
      const space = spaceOf(p.def, id, state.data);
      if (p.def.scope === 'space' && !roleIn(space)) throw new ChangeError('NOT_FOUND', `${p.def.name} record not found`);
      const denied = write.authorize?.(p.op, state.data, { ...ctx, role: roleIn(space) }, fields);
      if (denied) throw new ChangeError('FORBIDDEN', denied);
      if (opts.expectedVersion !== undefined && opts.expectedVersion !== state.version) {
        throw new ChangeError('VERSION_MISMATCH', `The record is at version ${state.version}, not ${opts.expectedVersion}`);
      }

      const policy: Policy = opts.force ? { strategy: 'client_wins' } : policies.get(p.def.name);
      const base = opts.force ? state.version : baseOf(p, state);
      // The device's own edits since its base are not competing ones: it made them.
      const editsSinceBase: ServerEdit[] = state.edits.filter((e) => e.version > base && e.device !== caller.deviceId);
      const decision = decide(policy, { record: state.data, isDeleted: state.isDeleted, editsSinceBase }, { operation: p.op, fields, at: p.at });
      // Without a base the server cannot tell what the device had seen: the time-based rules
      // still decide, field by field, but nothing is reported as a conflict.
      if (p.raw.baseVersion === undefined) decision.conflict = false;

      const before = { ...state.data };
      let version: number | undefined;
      if (decision.apply === 'delete') {
        version = tx.nextVersion();
        state.isDeleted = true;
        state.version = version;
        state.data = { ...state.data, isDeleted: true, version };
        state.edits.push({ version, fields: ['isDeleted'], at: p.at, device: caller.deviceId });
        state.dirty = true;
        claimUnique(p.def, id, before, undefined);
        audits.push(auditOf(p, id, version, 'delete', before, state.data));
        record(p.def, { id, op: 'delete', before, after: state.data });
      } else if (decision.apply) {
        const prepared = write.prepare ? write.prepare('update', decision.apply, state.data, ctx) : decision.apply;
        const next = { ...state.data, ...prepared };
        const touched = Object.keys(prepared);
        const changed = touched.filter((f) => JSON.stringify(before[f]) !== JSON.stringify(next[f]));
        if (changed.length === 0 && touched.length > 0 && !opts.touch) {
          // Set to the values it has: no new version, but the write and its time are recorded,
          // since later time-based decisions compare against them.
          state.edits.push({ version: state.version, fields: touched, at: p.at, device: caller.deviceId });
          audits.push(auditOf(p, id, state.version, 'update', before, state.data, touched));
        } else if (changed.length > 0 || opts.touch) {
          checkUnique(p.def, id, before, next);
          version = tx.nextVersion();
          state.version = version;
          state.data = { ...next, version };
          state.edits.push({ version, fields: touched, at: p.at, device: caller.deviceId });
          state.dirty = true;
          claimUnique(p.def, id, before, next);
          audits.push(auditOf(p, id, version, 'update', before, state.data, touched));
          record(p.def, { id, op: 'update', before, after: state.data });
        }
      }

      let conflict: ConflictReport | undefined;
      if (decision.conflict) {
        const conflictId = randomUUID();
        conflictRows.push({
          id: conflictId,
          collection: p.def.name,
          record_id: id,
          device_id: caller.deviceId,
          user_id: caller.userId,
          strategy: policy.strategy,
          client_change: p.raw,
          server_before: before,
          outcome: decision.outcome,
          status: decision.outcome === 'pending_review' ? 'pending' : 'logged',
        });
        conflict = {
          localId: p.raw.localId ?? null,
          id,
          collection: p.def.name,
          strategy: policy.strategy,
          outcome: decision.outcome,
          serverRecord: state.data,
          conflictId,
        };
      }
      return { ack: ackOf(p, { serverId: id, version: version ?? state.version, status: conflict ? 'conflict' : 'applied' }), conflict };
    }

    function auditOf(
      p: Parsed,
      id: string,
      version: number,
      action: AuditEntry['action'],
      before: Record<string, unknown> | undefined,
      after: Record<string, unknown>,
      touched: string[] = [],
    ): AuditEntry {
      const changes = action === 'delete' ? { isDeleted: { from: false, to: true } } : diffRecords(before, after, Object.keys(p.def.write.fields));
      // A field set to its current value is recorded too (from == to): it was written.
      for (const field of touched) changes[field] ??= { from: before?.[field] ?? null, to: after[field] ?? null };
      return {
        tenantId: caller.tenantId,
        collection: p.def.name,
        recordId: id,
        version,
        action,
        changes,
        userId: caller.userId,
        agentCode: caller.agentCode,
        deviceId: caller.deviceId,
        at: new Date(p.at).toISOString(),
      };
    }

    if (opts.allOrNothing) throwFirstRejection(results as ChangeResult[]);

    // 7. Write: one upsert per collection, then audit, ids, receipts, conflicts, hooks.
    const dirty = [...states.values()].filter((s) => s.dirty);
    // Parents before children (spaces, categories, items): the registry's order.
    for (const def of registry.all().filter((d) => dirty.some((s) => s.def === d)) as Parsed['def'][]) {
      await upsertRecords(tx, caller.tenantId, def, dirty.filter((s) => s.def === def));
    }
    // Audit, new local ids, receipts and conflicts: one statement of four inserts.
    if (audits.length + newLocal.length + receiptRows.length + conflictRows.length > 0) {
      await tx.query(
        `WITH audit AS (${AUDIT_INSERT_SQL('$3')}),
         ids AS (
           INSERT INTO client_ids (tenant_id, device_id, local_id, collection, server_id)
           SELECT $1, $2, l.local_id, l.collection, l.server_id FROM jsonb_to_recordset($4::jsonb) AS l(local_id text, collection text, server_id uuid)
           ON CONFLICT DO NOTHING),
         receipts AS (
           INSERT INTO push_receipts (tenant_id, device_id, change_key, ack, conflict)
           SELECT $1, $2, r.change_key, r.ack, r.conflict FROM jsonb_to_recordset($5::jsonb) AS r(change_key text, ack jsonb, conflict jsonb)
           ON CONFLICT DO NOTHING)
         INSERT INTO conflicts (id, tenant_id, collection, record_id, device_id, user_id, strategy, client_change, server_before, outcome, status)
         SELECT c.id, $1, c.collection, c.record_id, c.device_id, c.user_id, c.strategy, c.client_change, c.server_before, c.outcome, c.status
           FROM jsonb_to_recordset($6::jsonb) AS c(id uuid, collection text, record_id uuid, device_id text, user_id uuid, strategy text,
                client_change jsonb, server_before jsonb, outcome text, status text)`,
        [
          caller.tenantId,
          caller.deviceId,
          auditPayload(audits),
          JSON.stringify(newLocal.map((l) => ({ local_id: l.localId, collection: l.collection, server_id: l.serverId }))),
          JSON.stringify(receiptRows),
          JSON.stringify(conflictRows),
        ],
        { prepare: 'push-bookkeeping' },
      );
    }
    const extra: HookResult = { changes: [], userChanges: [], membership: [] };
    const events: { name: string; payload: unknown }[] = [];
    for (const [def, changes] of applied) {
      const write = (def as Parsed['def']).write;
      // The applied changes carry the stored records (timestamps included).
      for (const change of changes) change.after = states.get(stateKey(def.name, change.id))?.data ?? change.after;
      if (write.events) events.push(...write.events(changes, ctx));
      if (!write.afterWrite) continue;
      const out = await write.afterWrite(tx, changes, ctx);
      extra.changes.push(...out.changes);
      extra.userChanges!.push(...(out.userChanges ?? []));
      extra.membership!.push(...(out.membership ?? []));
    }

    const published: { change: Change; spaceId: string | null }[] = dirty.map((s) => ({
      change: { collection: s.def.name, op: s.isDeleted ? 'delete' : 'upsert', id: s.id, version: s.version, data: s.data },
      spaceId: spaceOf(s.def, s.id, s.data) ?? null,
    }));
    for (const change of extra.changes) {
      const def = registry.resolve(change.collection)!;
      published.push({ change, spaceId: spaceOf(def, change.id, change.data) ?? null });
    }
    published.sort((a, b) => a.change.version - b.change.version);
    return { results: results as ChangeResult[], published, events, userChanges: extra.userChanges!, membership: extra.membership! };
  };

  /** Inserts or updates the final state of the touched records of one collection in one statement. */
  const upsertRecords = async (tx: Queryable, tenantId: string, def: CollectionDef & { write: WriteDef }, rows: RecordState[]) => {
    const fields = Object.entries(def.write.fields);
    const recordset = ['id uuid', 'version bigint', 'is_deleted boolean', ...fields.map(([, f]) => `${f.column} ${f.type}`)].join(', ');
    const columns = fields.map(([, f]) => f.column);
    const payload = rows.map((s) => {
      const row: Record<string, unknown> = { id: s.id, version: s.version, is_deleted: s.isDeleted };
      for (const [name, f] of fields) {
        const value = s.data[name];
        row[f.column] = value === undefined ? null : value;
      }
      return row;
    });
    const { rows: written } = await tx.query<{ id: string; data: Record<string, unknown> }>(
      `INSERT INTO ${def.table} AS r (id, tenant_id, version, is_deleted, ${columns.join(', ')})
       SELECT i.id, $1, i.version, i.is_deleted, ${columns.map((c) => `i.${c}`).join(', ')}
         FROM jsonb_to_recordset($2::jsonb) AS i(${recordset})
       ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, is_deleted = EXCLUDED.is_deleted, updated_at = now(),
         ${columns.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}
       WHERE r.tenant_id = $1
       RETURNING r.id, ${def.wireSql} AS data`,
      [tenantId, JSON.stringify(payload)],
    );
    if (written.length !== rows.length) throw new Error(`upsert of ${def.name} wrote ${written.length} of ${rows.length} rows`);
    // What was stored, with the database's timestamps, is what the feed publishes.
    const byId = new Map(written.map((w) => [w.id, w.data]));
    for (const s of rows) s.data = byId.get(s.id) ?? s.data;
  };

  return {
    /**
     * Applies a batch of changes as `caller`; per-change results in input order. `raw` items
     * are unchecked: each is validated on its own.
     */
    async apply(caller: PushCaller, raw: unknown[], opts: PushOptions = {}): Promise<PushOutcome> {
      const now = opts.now ?? Date.now();
      const parsed = raw.map((change, index) => parse(change, index, now));
      if (opts.allOrNothing) throwFirstRejection(parsed.filter((p): p is ChangeResult => 'ack' in p));
      if (parsed.every((p) => 'ack' in p)) {
        return { results: parsed as ChangeResult[], fromVersion: 0, toVersion: 0 };
      }
      // Policies are settings, not data: read before the tenant lock, so its holder does less.
      // A batch applies the policies in force when it arrived.
      const policies = await deps.policies.forTenant(db, caller.tenantId);
      const committed = await withTenantWrite(db, caller.tenantId, (tx) => applyBatch(tx, caller, parsed, { ...opts, now, policies }));
      const { published, userChanges, membership, events } = committed.result;
      deps.feed.publish({
        tenantId: caller.tenantId,
        fromVersion: committed.fromVersion,
        toVersion: committed.toVersion,
        changes: published.map((p) => p.change),
        audience: published.map((p) => p.spaceId),
        userChanges,
        membership,
        events,
        origin: { userId: caller.userId, agentCode: caller.agentCode, deviceId: caller.deviceId },
      });
      return { results: committed.result.results, fromVersion: committed.fromVersion, toVersion: committed.toVersion };
    },
  };
}

export type PushEngine = ReturnType<typeof createPushEngine>;

/** The PushChange schema without its data, for documentation. */
export const PushChangeDoc = Type.Omit(PushChangeSchema, ['data']);
