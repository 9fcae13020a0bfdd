import type { Known } from '../lib/data.js';
import { withWorkers } from '../lib/ipc.js';
import type { LoopResult } from '../lib/loops.js';
import { round, summarize, type Summary } from '../lib/stats.js';
import { metric, type BenchContext, type Metric, type Target, type Tenant } from '../lib/types.js';
import { HttpClient } from '../lib/http.js';
import { CONTACT_WIRE_SQL } from '../../src/modules/contacts/contacts.collection.js';

/** The server's pool size (createPostgresDb): the limits and the reference get no more connections than the server. */
export const SERVER_POOL = 10;

/** What the pull scenarios' reference is (`withHttpReference`). */
export const REFERENCE_WHAT = `the same stored bytes served by a bare node:http server over pg (${SERVER_POOL} connections)`;

/** What the push scenarios' reference is (`withPushReference`). */
export const PUSH_REFERENCE_WHAT = `the limit's writes behind a bare node:http server over pg (${SERVER_POOL} connections)`;

/** `count` devices of tenant A: agents round robin, ids `<prefix>-<n>`. */
export function devicesOf(ctx: BenchContext, prefix: string, count: number, first = 0) {
  return Array.from({ length: count }, (_, n) => {
    const agent = ctx.a.agents[(first + n) % ctx.a.agents.length];
    return { apiKey: agent.apiKey, deviceId: `${prefix}-${first + n}`, index: first + n };
  });
}

/** Splits `items` into `parts` nearly equal slices. */
export function split<T>(items: T[], parts: number): T[][] {
  const out: T[][] = Array.from({ length: parts }, () => []);
  items.forEach((item, i) => out[i % parts].push(item));
  return out;
}

/** The latest version of tenant A. */
export async function latestVersion(ctx: BenchContext): Promise<number> {
  const { rows } = await ctx.pool.query<{ v: number }>('SELECT current_version AS v FROM tenant_versions WHERE tenant_id = $1', [ctx.a.id]);
  return rows[0].v;
}

/** `count` live contacts of tenant A from `offset` (in id order, stable while versions move): what devices edit. */
export async function knownContacts(ctx: BenchContext, offset: number, count: number): Promise<Known[]> {
  const { rows } = await ctx.pool.query<Known>(
    'SELECT id, version FROM contacts WHERE tenant_id = $1 AND NOT is_deleted ORDER BY id OFFSET $2 LIMIT $3',
    [ctx.a.id, offset, count],
  );
  return rows;
}

/** p50/p95/p99 of a latency series beside the limit's, the target (if any) on p95. */
export function latencyMetrics(key: string, label: string, server: Summary, limit?: Summary, limitWhat?: string, p95Target?: Target): Metric[] {
  return (['p50', 'p95', 'p99'] as const).map((p) =>
    metric({
      key: `${key}.${p}`,
      label: `${label} ${p}`,
      unit: 'ms',
      value: round(server[p]),
      better: 'lower',
      target: p === 'p95' ? p95Target : undefined,
      limit: limit ? round(limit[p]) : undefined,
      limitWhat: limit ? limitWhat : undefined,
    }),
  );
}

/** p50/p95 of a reference's latency series: reported beside the server's, with no target and no limit. */
export function referenceLatencyMetrics(key: string, label: string, reference: Summary): Metric[] {
  return (['p50', 'p95'] as const).map((p) => metric({ key: `${key}.${p}`, label: `${label} ${p}`, unit: 'ms', value: round(reference[p]), better: 'lower' }));
}

/** Merges the closed-loop results of several workers into one. */
export function mergeLoops(results: LoopResult[]): { ops: number; units: number; errors: number; firstError?: string; elapsedMs: number; latency: Summary } {
  return {
    ops: results.reduce((n, r) => n + r.ops, 0),
    units: results.reduce((n, r) => n + r.units, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    firstError: results.find((r) => r.firstError)?.firstError,
    // Workers run side by side: the window is the longest of theirs.
    elapsedMs: Math.max(...results.map((r) => r.elapsedMs)),
    latency: summarize(results.flatMap((r) => r.latencies)),
  };
}

/** Fails a scenario whose load saw errors: numbers of a half-failing run mislead. */
export function assertClean(what: string, run: { errors: number; firstError?: string; ops: number }) {
  if (run.errors > 0) throw new Error(`${what}: ${run.errors} errors of ${run.ops + run.errors} (first: ${run.firstError})`);
  if (run.ops === 0) throw new Error(`${what}: nothing completed`);
}

/** A new tenant with `agents` agents, made through the API as the orchestrator makes tenant B. */
export async function createTenant(ctx: BenchContext, slug: string, agents: number): Promise<Tenant> {
  const admin = new HttpClient(ctx.server.url, { 'x-api-key': ctx.a.adminKey });
  try {
    const created = await admin.json<{ data: { tenant: { id: string }; apiKey: string } }>('POST', '/api/tenants', { name: `Bench ${slug}`, slug });
    const tenant: Tenant = { id: created.data.tenant.id, adminKey: created.data.apiKey, agents: [] };
    const own = new HttpClient(ctx.server.url, { 'x-api-key': tenant.adminKey });
    try {
      for (let i = 0; i < agents; i++) {
        const { data } = await own.json<{ data: { agent: { id: string; agentCode: string }; apiKey: string } }>('POST', '/api/agents', {
          agentCode: `${slug}-${i}`,
          name: `Bench agent ${slug}-${i}`,
        });
        tenant.agents.push({ agentCode: data.agent.agentCode, apiKey: data.apiKey, userId: data.agent.id });
      }
    } finally {
      own.close();
    }
    return tenant;
  } finally {
    admin.close();
  }
}

/**
 * The pull limits' data (SPEC §12: a pull's physical limit is reading the stored bytes by an
 * index range scan): tenant A's contacts as change objects in the wire form the pull sends,
 * stored as text in `bench_limit_wire` under (tenant_id, version). Rebuilt from the current rows.
 */
export async function storeWireCopy(ctx: BenchContext): Promise<void> {
  await ctx.pool.query('DROP TABLE IF EXISTS bench_limit_wire');
  await ctx.pool.query('CREATE TABLE bench_limit_wire (tenant_id uuid NOT NULL, version bigint NOT NULL, change text NOT NULL, PRIMARY KEY (tenant_id, version))');
  await ctx.pool.query(
    `INSERT INTO bench_limit_wire (tenant_id, version, change)
     SELECT r.tenant_id, r.version, '{"collection":"contacts","op":"' || CASE WHEN r.is_deleted THEN 'delete' ELSE 'upsert' END
            || '","id":"' || r.id || '","version":' || r.version || ',"data":' || (${CONTACT_WIRE_SQL})::text || '}'
       FROM contacts r WHERE r.tenant_id = $1`,
    [ctx.a.id],
  );
  await ctx.pool.query('VACUUM ANALYZE bench_limit_wire');
}

/**
 * Runs `fn` with the pulls' deployment-shape reference running (load/http-reference.ts, its own
 * process): the stored bytes of `storeWireCopy` read by the limit's statement, served over HTTP
 * by a bare node:http server on a pool of the server's size, for tenant A. `fn` gets its URL,
 * which the HTTP load uses as it uses the server's. Stopped afterwards, whatever happens.
 */
export async function withHttpReference<T>(ctx: BenchContext, fn: (url: string) => Promise<T>): Promise<T> {
  return referenceProcess({ databaseUrl: ctx.databaseUrl, tenantId: ctx.a.id, poolMax: SERVER_POOL }, fn);
}

/**
 * Runs `fn` with the pushes' deployment-shape reference running (load/http-reference.ts, its
 * own process): `POST /api/sync` written by the push limit's transaction (lib/push-writes.ts)
 * from a pool of the server's size, each device's batches into the tenant `tenantOf` gives it.
 * Start it after the server's run and the limit's, as the pulls do, so it disturbs neither.
 */
export async function withPushReference<T>(ctx: BenchContext, tenantOf: Record<string, string>, fn: (url: string) => Promise<T>): Promise<T> {
  return referenceProcess({ databaseUrl: ctx.databaseUrl, pushTenants: tenantOf, poolMax: SERVER_POOL }, fn);
}

async function referenceProcess<T>(start: { databaseUrl: string; tenantId?: string; pushTenants?: Record<string, string>; poolMax: number }, fn: (url: string) => Promise<T>): Promise<T> {
  return withWorkers('http-reference.ts', 1, async ([reference]) => {
    const { url } = await reference.call<{ url: string }>('start', start);
    try {
      return await fn(url);
    } finally {
      await reference.call('stop', undefined, 20_000).catch(() => undefined);
    }
  });
}

/** A pushing device of the HTTP load (load/http-load.ts): its key, id, phone range and the records it edits. */
export interface PushDevice {
  apiKey: string;
  deviceId: string;
  index: number;
  known: Known[];
  phoneBase?: number;
}

/**
 * Records for the push reference's devices to edit: `devices` disjoint slices of up to
 * `perDevice` live contacts of `tenantId` (as many as it holds, at least `minPerDevice` each, so
 * no batch edits a record twice). Used where the limit writes into a tenant other than the
 * server's (tenant B, whose rows are the limit's own): the reference edits rows that exist
 * where the limit writes, as the limit edits its own, and leaves the server's tenant alone.
 */
export async function referenceKnown(ctx: BenchContext, tenantId: string, devices: number, perDevice: number, minPerDevice: number): Promise<Known[][]> {
  const { rows } = await ctx.pool.query<Known>('SELECT id, version FROM contacts WHERE tenant_id = $1 AND NOT is_deleted ORDER BY id LIMIT $2', [
    tenantId,
    devices * perDevice,
  ]);
  const each = Math.min(perDevice, Math.floor(rows.length / devices));
  if (each < minPerDevice) throw new Error(`the push reference needs ${devices * minPerDevice} records of tenant ${tenantId} to edit, it holds ${rows.length}`);
  return Array.from({ length: devices }, (_, d) => rows.slice(d * each, (d + 1) * each));
}

/** `devices` pushing batches back to back from `workers` load processes against `url`, merged. */
async function pushLoad(ctx: BenchContext, url: string, devices: PushDevice[], opts: { workers: number; size: number; creates: number }): Promise<ReturnType<typeof mergeLoops>> {
  const { loadMs: durationMs, warmupMs } = ctx.scale;
  const budget = durationMs + warmupMs + 120_000;
  return mergeLoops(
    await withWorkers('http-load.ts', opts.workers, (workers) =>
      Promise.all(
        split(devices, opts.workers).map((slice, i) =>
          workers[i].call<LoopResult>('pushConcurrent', { url, devices: slice, durationMs, warmupMs, size: opts.size, creates: opts.creates }, budget),
        ),
      ),
    ),
  );
}

/**
 * The same push load as `pushLoadAndLimit`'s (same load processes, windows and batches) against
 * the pushes' deployment-shape reference, its devices' batches written into the tenants
 * `tenantOf` gives; checked clean. Run after the server's run and the limit's.
 */
export async function pushReferenceLoad(ctx: BenchContext, devices: PushDevice[], tenantOf: Record<string, string>, opts: { workers: number; size: number; creates: number }) {
  const reference = await withPushReference(ctx, tenantOf, (url) => pushLoad(ctx, url, devices, opts));
  assertClean('push reference load', reference);
  return reference;
}

/**
 * `devices` pushing batches back to back from `workers` load processes against the server, and
 * the same writes as the physical limit: the same rows and index entries through `pg`, versions
 * from a sequence instead of the tenant lock, as many writers on `poolMax` connections. Answers
 * both loops merged, each checked clean, with the limit's description.
 */
export async function pushLoadAndLimit(
  ctx: BenchContext,
  devices: PushDevice[],
  opts: { workers: number; size: number; creates: number; tenantIds: string[]; poolMax: number; firstWriter: number },
) {
  const { loadMs: durationMs, warmupMs } = ctx.scale;
  const budget = durationMs + warmupMs + 120_000;
  const server = await ctx.serverPhase(() => pushLoad(ctx, ctx.server.url, devices, opts));
  assertClean('push load', server);
  const limit = mergeLoops([
    await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<LoopResult>(
        'pushConcurrent',
        { databaseUrl: ctx.databaseUrl, tenantIds: opts.tenantIds, concurrency: devices.length, poolMax: opts.poolMax, durationMs, warmupMs, size: opts.size, creates: opts.creates, firstWriter: opts.firstWriter },
        budget,
      ),
    ),
  ]);
  assertClean('push limit', limit);
  const limitWhat = `the same rows and index entries via pg, no tenant lock, ${devices.length} writers on ${opts.poolMax} connections`;
  return { server, limit, limitWhat, durationMs };
}
