import { REFERENCE_PHONE_BASE, type Known } from '../lib/data.js';
import { withWorkers } from '../lib/ipc.js';
import { round } from '../lib/stats.js';
import { metric, type Scenario, type Tenant } from '../lib/types.js';
import { createTenant, latencyMetrics, PUSH_REFERENCE_WHAT, pushLoadAndLimit, pushReferenceLoad, referenceLatencyMetrics, SERVER_POOL } from './common.js';
import { BATCH, CREATES } from './push.js';

const TENANTS = 10;
const DEVICES_PER_TENANT = 5;
const WORKERS = 2;
/** Records each device edits: disjoint slices of its tenant's imported contacts. */
const KNOWN_PER_DEVICE = 1000;
/** Limit writers 60-109: phone ranges of their own, after push-throughput's 10-59. */
const FIRST_LIMIT_WRITER = 60;

/**
 * 50 devices over 10 tenants (5 each, each tenant seeded with 5,000 imported contacts) pushing
 * batches of 100 (50 new contacts, 50 edits with their baseVersion) back to back from two load
 * processes: tenants' writes do not wait for each other, so this scales with the machine.
 * Limit: the same rows and index entries through pg, no tenant lock, 50 writers on as many
 * connections as the server's pool. Reference: the same load against a bare node:http server
 * writing each batch with the limit's transaction into the device's tenant (where the limit
 * writes too): phones of its own, edits of the same imported records as the server's devices.
 */
export const pushTenants: Scenario = {
  name: 'push-tenants',
  title: 'pushed changes per second, 50 devices over 10 tenants, batches of 100',
  budgetMs: ({ quick }) => (quick ? 120_000 : 300_000),
  async run(ctx) {
    const suffix = Date.now().toString(36);
    const tenants: Tenant[] = [];
    for (let t = 0; t < TENANTS; t++) tenants.push(await createTenant(ctx, `push-t${t}-${suffix}`, DEVICES_PER_TENANT));
    await withWorkers('http-load.ts', 1, async ([w]) => {
      for (const tenant of tenants) await w.call('importCsv', { url: ctx.server.url, adminKey: tenant.adminKey, count: DEVICES_PER_TENANT * KNOWN_PER_DEVICE }, 300_000);
    });
    const devices: { apiKey: string; deviceId: string; index: number; known: Known[] }[] = [];
    for (const [t, tenant] of tenants.entries()) {
      const { rows: known } = await ctx.pool.query<{ id: string; version: number }>(
        'SELECT id, version FROM contacts WHERE tenant_id = $1 AND NOT is_deleted ORDER BY id LIMIT $2',
        [tenant.id, DEVICES_PER_TENANT * KNOWN_PER_DEVICE],
      );
      for (let d = 0; d < DEVICES_PER_TENANT; d++) {
        devices.push({
          apiKey: tenant.agents[d].apiKey,
          deviceId: `push-tenants-${t}-${d}`,
          index: t * DEVICES_PER_TENANT + d,
          known: known.slice(d * KNOWN_PER_DEVICE, (d + 1) * KNOWN_PER_DEVICE),
        });
      }
    }
    await ctx.pool.query('ANALYZE contacts');
    const { server, limit, limitWhat, durationMs } = await pushLoadAndLimit(ctx, devices, { workers: WORKERS, size: BATCH, creates: CREATES, tenantIds: tenants.map((t) => t.id), poolMax: SERVER_POOL, firstWriter: FIRST_LIMIT_WRITER });
    const referenceDevices = devices.map((d) => ({ ...d, deviceId: d.deviceId.replace('push-tenants-', 'push-tenants-ref-'), phoneBase: REFERENCE_PHONE_BASE(FIRST_LIMIT_WRITER + d.index) }));
    const tenantOf = Object.fromEntries(referenceDevices.map((d) => [d.deviceId, tenants[Math.floor(d.index / DEVICES_PER_TENANT)].id]));
    const reference = await pushReferenceLoad(ctx, referenceDevices, tenantOf, { workers: WORKERS, size: BATCH, creates: CREATES });
    return {
      metrics: [
        metric({
          key: 'push-tenants.changes',
          label: 'pushed changes/s over 10 tenants',
          unit: 'changes/s',
          value: round(server.units / (server.elapsedMs / 1000)),
          better: 'higher',
          target: { op: '>=', value: 15_000 },
          limit: round(limit.units / (limit.elapsedMs / 1000)),
          limitWhat,
        }),
        ...latencyMetrics('push-tenants.latency', 'batch latency under load', server.latency, limit.latency, limitWhat),
        metric({
          key: 'push-tenants.reference.changes',
          label: `reference: ${PUSH_REFERENCE_WHAT}, pushed changes/s over 10 tenants`,
          unit: 'changes/s',
          value: round(reference.units / (reference.elapsedMs / 1000)),
          better: 'higher',
        }),
        ...referenceLatencyMetrics('push-tenants.reference.latency', `reference: ${PUSH_REFERENCE_WHAT}, batch latency under load`, reference.latency),
      ],
      details: { tenants: TENANTS, devices: devices.length, loadProcesses: WORKERS, durationMs, batches: server.ops, referenceBatches: reference.ops },
    };
  },
};
