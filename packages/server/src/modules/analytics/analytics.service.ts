import type { SyncAnalytics, SyncStats } from '@fieldsync/protocol/fleet';
import type { Db } from '../../db/db.js';
import { AppError } from '../../errors.js';
import { addHist, bucketOf, emptyHist, quantile } from './analytics.histogram.js';
import * as repo from './analytics.repository.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** How long per-minute rows (what alert rules read) are kept. */
const RECENT_KEEP_MS = 2 * HOUR;

/** One finished pull or push, as the sync path reports it. */
export interface SyncSample {
  tenantId: string;
  kind: 'pull' | 'push';
  ms: number;
  ok: boolean;
  /** Records pulled plus changes accepted. */
  items: number;
  changesPushed?: number;
  conflicts?: number;
}

/** Counts summed over some periods (a range's totals, an alert window). */
export type Totals = Omit<repo.StatsRow, 'tenantId' | 'start'>;

const emptyTotals = (): Totals => ({ pulls: 0, pushes: 0, failures: 0, changesPushed: 0, conflicts: 0, itemsSynced: 0, hist: emptyHist() });
const addTotals = (into: Totals, from: Totals) => {
  into.pulls += from.pulls;
  into.pushes += from.pushes;
  into.failures += from.failures;
  into.changesPushed += from.changesPushed;
  into.conflicts += from.conflicts;
  into.itemsSynced += from.itemsSynced;
  addHist(into.hist, from.hist);
};

/** The wire form of some counts: rates and percentiles derived. */
export function statsOf(t: Totals): SyncStats {
  const syncs = t.pulls + t.pushes;
  const rate = (n: number, of: number) => (of > 0 ? Math.round((n / of) * 10_000) / 10_000 : null);
  return {
    pulls: t.pulls,
    pushes: t.pushes,
    failures: t.failures,
    successRate: rate(syncs - t.failures, syncs),
    changesPushed: t.changesPushed,
    conflicts: t.conflicts,
    conflictRate: rate(t.conflicts, t.changesPushed),
    p50Ms: quantile(t.hist, 0.5),
    p95Ms: quantile(t.hist, 0.95),
    p99Ms: quantile(t.hist, 0.99),
    itemsSynced: t.itemsSynced,
  };
}

export interface AnalyticsService {
  /** Counts one pull or push in memory: no I/O on the sync path. */
  record(sample: SyncSample): void;
  /** Adds what this instance counted to the database (per minute and per hour). */
  flush(): Promise<void>;
  /** Removes hours past the retention and minutes past the alert window. */
  prune(): Promise<void>;
  /** SPEC §11: a tenant's hours in [from, to), the current one as it happens (this instance's unflushed counts included). */
  sync(tenantId: string, range: { from?: string; to?: string }): Promise<SyncAnalytics>;
  /** Every tenant's counts over the last `windowMs`, for the alert rules. */
  recent(windowMs: number): Promise<Map<string, Totals>>;
}

/**
 * Sync analytics (SPEC §11, docs/operations.md): each pull and push adds to in-memory counts
 * of its tenant and minute; a periodic flush adds them to the database in two statements (the
 * minute rows the alert rules read, the hour rows the analytics API reads). Nothing is written
 * per request; a flush the database refuses is kept and tried again with the next one.
 */
export function createAnalyticsService(deps: { db: Db; retentionDays: number; now?: () => number }): AnalyticsService {
  const now = deps.now ?? Date.now;
  /** Unflushed counts by `tenant|minuteStart`. */
  let pending = new Map<string, repo.StatsRow>();
  /** Counts being written: still merged into reads until the write is done. */
  let writing: repo.StatsRow[] = [];
  let flushing: Promise<void> = Promise.resolve();

  const unflushed = () => [...writing, ...pending.values()];

  /** Folds minute rows into rows of `size` ms periods. */
  const fold = (rows: repo.StatsRow[], size: number): repo.StatsRow[] => {
    const out = new Map<string, repo.StatsRow>();
    for (const row of rows) {
      const start = Math.floor(row.start / size) * size;
      const key = `${row.tenantId}|${start}`;
      let into = out.get(key);
      if (!into) out.set(key, (into = { tenantId: row.tenantId, start, ...emptyTotals() }));
      addTotals(into, row);
    }
    return [...out.values()];
  };

  const parseTime = (field: string, value: string | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    const ms = Date.parse(value);
    if (Number.isNaN(ms)) throw new AppError('VALIDATION_FAILED', `${field} must be an ISO 8601 date-time`, [{ field, message: 'invalid date-time' }]);
    return ms;
  };

  return {
    record(sample) {
      const start = Math.floor(now() / MINUTE) * MINUTE;
      const key = `${sample.tenantId}|${start}`;
      let row = pending.get(key);
      if (!row) pending.set(key, (row = { tenantId: sample.tenantId, start, ...emptyTotals() }));
      if (sample.kind === 'pull') row.pulls += 1;
      else row.pushes += 1;
      if (!sample.ok) row.failures += 1;
      row.changesPushed += sample.changesPushed ?? 0;
      row.conflicts += sample.conflicts ?? 0;
      row.itemsSynced += sample.items;
      row.hist[bucketOf(sample.ms)] += 1;
    },
    flush() {
      flushing = flushing.then(async () => {
        if (pending.size === 0) return;
        writing = [...pending.values()];
        pending = new Map();
        try {
          await deps.db.transaction(async (tx) => {
            await repo.addStats(tx, 'minute', writing);
            await repo.addStats(tx, 'hour', fold(writing, HOUR));
          });
        } catch (error) {
          // Kept for the next flush: counts are only lost with the process.
          for (const row of writing) {
            const key = `${row.tenantId}|${row.start}`;
            const into = pending.get(key);
            if (into) addTotals(into, row);
            else pending.set(key, row);
          }
          throw error;
        } finally {
          writing = [];
        }
      });
      return flushing;
    },
    async prune() {
      await repo.deleteStatsBefore(deps.db, 'hour', now() - deps.retentionDays * DAY);
      await repo.deleteStatsBefore(deps.db, 'minute', now() - RECENT_KEEP_MS);
    },
    async sync(tenantId, range) {
      const to = parseTime('to', range.to, now());
      const from = parseTime('from', range.from, to - DAY);
      if (from >= to) throw new AppError('VALIDATION_FAILED', 'from must be before to', [{ field: 'from', message: 'must be before to' }]);
      if (to - from > deps.retentionDays * DAY + HOUR) {
        throw new AppError('VALIDATION_FAILED', `The range may span at most ${deps.retentionDays} days (the retention)`, [{ field: 'from', message: 'range too long' }]);
      }
      const first = Math.floor(from / HOUR) * HOUR;
      const stored = await repo.findStats(deps.db, 'hour', tenantId, first, to);
      const live = fold(unflushed().filter((r) => r.tenantId === tenantId && r.start >= first && r.start < to), HOUR);
      const byHour = new Map<number, Totals>();
      for (const row of [...stored, ...live]) {
        let into = byHour.get(row.start);
        if (!into) byHour.set(row.start, (into = emptyTotals()));
        addTotals(into, row);
      }
      const totals = emptyTotals();
      const buckets = [];
      for (let start = first; start < to; start += HOUR) {
        const t = byHour.get(start) ?? emptyTotals();
        addTotals(totals, t);
        buckets.push({ start: new Date(start).toISOString(), ...statsOf(t) });
      }
      return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), buckets, totals: statsOf(totals) };
    },
    async recent(windowMs) {
      const to = now() + MINUTE;
      const from = Math.floor((now() - windowMs) / MINUTE) * MINUTE;
      const rows = [...(await repo.findStats(deps.db, 'minute', undefined, from, to)), ...unflushed().filter((r) => r.start >= from)];
      const out = new Map<string, Totals>();
      for (const row of rows) {
        let into = out.get(row.tenantId);
        if (!into) out.set(row.tenantId, (into = emptyTotals()));
        addTotals(into, row);
      }
      return out;
    },
  };
}
