import type { Queryable } from '../../db/db.js';

/** One period's counts of one tenant, as stored (hour or minute rows). */
export interface StatsRow {
  tenantId: string;
  /** The period's start (ms since the epoch). */
  start: number;
  pulls: number;
  pushes: number;
  failures: number;
  changesPushed: number;
  conflicts: number;
  itemsSynced: number;
  hist: number[];
}

const TABLES = {
  hour: { table: 'sync_analytics', column: 'hour' },
  minute: { table: 'sync_recent', column: 'minute' },
} as const;
export type Period = keyof typeof TABLES;

/**
 * Adds `rows` to the stored counts of their periods in one statement: counters add, and
 * histograms add element by element, so instances flushing the same period never overwrite
 * each other.
 */
export async function addStats(db: Queryable, period: Period, rows: StatsRow[]): Promise<void> {
  if (rows.length === 0) return;
  const { table, column } = TABLES[period];
  await db.query(
    `INSERT INTO ${table} AS s (tenant_id, ${column}, pulls, pushes, failures, changes_pushed, conflicts, items_synced, latency_hist)
     SELECT r.tenant_id, to_timestamp(r.start / 1000.0), r.pulls, r.pushes, r.failures, r.changes_pushed, r.conflicts, r.items_synced,
       ARRAY(SELECT e.v::bigint FROM jsonb_array_elements_text(r.hist) WITH ORDINALITY AS e(v, i) ORDER BY e.i)
     FROM jsonb_to_recordset($1::jsonb) AS r(tenant_id uuid, start bigint, pulls bigint, pushes bigint, failures bigint,
       changes_pushed bigint, conflicts bigint, items_synced bigint, hist jsonb)
     ON CONFLICT (tenant_id, ${column}) DO UPDATE SET
       pulls = s.pulls + EXCLUDED.pulls,
       pushes = s.pushes + EXCLUDED.pushes,
       failures = s.failures + EXCLUDED.failures,
       changes_pushed = s.changes_pushed + EXCLUDED.changes_pushed,
       conflicts = s.conflicts + EXCLUDED.conflicts,
       items_synced = s.items_synced + EXCLUDED.items_synced,
       latency_hist = ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0)
                              FROM unnest(s.latency_hist, EXCLUDED.latency_hist) WITH ORDINALITY AS t(a, b, i) ORDER BY t.i)`,
    [
      JSON.stringify(
        rows.map((r) => ({
          tenant_id: r.tenantId,
          start: r.start,
          pulls: r.pulls,
          pushes: r.pushes,
          failures: r.failures,
          changes_pushed: r.changesPushed,
          conflicts: r.conflicts,
          items_synced: r.itemsSynced,
          hist: r.hist,
        })),
      ),
    ],
  );
}

/** A tenant's stored periods with `from <= start < to` (ms), oldest first. */
export async function findStats(db: Queryable, period: Period, tenantId: string | undefined, from: number, to: number): Promise<StatsRow[]> {
  const { table, column } = TABLES[period];
  const { rows } = await db.query<{
    tenant_id: string;
    start: string;
    pulls: string;
    pushes: string;
    failures: string;
    changes_pushed: string;
    conflicts: string;
    items_synced: string;
    latency_hist: (string | number)[];
  }>(
    `SELECT tenant_id, (extract(epoch FROM ${column}) * 1000)::bigint AS start, pulls, pushes, failures, changes_pushed, conflicts,
            items_synced, latency_hist
       FROM ${table}
      WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ${column} >= to_timestamp($2 / 1000.0) AND ${column} < to_timestamp($3 / 1000.0)
      ORDER BY ${column}`,
    [tenantId ?? null, from, to],
  );
  return rows.map((r) => ({
    tenantId: r.tenant_id,
    start: Number(r.start),
    pulls: Number(r.pulls),
    pushes: Number(r.pushes),
    failures: Number(r.failures),
    changesPushed: Number(r.changes_pushed),
    conflicts: Number(r.conflicts),
    itemsSynced: Number(r.items_synced),
    hist: r.latency_hist.map(Number),
  }));
}

/** Removes periods that started before `before` (ms); the number removed. */
export async function deleteStatsBefore(db: Queryable, period: Period, before: number): Promise<number> {
  const { table, column } = TABLES[period];
  const result = await db.query(`DELETE FROM ${table} WHERE ${column} < to_timestamp($1 / 1000.0)`, [before]);
  return (result as { rowCount?: number | null }).rowCount ?? 0;
}
