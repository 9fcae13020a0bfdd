import { withWorkers } from '../lib/ipc.js';
import { openFilesLimitOf } from '../lib/proc.js';
import { sleep } from '../../src/lib/child-server.js';
import { round } from '../lib/stats.js';
import type { Memory } from '../lib/inspector.js';
import { metric, type Scenario } from '../lib/types.js';
import { connectSocketIo, connectWs, fanoutMetrics, measureFanout, measureWsFanout, replayPayload, withWsServer, writerOf } from './fanout.js';

/** JavaScript memory: V8's heap and the buffers it points to outside it. */
const heapOf = (m: Memory) => m.heapUsed + m.external;

/** Sockets per load process. */
const PER_WORKER = 2500;

/**
 * Idle authenticated Socket.IO connections held by one server instance: `connectionsInTenant`
 * devices of tenant A (they receive its changes) and the rest of tenant B (they must not).
 * Reports the server's memory per connection (after a forced garbage collection, through its
 * inspector) and the fan-out of one change of
 * tenant A to its devices while all are held. Limit: a bare ws server holding as many
 * connections, broadcasting to the tenant-A ones. The server and the load processes raise
 * their open-file limit to the hard limit when they start (bench/lib/proc.ts).
 */
export const connections: Scenario = {
  name: 'connections-10k',
  title: 'idle authenticated connections held by one instance',
  budgetMs: ({ quick }) => (quick ? 90_000 : 420_000),
  async run(ctx) {
    const total = ctx.scale.connections;
    const inTenant = ctx.scale.connectionsInTenant;
    const workerCount = Math.max(1, Math.ceil(total / PER_WORKER));
    // Each socket is a file descriptor of the server; it was started with its soft limit raised to the hard one.
    const fdLimit = openFilesLimitOf(ctx.server.pid); // the same as any instance's: all start the same way
    if (fdLimit !== undefined && fdLimit < total + 500) {
      throw new Error(`the server may open only ${fdLimit} files (hard limit of this machine), fewer than ${total} sockets need: raise it (ulimit -Hn, /etc/security/limits.conf)`);
    }
    const devices = Array.from({ length: total }, (_, n) => {
      const tenant = n < inTenant ? ctx.a : ctx.b;
      return { apiKey: tenant.agents[n % tenant.agents.length].apiKey, deviceId: `idle-${n}` };
    });
    // A fresh instance: its memory grows by what the connections cost, not by the garbage of earlier scenarios.
    const fresh = await ctx.freshServer();
    try {
      return await withWorkers('sockets.ts', workerCount, async (workers) => {
        await sleep(ctx.scale.settleMs);
        const before = await fresh.memory();
        // Tenant A's devices first, spread over all workers, then tenant B's.
        const [connectA, connectB] = await fresh.phase(async () => [
          await connectSocketIo(fresh.server.url, workers, devices.slice(0, inTenant)),
          await connectSocketIo(fresh.server.url, workers, devices.slice(inTenant)),
        ]);
        await sleep(ctx.scale.settleMs);
        const after = await fresh.memory();
        const open = (await Promise.all(workers.map((w) => w.call<number>('open')))).reduce((a, b) => a + b, 0);
        if (open !== total) throw new Error(`${open} of ${total} sockets still open after settling`);
        const writer = writerOf(ctx, 'idle-writer', fresh.server.url);
        await writer.send('warm-up');
        await sleep(1000);
        const server = await fresh.phase(() => measureFanout(workers, inTenant, ctx.scale.fanoutChanges, 400, writer.send));
        writer.client.close();
        const payload = replayPayload(await workers[0].call('sample'));
        await Promise.all(workers.map((w) => w.call('close', undefined, 60_000)));

        const limit = await withWsServer(async (ws) => {
          await sleep(500);
          const wsBefore = await ws.worker.call<Memory>('memory');
          await connectWs(workers, ws.wsUrl, [
            { room: 'a', count: inTenant },
            { room: 'b', count: total - inTenant },
          ]);
          await sleep(ctx.scale.settleMs);
          const wsAfter = await ws.worker.call<Memory>('memory');
          const run = await measureWsFanout(workers, ws.url, payload, inTenant, ctx.scale.fanoutChanges, 400);
          await Promise.all(workers.map((w) => w.call('close', undefined, 60_000)));
          return { run, rss: (wsAfter.rss - wsBefore.rss) / total, heap: (heapOf(wsAfter) - heapOf(wsBefore)) / total };
        });

        const rss = (after.rss - before.rss) / total;
        const heap = (heapOf(after) - heapOf(before)) / total;
        const limitWhat = 'a bare ws server holding as many connections';
        return {
          metrics: [
            metric({ key: 'connections.held', label: 'connections held', unit: 'sockets', value: open, better: 'higher', target: total === 10_000 ? { op: '>=', value: 10_000 } : undefined }),
            metric({
              key: 'connections.memory',
              label: 'server memory per connection (RSS after GC)',
              unit: 'KB',
              value: round(rss / 1024),
              better: 'lower',
              target: { op: '<=', value: 50 },
              limit: round(limit.rss / 1024),
              limitWhat,
            }),
            metric({
              key: 'connections.heap',
              label: 'of which JS heap + external after GC',
              unit: 'KB',
              value: round(heap / 1024),
              better: 'lower',
              limit: round(limit.heap / 1024),
              limitWhat,
            }),
            metric({
              key: 'connections.rate',
              label: 'connect + authenticate rate',
              unit: 'sockets/s',
              value: round(total / ((connectA.ms + connectB.ms) / 1000)),
              better: 'higher',
            }),
            ...fanoutMetrics(`connections.fanout${inTenant}`, server, limit.run).map((m) => ({ ...m, label: `fan-out to ${inTenant} of them: ${m.label}` })),
          ],
          details: {
            total,
            inTenant,
            loadProcesses: workerCount,
            serverOpenFilesLimit: fdLimit,
            rssBeforeMB: round(before.rss / 2 ** 20),
            rssAfterMB: round(after.rss / 2 ** 20),
            heapBeforeMB: round(heapOf(before) / 2 ** 20),
            heapAfterMB: round(heapOf(after) / 2 ** 20),
          },
        };
      });
    } finally {
      await fresh.stop();
    }
  },
};
