import { withWorkers } from '../lib/ipc.js';
import { round } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';

/**
 * CSV import of the data set (it also seeds tenant A: every later scenario runs with these
 * contacts in the tenant). Limit: the same rows and audit rows inserted by `pg` into copies of
 * the tables, 1,000 rows a statement, one transaction.
 */
export const csvImport: Scenario = {
  name: 'csv-import',
  title: 'bulk import of the contacts (CSV)',
  budgetMs: ({ quick }) => (quick ? 90_000 : 300_000),
  async run(ctx) {
    const count = ctx.scale.contacts;
    const server = await ctx.serverPhase(() =>
      withWorkers('http-load.ts', 1, ([w]) =>
        w.call<{ ms: number; bytes: number; answer: Record<string, unknown> }>('importCsv', { url: ctx.server.url, adminKey: ctx.a.adminKey, count }, 600_000),
      ),
    );
    const { rows } = await ctx.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM contacts WHERE tenant_id = $1 AND NOT is_deleted', [ctx.a.id]);
    if (rows[0].n < count) throw new Error(`import left ${rows[0].n} contacts of ${count}: ${JSON.stringify(server.answer).slice(0, 500)}`);
    const limit = await withWorkers('pg-load.ts', 1, ([w]) =>
      w.call<{ ms: number }>('importRows', { databaseUrl: ctx.databaseUrl, tenantId: ctx.b.id, count }, 600_000),
    );
    const limitWhat = 'same rows + audit rows inserted via pg (1,000 a statement, one transaction)';
    return {
      metrics: [
        metric({
          key: 'csv-import.seconds',
          label: `import of ${count.toLocaleString('en')} contacts`,
          unit: 's',
          value: round(server.ms / 1000),
          better: 'lower',
          target: count === 100_000 ? { op: '<=', value: 5 } : undefined,
          limit: round(limit.ms / 1000),
          limitWhat,
        }),
        metric({
          key: 'csv-import.throughput',
          label: 'import throughput',
          unit: 'records/s',
          value: round(count / (server.ms / 1000)),
          better: 'higher',
          limit: round(count / (limit.ms / 1000)),
          limitWhat,
        }),
      ],
      details: { csvBytes: server.bytes, answer: Object.fromEntries(Object.entries(server.answer).filter(([k]) => k !== 'errors')) },
    };
  },
};
