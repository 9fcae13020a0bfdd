import { withWorkers } from '../lib/ipc.js';
import { round } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';
import { devicesOf, REFERENCE_WHAT, storeWireCopy, withHttpReference } from './common.js';

type Rep = { records: number; ms: number; pages: number };

/** The median repetition by duration. */
const median = (reps: Rep[]) => [...reps].sort((x, y) => x.ms - y.ms)[Math.floor(reps.length / 2)];

/**
 * A new device downloading the whole tenant, pages of 5,000 (the maximum) from version 0.
 * Limit: the same pages' wire bytes, stored, read by an index range scan through `pg`.
 * Reference: the same stored bytes served by a bare node:http server, the same load.
 */
export const initialSync: Scenario = {
  name: 'initial-sync',
  title: 'initial sync of the contacts (paged)',
  budgetMs: ({ quick }) => (quick ? 60_000 : 240_000),
  async run(ctx) {
    const [device] = devicesOf(ctx, 'initial-sync', 1);
    const reps = ctx.scale.initialSyncReps;
    // The device's load, the same against the server and the reference.
    const httpLoad = (url: string) => withWorkers('http-load.ts', 1, ([w]) => w.call<Rep[]>('initialSync', { url, device, pageSize: 5000, reps }, 300_000));
    const server = await ctx.serverPhase(() => httpLoad(ctx.server.url));
    await storeWireCopy(ctx);
    const limit = await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<Rep[]>('initialSync', { databaseUrl: ctx.databaseUrl, tenantId: ctx.a.id, userId: ctx.a.agents[0].userId, since: 0, limit: 5000, pageSize: 5000, reps }, 300_000),
    );
    const reference = await withHttpReference(ctx, httpLoad);
    const s = median(server);
    const l = median(limit);
    const r = median(reference);
    if (s.records < ctx.scale.contacts) throw new Error(`initial sync delivered ${s.records} records, expected at least ${ctx.scale.contacts}`);
    if (r.records < ctx.scale.contacts) throw new Error(`the reference's initial sync delivered ${r.records} records, expected at least ${ctx.scale.contacts}`);
    const limitWhat = 'the stored wire bytes by an index range scan via pg, same pages';
    return {
      metrics: [
        metric({
          key: 'initial-sync.throughput',
          label: `records/s (${s.records.toLocaleString('en')} records, ${s.pages} pages)`,
          unit: 'records/s',
          value: round(s.records / (s.ms / 1000)),
          better: 'higher',
          target: { op: '>=', value: 75_000 },
          limit: round(l.records / (l.ms / 1000)),
          limitWhat,
        }),
        metric({ key: 'initial-sync.seconds', label: 'duration', unit: 's', value: round(s.ms / 1000), better: 'lower', limit: round(l.ms / 1000), limitWhat }),
        metric({
          key: 'initial-sync.reference.throughput',
          label: `reference: ${REFERENCE_WHAT}, records/s (${r.records.toLocaleString('en')} records, ${r.pages} pages)`,
          unit: 'records/s',
          value: round(r.records / (r.ms / 1000)),
          better: 'higher',
        }),
      ],
      details: { server, limit, reference },
    };
  },
};
