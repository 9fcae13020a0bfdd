import { randomBytes } from 'node:crypto';
import { startHubspotMock } from '../../test/helpers/hubspot-mock.js';
import { HttpClient } from '../lib/http.js';
import { withWorkers } from '../lib/ipc.js';
import { startFieldsync } from '../lib/server.js';
import { round, wallNow } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The HubSpot export of 10,000 contacts (SPEC §12) to a local HubSpot-like server (the test
 * suite's, in this process): a tenant of its own imports them, an instance running the export
 * worker with the default settings (HUBSPOT_REQUESTS_PER_SECOND 15, batches of 100) is started,
 * and the clock runs from enabling the export (which queues them) until the outbox is empty.
 * Limit: the same 100-input batch upserts POSTed straight to that server, one after the other.
 */
export const exportThroughput: Scenario = {
  name: 'export-throughput',
  title: 'HubSpot export of 10,000 contacts to a local HubSpot-like server',
  needsDataSet: false,
  budgetMs: ({ quick }) => (quick ? 180_000 : 300_000),
  async run(ctx) {
    const count = ctx.scale.exportContacts;
    const token = `pat-bench-${randomBytes(16).toString('hex')}`;
    const mock = await startHubspotMock({ token });
    const admin = new HttpClient(ctx.server.url, { 'x-api-key': ctx.a.adminKey });
    const exporter = await startFieldsync({ databaseUrl: ctx.databaseUrl, adminKey: ctx.a.adminKey, env: { HUBSPOT_WORKER: 'true', HUBSPOT_BASE_URL: mock.url } });
    try {
      const created = await admin.json<{ data: { tenant: { id: string }; apiKey: string } }>('POST', '/api/tenants', {
        name: 'Bench export',
        slug: `bench-export-${randomBytes(4).toString('hex')}`,
      });
      const tenantId = created.data.tenant.id;
      const key = created.data.apiKey;
      await withWorkers('http-load.ts', 1, ([w]) => w.call('importCsv', { url: ctx.server.url, adminKey: key, count }, 300_000));

      const owner = new HttpClient(exporter.url, { 'x-api-key': key });
      const pending = async () =>
        (await ctx.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM hubspot_outbox WHERE tenant_id = $1 AND status = 'pending'", [tenantId])).rows[0].n;
      const t0 = wallNow();
      await ctx.serverPhase(async () => {
        await owner.json('PUT', '/api/integrations/hubspot', { accessToken: token, enabled: true });
        const deadline = Date.now() + 240_000;
        while ((await pending()) > 0) {
          if (Date.now() > deadline) throw new Error(`export: ${await pending()} entries still pending`);
          await sleep(20);
        }
      });
      const ms = wallNow() - t0;
      const status = (await owner.json<{ data: Record<string, unknown> }>('GET', '/api/integrations/hubspot')).data;
      owner.close();
      const exported = mock.objects.get('contacts')?.size ?? 0;
      if (exported < count) throw new Error(`export: HubSpot holds ${exported} of ${count} contacts (status ${JSON.stringify(status)})`);
      const resent = [...mock.sends.values()].filter((n) => n > 1).length;
      const batches = mock.requests.filter((r) => r.path.includes('/contacts/batch/upsert')).length;

      // The limit: the same batches straight to the HubSpot-like server.
      const direct = new HttpClient(mock.url, { authorization: `Bearer ${token}` });
      const t1 = wallNow();
      for (let b = 0; b < count / 100; b++) {
        const inputs = Array.from({ length: 100 }, (_, i) => ({
          idProperty: 'fieldsync_id',
          id: `limit-${b}-${i}`,
          properties: { firstname: `First${b * 100 + i}`, lastname: 'Limit', phone: '+4915110000000', email: `limit${b * 100 + i}@example.com`, company: 'Limit Ltd' },
        }));
        const answer = await direct.request('POST', '/crm/v3/objects/contacts/batch/upsert', JSON.stringify({ inputs }));
        if (answer.status !== 200) throw new Error(`limit: ${answer.status} ${answer.text.slice(0, 200)}`);
      }
      const limitMs = wallNow() - t1;
      direct.close();
      const limitWhat = 'the same 100-contact batch upserts POSTed straight to the HubSpot-like server';
      return {
        metrics: [
          metric({
            key: 'export-throughput.objects',
            label: `export of ${count.toLocaleString('en')} contacts`,
            unit: 'objects/s',
            value: round(count / (ms / 1000)),
            better: 'higher',
            target: count === 10_000 ? { op: '>=', value: 1000 } : undefined,
            limit: round(count / (limitMs / 1000)),
            limitWhat,
          }),
        ],
        details: { seconds: round(ms / 1000), batches, resent, requestsPerSecondSetting: 15, status },
      };
    } finally {
      admin.close();
      await exporter.stop();
      await mock.close();
    }
  },
};
