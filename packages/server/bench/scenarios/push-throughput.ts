import { REFERENCE_PHONE_BASE } from '../lib/data.js';
import { round } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';
import { devicesOf, knownContacts, latencyMetrics, PUSH_REFERENCE_WHAT, pushLoadAndLimit, pushReferenceLoad, referenceKnown, referenceLatencyMetrics, SERVER_POOL } from './common.js';
import { BATCH, CREATES } from './push.js';

const DEVICES = 50;
const WORKERS = 2;
/** Records each device edits: disjoint slices, after the 2,000 of `push`. */
const KNOWN_PER_DEVICE = 1000;
/** The limit's writers 10-59 (phone ranges of their own); the reference's devices are numbered alike. */
const FIRST_LIMIT_WRITER = 10;

/**
 * 50 devices pushing batches of 100 back to back from two load processes. Limit: 50 writers
 * of the same rows and index entries (contacts, audit, receipts, local ids), versions from a
 * sequence instead of the tenant lock, on as many connections as the server's pool, into
 * tenant B. Reference: the same load against a bare node:http server writing each batch with
 * the limit's transaction into tenant B (phones of its own, edits of rows the limit wrote there).
 */
export const pushThroughput: Scenario = {
  name: 'push-throughput',
  title: 'pushed changes per second, 50 devices, batches of 100',
  budgetMs: ({ quick }) => (quick ? 60_000 : 240_000),
  async run(ctx) {
    const known = await knownContacts(ctx, 2000, DEVICES * KNOWN_PER_DEVICE);
    const devices = devicesOf(ctx, 'push-load', DEVICES, 1).map((d, i) => ({ ...d, known: known.slice(i * KNOWN_PER_DEVICE, (i + 1) * KNOWN_PER_DEVICE) }));
    const { server, limit, limitWhat, durationMs } = await pushLoadAndLimit(ctx, devices, { workers: WORKERS, size: BATCH, creates: CREATES, tenantIds: [ctx.b.id], poolMax: SERVER_POOL, firstWriter: FIRST_LIMIT_WRITER });
    const edits = await referenceKnown(ctx, ctx.b.id, DEVICES, KNOWN_PER_DEVICE, BATCH - CREATES);
    const referenceDevices = devices.map((d, i) => ({ ...d, deviceId: `push-load-ref-${d.index}`, phoneBase: REFERENCE_PHONE_BASE(FIRST_LIMIT_WRITER + i), known: edits[i] }));
    const reference = await pushReferenceLoad(ctx, referenceDevices, Object.fromEntries(referenceDevices.map((d) => [d.deviceId, ctx.b.id])), { workers: WORKERS, size: BATCH, creates: CREATES });
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
        metric({
          key: 'push-throughput.reference.changes',
          label: `reference: ${PUSH_REFERENCE_WHAT}, pushed changes/s`,
          unit: 'changes/s',
          value: round(reference.units / (reference.elapsedMs / 1000)),
          better: 'higher',
        }),
        ...referenceLatencyMetrics('push-throughput.reference.latency', `reference: ${PUSH_REFERENCE_WHAT}, batch latency under load`, reference.latency),
      ],
      details: { devices: DEVICES, loadProcesses: WORKERS, durationMs, batches: server.ops, referenceBatches: reference.ops, referenceEditsPerDevice: edits[0].length },
    };
  },
};
