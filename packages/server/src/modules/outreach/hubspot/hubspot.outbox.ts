import type { Queryable } from '../../../db/db.js';

/** What an outbox entry exports: contacts, projects as deals, links as associations, calls as notes, terminal states as properties. */
export type ExportKind = 'contact' | 'deal' | 'association' | 'note' | 'terminal';

/** The table of each kind's records. */
export const KIND_TABLES: Record<ExportKind, string> = {
  contact: 'contacts',
  deal: 'projects',
  association: 'project_contacts',
  note: 'call_sessions',
  terminal: 'terminal_sessions',
};

/** Whether the tenant exports: its own choice, else the server's token (`$exportAll`). */
const ENABLED_SQL = (tenant: string, exportAll: string) =>
  `coalesce((SELECT i.enabled FROM hubspot_integrations i WHERE i.tenant_id = ${tenant}), ${exportAll}::boolean)`;

/**
 * Queues records for export in the writer's transaction (so a committed change is never
 * forgotten), when the tenant exports at all. One pending entry per object: a later change
 * raises its version, and the worker sends the record as it is when it sends.
 */
export async function enqueueExport(
  tx: Queryable,
  tenantId: string,
  kind: ExportKind,
  rows: { id: string; version: number }[],
  exportAll: boolean,
): Promise<number> {
  if (rows.length === 0) return 0;
  const { rowCount } = await tx.query(
    `INSERT INTO hubspot_outbox (tenant_id, kind, record_id, record_version)
     SELECT $1, $2, e.id, e.version FROM jsonb_to_recordset($3::jsonb) AS e(id uuid, version bigint)
      WHERE ${ENABLED_SQL('$1', '$4')}
     ON CONFLICT (tenant_id, kind, record_id) WHERE status = 'pending'
     DO UPDATE SET record_version = GREATEST(hubspot_outbox.record_version, EXCLUDED.record_version), updated_at = now()`,
    [tenantId, kind, JSON.stringify(rows), exportAll],
    { prepare: 'hubspot-enqueue' },
  );
  return rowCount;
}

/** Queues every live record of the tenant whose acknowledged version is older (enabling, or the server token's first round). */
export async function enqueueAll(tx: Queryable, tenantId: string): Promise<number> {
  let queued = 0;
  for (const [kind, table] of Object.entries(KIND_TABLES) as [ExportKind, string][]) {
    const { rowCount } = await tx.query(
      `INSERT INTO hubspot_outbox (tenant_id, kind, record_id, record_version)
       SELECT r.tenant_id, $2, r.id, r.version FROM ${table} r
         LEFT JOIN hubspot_objects h ON h.tenant_id = r.tenant_id AND h.kind = $2 AND h.record_id = r.id
        WHERE r.tenant_id = $1 AND NOT r.is_deleted AND (h.synced_version IS NULL OR h.synced_version < r.version)
          ${kind === 'terminal' ? "AND r.scope <> 'global'" : ''}
       ON CONFLICT (tenant_id, kind, record_id) WHERE status = 'pending'
       DO UPDATE SET record_version = GREATEST(hubspot_outbox.record_version, EXCLUDED.record_version)`,
      [tenantId, kind],
    );
    queued += rowCount;
  }
  return queued;
}

/** A claimed outbox entry. */
export interface OutboxEntry {
  id: number;
  tenantId: string;
  kind: ExportKind;
  recordId: string;
  recordVersion: number;
  attempts: number;
}

/** Due and not held by a live lease (`o`: an outbox row). */
const DUE = "o.status = 'pending' AND o.next_attempt_at <= now() AND (o.lease_until IS NULL OR o.lease_until < now())";

/**
 * Claims up to `limit` due entries of one tenant and one kind, leased to `worker` for
 * `leaseMs`. The tenant is the one claimed least recently among those with due entries (so a
 * tenant's backlog never starves the others), the kind an object's (contacts, deals) before
 * the associations, notes and properties that need their HubSpot ids. Rows another worker is
 * claiming are skipped (`FOR UPDATE SKIP LOCKED`), and a leased row is taken only once its
 * lease ran out (its worker died): no two workers ever hold one entry.
 */
export async function claimDue(
  tx: Queryable,
  opts: { worker: string; leaseMs: number; limit: number; exportAll: boolean },
): Promise<OutboxEntry[]> {
  const { rows } = await tx.query<{ id: string; tenant_id: string; kind: ExportKind; record_id: string; record_version: string; attempts: number }>(
    `WITH t AS (
       SELECT i.tenant_id FROM hubspot_integrations i
        WHERE coalesce(i.enabled, $1::boolean) AND (i.backoff_until IS NULL OR i.backoff_until <= now())
          AND EXISTS (SELECT 1 FROM hubspot_outbox o WHERE o.tenant_id = i.tenant_id AND ${DUE})
        ORDER BY i.last_claim_at NULLS FIRST, i.tenant_id LIMIT 1),
     k AS (
       (SELECT o.kind FROM hubspot_outbox o JOIN t ON o.tenant_id = t.tenant_id WHERE o.kind IN ('contact', 'deal') AND ${DUE} LIMIT 1)
       UNION ALL
       (SELECT o.kind FROM hubspot_outbox o JOIN t ON o.tenant_id = t.tenant_id WHERE o.kind NOT IN ('contact', 'deal') AND ${DUE} LIMIT 1)
       LIMIT 1),
     claimed AS (
       SELECT o.id FROM hubspot_outbox o JOIN t ON o.tenant_id = t.tenant_id JOIN k ON o.kind = k.kind
        WHERE ${DUE} ORDER BY o.id LIMIT $2 FOR UPDATE OF o SKIP LOCKED)
     UPDATE hubspot_outbox o SET lease_until = now() + $3 * interval '1 millisecond', leased_by = $4
       FROM claimed WHERE o.id = claimed.id
     RETURNING o.id, o.tenant_id, o.kind, o.record_id, o.record_version, o.attempts`,
    [opts.exportAll, opts.limit, opts.leaseMs, opts.worker],
  );
  return rows
    .map((r) => ({ id: Number(r.id), tenantId: r.tenant_id, kind: r.kind, recordId: r.record_id, recordVersion: Number(r.record_version), attempts: r.attempts }))
    .sort((a, b) => a.id - b.id);
}

/**
 * Marks the tenant's turn taken (claims go round the tenants by it). Its own statement, after
 * the claim committed: a transaction never holds outbox rows while it waits for an
 * integration row (configuring takes them the other way round).
 */
export async function takeTurn(db: Queryable, tenantId: string): Promise<void> {
  await db.query('UPDATE hubspot_integrations SET last_claim_at = now() WHERE tenant_id = $1', [tenantId]);
}

/** What HubSpot holds of each record: its HubSpot id and the acknowledged version. */
export async function exportedObjects(
  db: Queryable,
  tenantId: string,
  kind: ExportKind,
  ids: string[],
): Promise<Map<string, { hubspotId: string; version: number }>> {
  if (ids.length === 0) return new Map();
  const { rows } = await db.query<{ record_id: string; hubspot_id: string; synced_version: string }>(
    'SELECT record_id, hubspot_id, synced_version FROM hubspot_objects WHERE tenant_id = $1 AND kind = $2 AND record_id = ANY($3::uuid[])',
    [tenantId, kind, ids],
  );
  return new Map(rows.map((r) => [r.record_id, { hubspotId: r.hubspot_id, version: Number(r.synced_version) }]));
}

/**
 * Records what HubSpot acknowledged, in one transaction: the objects' HubSpot ids and versions,
 * and the entries done (deleted) unless their record changed again meanwhile (then the entry
 * stays, released, to send the newer state). Only the worker holding the lease completes.
 * Returns how many entries HubSpot received (the tenant's `exported` counter).
 */
export async function completeEntries(
  tx: Queryable,
  worker: string,
  tenantId: string,
  done: { entryId: number; kind: ExportKind; recordId: string; hubspotId: string | null; version: number; sent?: false }[],
): Promise<number> {
  if (done.length === 0) return 0;
  // The tenant's row first, as configuring does (it then queues entries): no lock cycle.
  await tx.query('SELECT 1 FROM hubspot_integrations WHERE tenant_id = $1 FOR UPDATE', [tenantId]);
  // Then in one statement: the HubSpot ids, the entries done (deleted) or released to send a
  // newer version (disjoint sets), and the counters (exported: what HubSpot received).
  const { rows } = await tx.query<{ exported: number }>(
    `WITH d AS (
       SELECT * FROM jsonb_to_recordset($3::jsonb) AS d(id bigint, kind text, record_id uuid, hubspot_id text, version bigint, sent boolean)),
     objects AS (
       INSERT INTO hubspot_objects (tenant_id, kind, record_id, hubspot_id, synced_version)
       SELECT $1, d.kind, d.record_id, d.hubspot_id, d.version FROM d WHERE d.hubspot_id IS NOT NULL
       ON CONFLICT (tenant_id, kind, record_id) DO UPDATE SET hubspot_id = EXCLUDED.hubspot_id,
         synced_version = GREATEST(hubspot_objects.synced_version, EXCLUDED.synced_version), synced_at = now()),
     deleted AS (
       DELETE FROM hubspot_outbox o USING d WHERE o.id = d.id AND o.leased_by = $2 AND o.record_version <= d.version RETURNING d.sent),
     released AS (
       UPDATE hubspot_outbox o SET lease_until = NULL, leased_by = NULL, updated_at = now()
         FROM d WHERE o.id = d.id AND o.leased_by = $2 AND o.record_version > d.version),
     counted AS (SELECT (count(*) FILTER (WHERE sent))::int AS n FROM deleted)
     INSERT INTO hubspot_integrations (tenant_id, exported, last_success_at) SELECT $1, n, now() FROM counted
     ON CONFLICT (tenant_id) DO UPDATE SET exported = hubspot_integrations.exported + EXCLUDED.exported, last_success_at = now(), updated_at = now()
     RETURNING (SELECT n FROM counted) AS exported`,
    [
      tenantId,
      worker,
      JSON.stringify(done.map((d) => ({ id: d.entryId, kind: d.kind, record_id: d.recordId, hubspot_id: d.hubspotId, version: d.version, sent: d.sent !== false }))),
    ],
  );
  return rows[0]?.exported ?? 0;
}

/** Releases entries without counting a try: they wait `delayMs` (a dependency not exported yet). */
export async function deferEntries(db: Queryable, worker: string, ids: number[], delayMs: number): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `UPDATE hubspot_outbox SET lease_until = NULL, leased_by = NULL, next_attempt_at = now() + $3 * interval '1 millisecond', updated_at = now()
      WHERE id = ANY($2::bigint[]) AND leased_by = $1`,
    [worker, ids, delayMs],
  );
}

/**
 * A failed try of `ids`: each waits its backoff (or `notBefore`), or becomes a dead letter after
 * `maxAttempts`; `countTry` false (HubSpot's rate limit) waits without using up a try. The
 * tenant's counters record the retries and the error, and `backoffUntil` pauses the tenant.
 */
export async function failEntries(
  db: Queryable,
  worker: string,
  tenantId: string,
  ids: number[],
  opts: { error: string; countTry: boolean; maxAttempts: number; retryBaseMs: number; notBeforeMs?: number; backoffUntilMs?: number },
): Promise<void> {
  if (ids.length > 0) {
    await db.query(
      `UPDATE hubspot_outbox o SET
          attempts = o.attempts + $3::int,
          status = CASE WHEN o.attempts + $3::int >= $4 THEN 'dead' ELSE 'pending' END,
          next_attempt_at = now() + GREATEST($6::float8,
            CASE WHEN $3::int = 0 THEN 0 ELSE least(300000, $5::float8 * power(2, o.attempts) * (0.75 + random() * 0.5)) END) * interval '1 millisecond',
          last_error = $7, lease_until = NULL, leased_by = NULL, updated_at = now()
        WHERE o.id = ANY($2::bigint[]) AND o.leased_by = $1`,
      [worker, ids, opts.countTry ? 1 : 0, opts.maxAttempts, opts.retryBaseMs, opts.notBeforeMs ?? 0, opts.error.slice(0, 1000)],
    );
  }
  await db.query(
    `INSERT INTO hubspot_integrations (tenant_id, retries, last_error, last_error_at, backoff_until)
     VALUES ($1, $2, $3, now(), CASE WHEN $4::float8 > 0 THEN now() + $4::float8 * interval '1 millisecond' END)
     ON CONFLICT (tenant_id) DO UPDATE SET retries = hubspot_integrations.retries + EXCLUDED.retries,
       last_error = EXCLUDED.last_error, last_error_at = now(), backoff_until = EXCLUDED.backoff_until, updated_at = now()`,
    [tenantId, ids.length, opts.error.slice(0, 1000), opts.backoffUntilMs ?? 0],
  );
}
