import type pg from 'pg';
import type { Memory } from './inspector.js';
import type { RunningServer } from './server.js';

/** A target of SPEC §12. */
export interface Target {
  op: '<=' | '>=';
  value: number;
}

/** One reported number. */
export interface Metric {
  /** Stable across runs: compared with the previous run by this key. */
  key: string;
  label: string;
  unit: string;
  value: number;
  /** Which direction is better. */
  better: 'lower' | 'higher';
  target?: Target;
  met?: boolean;
  /** The same measurement without the server, in this run (see `limitWhat`). */
  limit?: number;
  limitWhat?: string;
  /** How many times worse than the physical limit (>= 1 means slower than the limit). */
  ratio?: number;
  /** Relative change against the previous run of the same mode (0.1 = +10%). */
  change?: number;
}

export interface ScenarioResult {
  name: string;
  title: string;
  status: 'ok' | 'not available' | 'failed';
  reason?: string;
  durationMs: number;
  /** 1-minute load average when the scenario ended (the machine is shared). */
  loadAverage: number;
  metrics: Metric[];
  details?: Record<string, unknown>;
}

export interface Agent {
  agentCode: string;
  apiKey: string;
  userId: string;
}

export interface Tenant {
  id: string;
  adminKey: string;
  agents: Agent[];
}

/** Sizes of a run: `--quick` shrinks durations and counts, never the data set's shape. */
export interface Scale {
  contacts: number;
  pullRequests: number;
  initialSyncReps: number;
  loadMs: number;
  warmupMs: number;
  pushBatches: number;
  fanoutChanges: number;
  connections: number;
  connectionsInTenant: number;
  /** How long connections settle before memory is read. */
  settleMs: number;
  /** Call sessions generated for eligible-calls (SPEC §12: 1M; `--call-sessions` sets it). */
  callSessions: number;
  /** Contacts exported in export-throughput (SPEC §12: 10,000). */
  exportContacts: number;
}

export interface BenchContext {
  quick: boolean;
  scale: Scale;
  server: RunningServer;
  databaseUrl: string;
  /** The orchestrator's own connections to the bench database (set-up and inspection only). */
  pool: pg.Pool;
  /** The tenant every scenario works in, with 100k contacts. */
  a: Tenant;
  /** A second tenant: idle connections, and the physical-limit writes. */
  b: Tenant;
  /**
   * Runs the part of a scenario that loads the server (not its physical limit); with
   * `--profile` the server's CPU profile covers exactly these parts.
   */
  serverPhase<T>(fn: () => Promise<T>): Promise<T>;
  /** The server's memory right after a forced full garbage collection. */
  serverMemory(): Promise<Memory>;
  /** Starts another server instance on the same database (stopped by the caller, or at the end of the run). */
  freshServer(): Promise<ExtraServer>;
  /** A fresh phone index for one-off writes. */
  nextPhone(): number;
  log(message: string): void;
}

/** A second server instance: a clean process for memory measurements. */
export interface ExtraServer {
  server: RunningServer;
  /** Its memory after a forced full garbage collection. */
  memory(): Promise<Memory>;
  /** As `BenchContext.serverPhase`, for this instance. */
  phase<T>(fn: () => Promise<T>): Promise<T>;
  stop(): Promise<void>;
}

/** A scenario cannot run yet (its module does not exist): reported as "not available". */
export class NotAvailable extends Error {}

export interface Scenario {
  name: string;
  title: string;
  /** False for a scenario that does not use the imported contacts: run alone, it skips the seeding. */
  needsDataSet?: boolean;
  /** Upper bound of its run time; it is failed when it takes longer. */
  budgetMs(ctx: { quick: boolean }): number;
  run(ctx: BenchContext): Promise<{ metrics: Metric[]; details?: Record<string, unknown> }>;
}

/** A metric with its target verdict and its ratio to the physical limit filled in. */
export function metric(m: Omit<Metric, 'met' | 'ratio' | 'change'>): Metric {
  const out: Metric = { ...m };
  if (m.target) out.met = m.target.op === '<=' ? m.value <= m.target.value : m.value >= m.target.value;
  if (m.limit !== undefined && m.limit > 0 && m.value > 0) out.ratio = m.better === 'lower' ? m.value / m.limit : m.limit / m.value;
  return out;
}
