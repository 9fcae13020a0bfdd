import { REFERENCE_PHONE_BASE } from '../lib/data.js';
import { withWorkers } from '../lib/ipc.js';
import { round, summarize } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';
import { devicesOf, knownContacts, latencyMetrics, PUSH_REFERENCE_WHAT, referenceKnown, referenceLatencyMetrics, withPushReference, type PushDevice } from './common.js';

/** Changes per batch, and how many of them are new contacts (the rest edit known ones). */
export const BATCH = 100;
export const CREATES = 50;

/**
 * One device pushing batches of 100 changes one after the other: 50 new contacts and 50
 * edits (notes, with their baseVersion) of contacts it knows. Limit: the same rows and index
 * entries written through pg (multi-row insert, update, audit rows, receipts, local ids) in one
 * transaction a batch, versions from a sequence (no tenant lock), into tenant B. Reference: the
 * same device's load against a bare node:http server that writes each batch with the limit's
 * transaction into tenant B (new phones of its own, edits of rows the limit wrote there).
 */
export const push: Scenario = {
  name: 'push',
  title: 'batched push of 100 changes, one device',
  budgetMs: ({ quick }) => (quick ? 60_000 : 300_000),
  async run(ctx) {
    const [device] = devicesOf(ctx, 'push', 1, 0);
    const known = await knownContacts(ctx, 0, 2000);
    const batches = ctx.scale.pushBatches;
    // The device's load, the same against the server and the reference.
    const httpLoad = async (url: string, d: PushDevice) => {
      const run = await withWorkers('http-load.ts', 1, ([w]) =>
        w.call<{ latencies: number[]; elapsedMs: number; applied: number }>('pushSequential', { url, device: d, batches, warmup: 10, size: BATCH, creates: CREATES }, 300_000),
      );
      if (run.applied !== batches * BATCH) throw new Error(`push applied ${run.applied} of ${batches * BATCH} changes`);
      return run;
    };
    const server = await ctx.serverPhase(() => httpLoad(ctx.server.url, { ...device, known }));
    const limit = await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<{ latencies: number[]; elapsedMs: number }>(
        'pushSequential',
        { databaseUrl: ctx.databaseUrl, tenantId: ctx.b.id, batches, warmup: 10, size: BATCH, creates: CREATES },
        300_000,
      ),
    );
    // Where the limit wrote (tenant B): new phones of its own, edits of rows the limit wrote there.
    const [referenceEdits] = await referenceKnown(ctx, ctx.b.id, 1, known.length, BATCH - CREATES);
    const referenceDevice = { ...device, deviceId: 'push-ref-0', phoneBase: REFERENCE_PHONE_BASE(0), known: referenceEdits };
    const reference = await withPushReference(ctx, { [referenceDevice.deviceId]: ctx.b.id }, (url) => httpLoad(url, referenceDevice));
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
        ...referenceLatencyMetrics('push.reference.latency', `reference: ${PUSH_REFERENCE_WHAT}, latency`, summarize(reference.latencies)),
        metric({
          key: 'push.reference.throughput',
          label: `reference: ${PUSH_REFERENCE_WHAT}, changes/s (one device, sequential)`,
          unit: 'changes/s',
          value: round((batches * BATCH) / (reference.elapsedMs / 1000)),
          better: 'higher',
        }),
      ],
      details: { batches, batchSize: BATCH, creates: CREATES, updates: BATCH - CREATES },
    };
  },
};
