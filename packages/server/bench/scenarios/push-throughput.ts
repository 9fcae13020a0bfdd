import { withWorkers } from '../lib/ipc.js';
import type { LoopResult } from '../lib/loops.js';
import { round } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';
import { assertClean, devicesOf, knownContacts, latencyMetrics, mergeLoops, split } from './common.js';
import { BATCH, CREATES } from './push.js';

const DEVICES = 50;
const WORKERS = 2;
const SERVER_POOL = 10;
/** Records each device edits: disjoint slices, after the 2,000 of `push`. */
const KNOWN_PER_DEVICE = 1000;

/**
 * 50 devices pushing batches of 100 back to back from two load processes. Limit: 50 writers
 * of the same rows and index entries (contacts, audit, receipts, local ids), versions from a
 * sequence instead of the tenant lock, on as many connections as the server's pool.
 */
export const pushThroughput: Scenario = {
  name: 'push-throughput',
  title: 'pushed changes per second, 50 devices, batches of 100',
  budgetMs: ({ quick }) => (quick ? 60_000 : 240_000),
  async run(ctx) {
    const known = await knownContacts(ctx, 2000, DEVICES * KNOWN_PER_DEVICE);
    const devices = devicesOf(ctx, 'push-load', DEVICES, 1).map((d, i) => ({ ...d, known: known.slice(i * KNOWN_PER_DEVICE, (i + 1) * KNOWN_PER_DEVICE) }));
    const { loadMs: durationMs, warmupMs } = ctx.scale;
    const server = mergeLoops(
      await ctx.serverPhase(() =>
        withWorkers('http-load.ts', WORKERS, (workers) =>
          Promise.all(
            split(devices, WORKERS).map((slice, i) =>
              workers[i].call<LoopResult>(
                'pushConcurrent',
                { url: ctx.server.url, devices: slice, durationMs, warmupMs, size: BATCH, creates: CREATES },
                durationMs + warmupMs + 120_000,
              ),
            ),
          ),
        ),
      ),
    );
    assertClean('push load', server);
    const limit = mergeLoops([
      await withWorkers('pg-load.ts', 1, ([w]) =>
        w.call<LoopResult>(
          'pushConcurrent',
          { databaseUrl: ctx.databaseUrl, tenantIds: [ctx.b.id], concurrency: DEVICES, poolMax: SERVER_POOL, durationMs, warmupMs, size: BATCH, creates: CREATES, firstWriter: 10 },
          durationMs + warmupMs + 120_000,
        ),
      ),
    ]);
    assertClean('push limit', limit);
    const limitWhat = `the same rows and index entries via pg, no tenant lock, 50 writers on ${SERVER_POOL} connections`;
    return {
      metrics: [
        metric({
          key: 'push-throughput.changes',
          label: 'pushed changes/s',
          unit: 'changes/s',
          value: round(server.units / (server.elapsedMs / 1000)),
          better: 'higher',
          target: { op: '>=', value: 10_000 },
          limit: round(limit.units / (limit.elapsedMs / 1000)),
          limitWhat,
        }),
        ...latencyMetrics('push-throughput.latency', 'batch latency under load', server.latency, limit.latency, limitWhat),
      ],
      details: { devices: DEVICES, loadProcesses: WORKERS, durationMs, batches: server.ops },
    };
  },
};
