import { withWorkers } from '../lib/ipc.js';
import { round, summarize } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';
import { devicesOf, knownContacts, latencyMetrics } from './common.js';

/** Changes per batch, and how many of them are new contacts (the rest edit known ones). */
export const BATCH = 100;
export const CREATES = 50;

/**
 * One device pushing batches of 100 changes one after the other: 50 new contacts and 50
 * edits (notes, with their baseVersion) of contacts it knows. Limit: the same rows and index
 * entries written through pg (multi-row insert, update, audit rows, receipts, local ids) in one
 * transaction a batch, versions from a sequence (no tenant lock), into tenant B.
 */
export const push: Scenario = {
  name: 'push',
  title: 'batched push of 100 changes, one device',
  budgetMs: ({ quick }) => (quick ? 60_000 : 300_000),
  async run(ctx) {
    const [device] = devicesOf(ctx, 'push', 1, 0);
    const known = await knownContacts(ctx, 0, 2000);
    const batches = ctx.scale.pushBatches;
    const server = await ctx.serverPhase(() =>
      withWorkers('http-load.ts', 1, ([w]) =>
        w.call<{ latencies: number[]; elapsedMs: number; applied: number }>(
          'pushSequential',
          { url: ctx.server.url, device: { ...device, known }, batches, warmup: 10, size: BATCH, creates: CREATES },
          300_000,
        ),
      ),
    );
    if (server.applied !== batches * BATCH) throw new Error(`push applied ${server.applied} of ${batches * BATCH} changes`);
    const limit = await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<{ latencies: number[]; elapsedMs: number }>(
        'pushSequential',
        { databaseUrl: ctx.databaseUrl, tenantId: ctx.b.id, batches, warmup: 10, size: BATCH, creates: CREATES },
        300_000,
      ),
    );
    const limitWhat = 'the same rows and index entries via pg, one transaction a batch, no tenant lock';
    const s = summarize(server.latencies);
    return {
      metrics: [
        ...latencyMetrics('push.latency', 'latency', s, summarize(limit.latencies), limitWhat, { op: '<=', value: 40 }),
        metric({
          key: 'push.throughput',
          label: 'changes/s (one device, sequential)',
          unit: 'changes/s',
          value: round((batches * BATCH) / (server.elapsedMs / 1000)),
          better: 'higher',
          limit: round((batches * BATCH) / (limit.elapsedMs / 1000)),
          limitWhat,
        }),
      ],
      details: { batches, batchSize: BATCH, creates: CREATES, updates: BATCH - CREATES },
    };
  },
};
