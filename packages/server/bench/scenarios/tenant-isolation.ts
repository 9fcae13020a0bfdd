import { setTimeout as sleep } from 'node:timers/promises';
import { withWorkers } from '../lib/ipc.js';
import type { LoopResult } from '../lib/loops.js';
import { round, summarize } from '../lib/stats.js';
import { metric, type BenchContext, type Scenario } from '../lib/types.js';
import { assertClean, devicesOf, knownContacts, latencyMetrics } from './common.js';

const PUSHERS = 16;
const BATCH = 1000;
/** Tenant B's contacts: enough that every pull of the scenario starts from a checkpoint of its own. */
const B_CONTACTS = 20_000;
/** The records the pushers edit: after the 52,000 of `push` and `push-throughput`. */
const KNOWN_FROM = 52_000;
/** How long the burst runs before the pulls start, and after they end. */
const SETTLE_MS = 1500;

/**
 * Tenant B's device pulling one change at a time (a checkpoint per pull, so every pull runs
 * the statement), once on a quiet server and once while 16 devices of tenant A push batches of
 * 1,000 edits back to back. Limit: the same pulls with no burst. Beside them, sampled from
 * pg_stat_activity every 50 ms: the most server connections waiting on a lock and the most
 * held (busy or inside a transaction) at once.
 */
export const tenantIsolation: Scenario = {
  name: 'tenant-isolation',
  title: "another tenant's one-row pull during a burst of 16 concurrent 1,000-change pushes",
  budgetMs: ({ quick }) => (quick ? 150_000 : 300_000),
  async run(ctx) {
    await withWorkers('http-load.ts', 1, ([w]) =>
      w.call('importCsv', { url: ctx.server.url, adminKey: ctx.b.adminKey, count: B_CONTACTS }, 300_000),
    );
    const { rows } = await ctx.pool.query<{ v: number }>('SELECT current_version AS v FROM tenant_versions WHERE tenant_id = $1', [ctx.b.id]);
    const since = rows[0].v - 1;
    const reader = { apiKey: ctx.b.agents[0].apiKey, deviceId: 'isolation-b', index: 0 };
    const windowMs = Math.max(ctx.scale.loadMs, 5000);
    const { warmupMs } = ctx.scale;
    // Two load parts walk back from `since` interleaved, so no pull meets the page cache.
    const pulls = (part: number) => ({
      url: ctx.server.url,
      devices: [reader],
      version: since,
      limit: 1,
      durationMs: windowMs,
      warmupMs,
      mode: 'distinct',
      part,
      parts: 2,
    });

    const quiet = await withWorkers('http-load.ts', 1, ([w]) =>
      sampled(ctx, () => w.call<LoopResult>('pullConcurrent', pulls(0), windowMs + warmupMs + 60_000)),
    );
    assertClean('pulls without the burst', quiet.result);

    const known = await knownContacts(ctx, KNOWN_FROM, PUSHERS * BATCH);
    if (known.length < PUSHERS * BATCH) throw new Error(`tenant A has ${known.length} contacts to edit after ${KNOWN_FROM}, not ${PUSHERS * BATCH}`);
    const pushers = devicesOf(ctx, 'isolation-a', PUSHERS).map((d, i) => ({ ...d, known: known.slice(i * BATCH, (i + 1) * BATCH) }));
    const burstMs = SETTLE_MS + warmupMs + windowMs + SETTLE_MS;
    const { pushes, during } = await ctx.serverPhase(() =>
      withWorkers('http-load.ts', 2, async ([pushLoad, pullLoad]) => {
        const pushing = pushLoad.call<LoopResult>(
          'pushConcurrent',
          { url: ctx.server.url, devices: pushers, durationMs: burstMs, warmupMs: 0, size: BATCH, creates: 0 },
          burstMs + 180_000,
        );
        await sleep(SETTLE_MS);
        const pulling = sampled(ctx, () => pullLoad.call<LoopResult>('pullConcurrent', pulls(1), windowMs + warmupMs + 180_000));
        const [pushed, pulled] = await Promise.all([pushing, pulling]);
        return { pushes: pushed, during: pulled };
      }),
    );
    assertClean('burst pushes', pushes);
    assertClean('pulls during the burst', during.result);

    const limitWhat = 'the same pull with no burst';
    const duringLatency = summarize(during.result.latencies);
    const quietLatency = summarize(quiet.result.latencies);
    return {
      metrics: [
        ...latencyMetrics('tenant-isolation.pull', "tenant B's pull during A's burst", duringLatency, quietLatency, limitWhat),
        metric({
          key: 'tenant-isolation.lock-waiters',
          label: 'server connections waiting on a lock (most at once)',
          unit: 'connections',
          value: during.lockWaiters,
          better: 'lower',
        }),
        metric({
          key: 'tenant-isolation.connections',
          label: 'server connections held (most at once)',
          unit: 'connections',
          value: during.held,
          better: 'lower',
        }),
        metric({
          key: 'tenant-isolation.push-throughput',
          label: "tenant A's pushed changes/s during the burst",
          unit: 'changes/s',
          value: round(pushes.units / (pushes.elapsedMs / 1000)),
          better: 'higher',
        }),
        ...latencyMetrics('tenant-isolation.push', "tenant A's 1,000-change push", summarize(pushes.latencies)),
      ],
      details: {
        pushers: PUSHERS,
        batchSize: BATCH,
        windowMs,
        pullsDuring: duringLatency.count,
        pullsQuiet: quietLatency.count,
        pushes: pushes.ops,
        quietLockWaiters: quiet.lockWaiters,
        quietHeld: quiet.held,
      },
    };
  },
};

/**
 * Runs `fn` while sampling pg_stat_activity of the bench database every 50 ms: the most
 * connections waiting on a lock, and the most held by a statement or an open transaction.
 */
async function sampled<T>(ctx: BenchContext, fn: () => Promise<T>): Promise<{ result: T; lockWaiters: number; held: number }> {
  let done = false;
  let lockWaiters = 0;
  let held = 0;
  const sampler = (async () => {
    while (!done) {
      const { rows } = await ctx.pool.query<{ waiting: number; held: number }>(
        `SELECT count(*) FILTER (WHERE wait_event_type = 'Lock')::int AS waiting,
                count(*) FILTER (WHERE state <> 'idle')::int AS held
           FROM pg_stat_activity
          WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
      );
      lockWaiters = Math.max(lockWaiters, rows[0].waiting);
      held = Math.max(held, rows[0].held);
      await sleep(50);
    }
  })();
  try {
    return { result: await fn(), lockWaiters, held };
  } finally {
    done = true;
    await sampler;
  }
}
