import { withWorkers } from '../lib/ipc.js';
import type { LoopResult } from '../lib/loops.js';
import { round } from '../lib/stats.js';
import { metric, type BenchContext, type Metric, type Scenario } from '../lib/types.js';
import { assertClean, devicesOf, latencyMetrics, latestVersion, mergeLoops, split } from './common.js';

const DEVICES = 50;
const WORKERS = 2;
/** The server's pool size (createPostgresDb): the limit gets no more connections than the server. */
const SERVER_POOL = 10;

/** 50 devices pulling back to back, spread over two load processes; then the same statement through pg. */
async function measure(ctx: BenchContext, variant: string, label: string, since: number, target?: number): Promise<Metric[]> {
  const devices = devicesOf(ctx, `pull-${variant}`, DEVICES);
  const { durationMs, warmupMs } = { durationMs: ctx.scale.loadMs, warmupMs: ctx.scale.warmupMs };
  const server = mergeLoops(
    await ctx.serverPhase(() =>
      withWorkers('http-load.ts', WORKERS, (workers) =>
        Promise.all(
          split(devices, WORKERS).map((slice, i) =>
            workers[i].call<LoopResult>('pullConcurrent', { url: ctx.server.url, devices: slice, version: since, limit: 1000, durationMs, warmupMs }),
          ),
        ),
      ),
    ),
  );
  assertClean(`pull ${variant}`, server);
  const limit = mergeLoops([
    await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<LoopResult>('pullConcurrent', {
        databaseUrl: ctx.databaseUrl,
        tenantId: ctx.a.id,
        userId: ctx.a.agents[0].userId,
        since,
        limit: 1000,
        concurrency: DEVICES,
        poolMax: SERVER_POOL,
        durationMs,
        warmupMs,
      }),
    ),
  ]);
  assertClean(`pull ${variant} limit`, limit);
  const limitWhat = `the pull statement via pg, 50 callers on ${SERVER_POOL} connections`;
  return [
    metric({
      key: `pull-throughput.${variant}.rps`,
      label: `${label}: requests/s`,
      unit: 'req/s',
      value: round(server.ops / (server.elapsedMs / 1000)),
      better: 'higher',
      target: target ? { op: '>=', value: target } : undefined,
      limit: round(limit.ops / (limit.elapsedMs / 1000)),
      limitWhat,
    }),
    ...latencyMetrics(`pull-throughput.${variant}.latency`, `${label}: latency`, server.latency, limit.latency, limitWhat),
  ];
}

/**
 * Sustained delta pulls from 50 concurrent devices: each pulls the same 100-change delta as
 * `pull-delta` (the target), and, as a second figure, the "nothing new" poll of a device that
 * is up to date.
 */
export const pullThroughput: Scenario = {
  name: 'pull-throughput',
  title: 'sustained delta pulls, 50 concurrent devices',
  budgetMs: ({ quick }) => (quick ? 60_000 : 240_000),
  async run(ctx) {
    const latest = await latestVersion(ctx);
    const metrics = [
      ...(await measure(ctx, 'delta100', '100-change delta', latest - 100, 3000)),
      ...(await measure(ctx, 'empty', 'up-to-date poll (0 changes)', latest)),
    ];
    return { metrics, details: { devices: DEVICES, loadProcesses: WORKERS, durationMs: ctx.scale.loadMs } };
  },
};
