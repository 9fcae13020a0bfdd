import { withWorkers } from '../lib/ipc.js';
import { round, summarize } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';
import { createTenant, latencyMetrics, PUSH_REFERENCE_WHAT, referenceLatencyMetrics, withPushReference } from './common.js';

const BATCH = 500;
const WARMUP_BATCHES = 4;

/**
 * One device pushing new contacts in batches of 500 through `POST /api/sync`, one batch after
 * the other, into a tenant of its own: 100,000 (20,000 with `--quick`), the comparison of the
 * issue (a stock PouchDB server: 10,560 records/s; the target is twice that). Limit: the same
 * rows and index entries (contact, audit row, receipt, local id) through pg, 500 a transaction,
 * versions from a sequence, into another empty tenant. Reference: the same device's load (the
 * same new contacts) against a bare node:http server writing each batch with the limit's
 * transaction into a third empty tenant.
 */
export const pushNew: Scenario = {
  name: 'push-new-500',
  title: 'one device pushing new contacts in batches of 500',
  budgetMs: ({ quick }) => (quick ? 120_000 : 300_000),
  async run(ctx) {
    const count = ctx.quick ? 20_000 : 100_000;
    const batches = count / BATCH;
    const suffix = Date.now().toString(36);
    const tenant = await createTenant(ctx, `push-new-${suffix}`, 1);
    const limitTenant = await createTenant(ctx, `push-new-limit-${suffix}`, 0);
    const referenceTenant = await createTenant(ctx, `push-new-ref-${suffix}`, 0);
    const device = { apiKey: tenant.agents[0].apiKey, deviceId: 'push-new-0', index: 0 };
    // The device's load, the same against the server and the reference.
    const httpLoad = async (url: string) => {
      const run = await withWorkers('http-load.ts', 1, ([w]) =>
        w.call<{ latencies: number[]; elapsedMs: number; applied: number }>(
          'pushSequential',
          { url, device, batches, warmup: WARMUP_BATCHES, size: BATCH, creates: BATCH },
          600_000,
        ),
      );
      if (run.applied !== count) throw new Error(`push applied ${run.applied} of ${count} changes`);
      return run;
    };
    const server = await ctx.serverPhase(() => httpLoad(ctx.server.url));
    const limit = await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<{ latencies: number[]; elapsedMs: number }>(
        'pushSequential',
        { databaseUrl: ctx.databaseUrl, tenantId: limitTenant.id, batches, warmup: WARMUP_BATCHES, size: BATCH, creates: BATCH, phoneBase: 0 },
        600_000,
      ),
    );
    // The same device and phones as the server's run, in a tenant of the reference's own.
    const reference = await withPushReference(ctx, { [device.deviceId]: referenceTenant.id }, httpLoad);
    const limitWhat = 'the same rows and index entries via pg, 500 a transaction, no tenant lock';
    return {
      metrics: [
        metric({
          key: 'push-new-500.records',
          label: `new contacts pushed/s (${count.toLocaleString('en')} in batches of ${BATCH})`,
          unit: 'records/s',
          value: round(count / (server.elapsedMs / 1000)),
          better: 'higher',
          target: { op: '>=', value: 20_000 },
          limit: round(count / (limit.elapsedMs / 1000)),
          limitWhat,
        }),
        ...latencyMetrics('push-new-500.latency', 'batch latency', summarize(server.latencies), summarize(limit.latencies), limitWhat),
        metric({
          key: 'push-new-500.reference.records',
          label: `reference: ${PUSH_REFERENCE_WHAT}, new contacts pushed/s`,
          unit: 'records/s',
          value: round(count / (reference.elapsedMs / 1000)),
          better: 'higher',
        }),
        ...referenceLatencyMetrics('push-new-500.reference.latency', `reference: ${PUSH_REFERENCE_WHAT}, batch latency`, summarize(reference.latencies)),
      ],
      details: { count, batchSize: BATCH },
    };
  },
};
