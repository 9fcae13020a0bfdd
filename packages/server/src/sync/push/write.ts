import { createHash } from 'node:crypto';
import type { Change } from '@fieldsync/protocol/sync';
import type { Queryable } from '../../db/db.js';
import { AUDIT_INSERT_SQL, auditPayload } from '../audit.js';
import { audienceOf, type CollectionRegistry, type HookResult, type HookTx, type MembershipChange, type WriteContext } from '../collections.js';
import type { CommitEmit } from '../feed.js';
import { setMembers } from '../scopes.js';
import { createAuditEntry, createChanges, type CreateAudit, type Decisions } from './decide.js';
import { type PushCaller, type RecordState, type WritableDef } from './types.js';

/** What a written batch publishes after commit. */
export interface Written {
  /** Every change with its audience key (null: tenant-wide), in version order. */
  published: { change: Change; audience: string | null }[];
  events: CommitEmit[];
  userChanges: { userId: string; change: Change }[];
  membership: MembershipChange[];
}

/**
 * The last step of a push: writes the decided batch — one upsert per collection (parents first,
 * in registry order) that also writes the audit rows of the records it creates, then the other
 * audit entries, local ids, receipts and conflicts in one statement, then the collections'
 * hooks (memberships, cascades) and domain events. The statements are sent one after the other
 * without waiting in between, so the database runs the upserts while this process builds the
 * bookkeeping payload.
 */
export async function writeBatch(
  tx: Queryable & { nextVersion(collection: string): number },
  registry: CollectionRegistry,
  caller: PushCaller,
  decisions: Decisions,
  now: number,
): Promise<Written> {
  const { dirty, newLocal, receiptRows, conflictRows, applied } = decisions;
  // A created record written as created (not edited again in this batch) gets its audit row
  // from the upsert itself; the others' entries are built here.
  const createdBy = new Map<RecordState, CreateAudit>();
  const audits = [...decisions.audits];
  for (const c of decisions.createAudits) {
    if (c.state.dirty && c.state.version === c.entry.version) createdBy.set(c.state, c);
    else audits.push(createAuditEntry(c));
  }
  const statements: Promise<unknown>[] = [];
  for (const def of registry.all()) {
    const rows = dirty.filter((s) => s.def === def);
    if (rows.length > 0) statements.push(upsertRecords(tx, caller, def as WritableDef, rows, createdBy));
  }
  if (audits.length + newLocal.size + receiptRows.length + conflictRows.length > 0) {
    statements.push(tx.query(
      `WITH audit AS (${AUDIT_INSERT_SQL('$3')}),
       ids AS (
         INSERT INTO client_ids (tenant_id, device_id, local_id, collection, server_id)
         SELECT $1, $2, l.local_id, l.collection, l.server_id FROM jsonb_to_recordset($4::jsonb) AS l(local_id text, collection text, server_id uuid)
         ON CONFLICT (tenant_id, device_id, local_id) DO UPDATE SET collection = EXCLUDED.collection, server_id = EXCLUDED.server_id, created_at = now()),
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
        JSON.stringify([...newLocal].map(([localId, l]) => ({ local_id: localId, collection: l.collection, server_id: l.serverId }))),
        JSON.stringify(receiptRows),
        JSON.stringify(conflictRows),
      ],
      { prepare: 'push-bookkeeping' },
    ));
  }
  // Every statement has ended (the ones after a failed one fail too, the transaction being
  // aborted): the first failure is the batch's.
  const settled = await Promise.allSettled(statements);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;

  const ctx: WriteContext = { ...caller, now };
  const hookTx: HookTx = {
    query: (sql, params, opts) => tx.query(sql, params, opts),
    exec: (sql) => tx.exec(sql),
    nextVersion: (collection) => tx.nextVersion(collection),
    setMembers: (kind, scopeId, members, opts) => setMembers(tx, registry, caller.tenantId, { kind, id: scopeId, created: opts?.created }, members),
  };
  const extra: Required<HookResult> = { changes: [], userChanges: [], membership: [] };
  const events: Written['events'] = [];
  for (const [def, changes] of applied) {
    const write = (def as WritableDef).write;
    // The applied changes carry the stored records (timestamps included).
    const stored = new Map(dirty.filter((s) => s.def === def).map((s) => [s.id, s.data]));
    for (const change of changes) change.after = stored.get(change.id) ?? change.after;
    if (write.events) events.push(...write.events(changes, ctx));
    if (!write.afterWrite) continue;
    const result = await write.afterWrite(hookTx, changes, ctx);
    extra.changes.push(...result.changes);
    extra.userChanges.push(...(result.userChanges ?? []));
    extra.membership.push(...(result.membership ?? []));
  }

  const published: Written['published'] = dirty.map((s) => ({
    change: { collection: s.def.name, op: s.isDeleted ? 'delete' : 'upsert', id: s.id, version: s.version, data: s.data },
    audience: audienceOf(s.def, s.id, s.data),
  }));
  for (const change of extra.changes) {
    const def = registry.resolve(change.collection)!;
    published.push({ change, audience: audienceOf(def, change.id, change.data) });
  }
  published.sort((a, b) => a.change.version - b.change.version);
  return { published, events, userChanges: extra.userChanges, membership: extra.membership };
}

/** The upsert statement of each collection, built once, named by its text (prepared per connection). */
const upserts = new WeakMap<WritableDef, { sql: string; name: string }>();

function upsertStatement(def: WritableDef): { sql: string; name: string } {
  let statement = upserts.get(def);
  if (!statement) {
    const fields = Object.values(def.write.fields);
    const recordset = ['id uuid', 'version bigint', 'is_deleted boolean', ...fields.map((f) => `${f.column} ${f.type}`)].join(', ');
    const columns = fields.map((f) => f.column);
    // The audit row of a created record (rows with audit_ms), its changes built here
    // (`audit`): every audited field that is not null, from null, as diffRecords records a create.
    const sql = `WITH created_audit AS (
       INSERT INTO audit_log (tenant_id, collection, record_id, version, action, changed_fields, changes, user_id, agent_code, device_id, change_ts)
       SELECT $1, $3, (e.j->>'id')::uuid, (e.j->>'version')::bigint, 'create', ARRAY(SELECT jsonb_object_keys(e.j->'audit')), e.j->'audit', $4, $5, $6,
              'epoch'::timestamptz + (e.j->>'audit_ms')::bigint * interval '1 millisecond'
         FROM jsonb_array_elements($2::jsonb) AS e(j)
        WHERE e.j ? 'audit_ms')
     INSERT INTO ${def.table} AS r (id, tenant_id, version, is_deleted, ${columns.join(', ')})
     SELECT i.id, $1, i.version, i.is_deleted, ${columns.map((c) => `i.${c}`).join(', ')}
       FROM jsonb_to_recordset($2::jsonb) AS i(${recordset})
     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, is_deleted = EXCLUDED.is_deleted, updated_at = now(),
       ${columns.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}
     WHERE r.tenant_id = $1
     RETURNING r.id, ${def.wireSql} AS data`;
    // An insert has no plan to choose: planned once per connection.
    statement = { sql, name: `push-upsert:${createHash('sha1').update(sql).digest('hex').slice(0, 16)}` };
    upserts.set(def, statement);
  }
  return statement;
}

/**
 * Inserts or updates the final state of the touched records of one collection in one statement,
 * with the audit rows of the records in `createdBy` (created as they are written).
 */
async function upsertRecords(tx: Queryable, caller: PushCaller, def: WritableDef, rows: RecordState[], createdBy: Map<RecordState, CreateAudit>): Promise<void> {
  const fields = Object.entries(def.write.fields);
  const payload = rows.map((s) => {
    const row: Record<string, unknown> = { id: s.id, version: s.version, is_deleted: s.isDeleted };
    for (const [name, f] of fields) {
      const value = s.data[name];
      row[f.column] = value === undefined ? null : value;
    }
    const created = createdBy.get(s);
    if (created) {
      row.audit_ms = created.at;
      row.audit = createChanges(created);
    }
    return row;
  });
  const { sql, name } = upsertStatement(def);
  const { rows: written } = await tx.query<{ id: string; data: Record<string, unknown> }>(
    sql,
    [caller.tenantId, JSON.stringify(payload), def.name, caller.userId ?? null, caller.agentCode ?? null, caller.deviceId ?? null],
    { prepare: name },
  );
  if (written.length !== rows.length) throw new Error(`upsert of ${def.name} wrote ${written.length} of ${rows.length} rows`);
  // What was stored, with the database's timestamps, is what the feed publishes.
  const byId = new Map(written.map((w) => [w.id, w.data]));
  for (const s of rows) s.data = byId.get(s.id) ?? s.data;
}
