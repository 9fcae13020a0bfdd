import { withWorkers } from '../lib/ipc.js';
import type { CheckpointMode, LoopResult } from '../lib/loops.js';
import { round } from '../lib/stats.js';
import { metric, type BenchContext, type Metric, type Scenario } from '../lib/types.js';
import { assertClean, devicesOf, latencyMetrics, latestVersion, mergeLoops, REFERENCE_WHAT, referenceLatencyMetrics, SERVER_POOL, split, storeWireCopy, withHttpReference } from './common.js';

const DEVICES = 50;
const WORKERS = 2;

/**
 * 50 devices pulling back to back, spread over two load processes; then the same statement
 * through pg; then the same HTTP load against the reference at `referenceUrl`.
 */
async function measure(ctx: BenchContext, referenceUrl: string, variant: string, label: string, since: number, mode: CheckpointMode, target?: number): Promise<Metric[]> {
  const devices = devicesOf(ctx, `pull-${variant}`, DEVICES);
  const { durationMs, warmupMs } = { durationMs: ctx.scale.loadMs, warmupMs: ctx.scale.warmupMs };
  // The devices' load, the same against the server and the reference.
  const httpLoad = async (url: string) =>
    mergeLoops(
      await withWorkers('http-load.ts', WORKERS, (workers) =>
        Promise.all(
          split(devices, WORKERS).map((slice, i) =>
            workers[i].call<LoopResult>('pullConcurrent', {
              url,
              devices: slice,
              version: since,
              limit: 100,
              durationMs,
              warmupMs,
              mode,
              part: i,
              parts: WORKERS,
            }),
          ),
        ),
      ),
    );
  const server = await ctx.serverPhase(() => httpLoad(ctx.server.url));
  assertClean(`pull ${variant}`, server);
  const limit = mergeLoops([
    await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<LoopResult>('pullConcurrent', {
        databaseUrl: ctx.databaseUrl,
        tenantId: ctx.a.id,
        userId: ctx.a.agents[0].userId,
        since,
        limit: 100,
        mode,
        concurrency: DEVICES,
        poolMax: SERVER_POOL,
        durationMs,
        warmupMs,
      }),
    ),
  ]);
  assertClean(`pull ${variant} limit`, limit);
  const reference = await httpLoad(referenceUrl);
  assertClean(`pull ${variant} reference`, reference);
  const limitWhat = `the stored wire bytes by an index range scan via pg, 50 callers on ${SERVER_POOL} connections`;
  const referenceLabel = `reference: ${REFERENCE_WHAT}, ${label}`;
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
    metric({
      key: `pull-throughput.${variant}.reference.rps`,
      label: `${referenceLabel}: requests/s`,
      unit: 'req/s',
      value: round(reference.ops / (reference.elapsedMs / 1000)),
      better: 'higher',
    }),
    ...referenceLatencyMetrics(`pull-throughput.${variant}.reference.latency`, `${referenceLabel}: latency`, reference.latency),
  ];
}

/**
 * Sustained delta pulls from 50 concurrent devices, three ways: a 100-change delta from one
 * checkpoint shared by all (a team catching up on the same changes: the server's page cache
 * answers after the first); a 100-change delta from a checkpoint no other request used (every
 * pull runs the query); and the "nothing new" poll of a device that is up to date. The target
 * is reported on both deltas. Beside each, the limit (the stored bytes through pg) and the
 * deployment-shape reference (the same bytes served by a bare node:http server, the same load).
 */
export const pullThroughput: Scenario = {
  name: 'pull-throughput',
  title: 'sustained delta pulls, 50 concurrent devices',
  budgetMs: ({ quick }) => (quick ? 90_000 : 300_000),
  async run(ctx) {
    const latest = await latestVersion(ctx);
    await storeWireCopy(ctx);
    // One reference process for the three variants (idle while the server and the limit run).
    const metrics = await withHttpReference(ctx, async (referenceUrl) => [
      ...(await measure(ctx, referenceUrl, 'delta100', '100-change delta, one shared checkpoint', latest - 100, 'same', 3000)),
      ...(await measure(ctx, referenceUrl, 'delta100-distinct', '100-change delta, a checkpoint per pull', latest - 100, 'distinct', 3000)),
      ...(await measure(ctx, referenceUrl, 'empty', 'up-to-date poll (0 changes)', latest, 'same')),
    ]);
    return { metrics, details: { devices: DEVICES, loadProcesses: WORKERS, durationMs: ctx.scale.loadMs } };
  },
};
