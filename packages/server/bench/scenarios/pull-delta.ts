import { withWorkers } from '../lib/ipc.js';
import { round, summarize } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';
import { devicesOf, latencyMetrics, latestVersion, REFERENCE_WHAT, referenceLatencyMetrics, storeWireCopy, withHttpReference } from './common.js';

/**
 * One device pulling a delta of 100 changes while the tenant holds the whole data set, one
 * request after the other, each from a checkpoint no other request used: every pull runs the
 * statement (the page cache shared by devices at one checkpoint never answers; that case is
 * in `pull-throughput`). Limit: the same changes' wire bytes, stored, read by an index range
 * scan and concatenated through `pg`, same checkpoints. Reference: the same stored bytes served
 * by a bare node:http server (the deployment's HTTP hop without the product), the same load.
 */
export const pullDelta: Scenario = {
  name: 'pull-delta',
  title: 'delta pull of 100 changes, one device',
  budgetMs: ({ quick }) => (quick ? 60_000 : 240_000),
  async run(ctx) {
    const latest = await latestVersion(ctx);
    const since = latest - 100;
    const [device] = devicesOf(ctx, 'pull-delta', 1);
    const requests = ctx.scale.pullRequests;
    // The device's load, the same against the server and the reference.
    const httpLoad = (url: string) =>
      withWorkers('http-load.ts', 1, ([w]) =>
        w.call<{ latencies: number[]; elapsedMs: number }>('pullSequential', {
          url,
          device,
          version: since,
          limit: 100,
          requests,
          warmup: 50,
          expect: 100,
          mode: 'distinct',
        }),
      );
    const server = await ctx.serverPhase(() => httpLoad(ctx.server.url));
    await storeWireCopy(ctx);
    const limit = await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<{ latencies: number[]; elapsedMs: number; rows: number }>('pullSequential', {
        databaseUrl: ctx.databaseUrl,
        tenantId: ctx.a.id,
        userId: ctx.a.agents[0].userId,
        since,
        limit: 100,
        requests,
        warmup: 50,
        mode: 'distinct',
      }),
    );
    const reference = await withHttpReference(ctx, httpLoad);
    const limitWhat = 'the stored wire bytes of the same changes by an index range scan, via pg';
    const s = summarize(server.latencies);
    const l = summarize(limit.latencies);
    return {
      metrics: [
        ...latencyMetrics('pull-delta.latency', 'latency', s, l, limitWhat, { op: '<=', value: 5 }),
        metric({
          key: 'pull-delta.throughput',
          label: 'throughput (one device, sequential)',
          unit: 'req/s',
          value: round(requests / (server.elapsedMs / 1000)),
          better: 'higher',
          limit: round(requests / (limit.elapsedMs / 1000)),
          limitWhat,
        }),
        ...referenceLatencyMetrics('pull-delta.reference.latency', `reference: ${REFERENCE_WHAT}, latency`, summarize(reference.latencies)),
        metric({
          key: 'pull-delta.reference.throughput',
          label: `reference: ${REFERENCE_WHAT}, throughput (one device, sequential)`,
          unit: 'req/s',
          value: round(requests / (reference.elapsedMs / 1000)),
          better: 'higher',
        }),
      ],
      details: { since, latest, requests, limitRows: limit.rows },
    };
  },
};
