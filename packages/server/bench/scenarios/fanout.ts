import { HttpClient } from '../lib/http.js';
import { startWorker, withWorkers, type Worker } from '../lib/ipc.js';
import { sleep } from '../../src/lib/child-server.js';
import { round, summarize, wallNow, type Summary } from '../lib/stats.js';
import { metric, type BenchContext, type Metric, type Scenario } from '../lib/types.js';
import { latencyMetrics, split } from './common.js';
import { newContact } from '../lib/data.js';

/**
 * The devices' Socket.IO client: `wire` (default) speaks Socket.IO's protocol on the plain ws
 * client the limits' devices use (load/sockets.ts says why); BENCH_SOCKET_CLIENT=socketio runs
 * socket.io-client itself.
 */
export const SOCKET_CLIENT = process.env.BENCH_SOCKET_CLIENT === 'socketio' ? 'socketio' : 'wire';

/** Socket workers connect this many sockets at a time. */
const CONNECT_WAVE = 50;

export interface FanoutRun {
  latency: Summary;
  /** Deliveries that never arrived (receivers x changes - arrivals). */
  lost: number;
  /** The slowest receiver of each change, p95 over changes. */
  lastArrivalP95: number;
}

/** Turns arrival times into latencies against the send times; `receivers` of each change expected. */
function latencies(sent: Map<string, number>, arrivals: Record<string, number[]>[], receivers: number): FanoutRun {
  const all: number[] = [];
  const last: number[] = [];
  let arrived = 0;
  for (const [marker, t0] of sent) {
    let slowest = 0;
    for (const worker of arrivals) {
      for (const t of worker[marker] ?? []) {
        all.push(t - t0);
        slowest = Math.max(slowest, t - t0);
        arrived++;
      }
    }
    last.push(slowest);
  }
  return { latency: summarize(all), lost: receivers * sent.size - arrived, lastArrivalP95: summarize(last).p95 };
}

/**
 * Sends `changes` one-change writes spaced by `spacingMs` while every receiver of `workers`
 * is armed, and measures send-to-arrival. `send(marker)` writes one change whose first record
 * has firstName = marker.
 */
export async function measureFanout(workers: Worker[], receivers: number, changes: number, spacingMs: number, send: (marker: string) => Promise<void>): Promise<FanoutRun> {
  await Promise.all(workers.map((w) => w.call('arm')));
  const sent = new Map<string, number>();
  for (let i = 0; i < changes; i++) {
    const marker = `fanout-${i}-${Date.now()}`;
    const t0 = wallNow();
    await send(marker);
    sent.set(marker, t0);
    await sleep(spacingMs);
  }
  await sleep(Math.max(500, spacingMs));
  const arrivals = await Promise.all(workers.map((w) => w.call<Record<string, number[]>>('collect')));
  return latencies(sent, arrivals, receivers);
}

/** A writer device of tenant A: pushes one new contact per call (`POST /api/sync`) to the server at `url`. */
export function writerOf(ctx: BenchContext, deviceId: string, url = ctx.server.url) {
  const agent = ctx.a.agents[0];
  const client = new HttpClient(url, { 'x-api-key': agent.apiKey, 'x-device-id': deviceId });
  return {
    client,
    async send(marker: string) {
      const n = ctx.nextPhone();
      const body = {
        deviceId,
        changes: [{ changeId: `${deviceId}-${n}`, localId: `w${n}`, entityType: 'contacts', operation: 'create', timestamp: Date.now(), data: { ...newContact(n), firstName: marker } }],
      };
      const answer = await client.json<{ data: { acknowledged: { success: boolean }[] } }>('POST', '/api/sync', body);
      if (!answer.data.acknowledged[0]?.success) throw new Error(`fan-out write refused: ${JSON.stringify(answer).slice(0, 300)}`);
    },
  };
}

/** The `changes` event as the devices received it, with the marker swapped: what the bare ws server broadcasts. */
export function replayPayload(sample: unknown): (marker: string) => string {
  const event = structuredClone(sample) as { changes: { data: { firstName: string } }[] };
  if (!event?.changes?.[0]?.data) throw new Error('no changes event was received to replay');
  return (marker) => {
    event.changes[0].data.firstName = marker;
    return JSON.stringify(event);
  };
}

/** A bare ws server process (the physical limit) for the duration of `fn`. */
export async function withWsServer<T>(fn: (server: { worker: Worker; url: string; wsUrl: string }) => Promise<T>): Promise<T> {
  const worker = await startWorker('ws-server.ts', 'ws-server.ts', ['--expose-gc']);
  try {
    const { url, wsUrl } = await worker.call<{ url: string; wsUrl: string }>('start');
    return await fn({ worker, url, wsUrl });
  } finally {
    await worker.call('stop', undefined, 20_000).catch(() => undefined);
    await worker.stop();
  }
}

/** Connects `devices` as Socket.IO clients (`SOCKET_CLIENT`) of the server at `url`, spread over `workers`; fails unless all connect. */
export async function connectSocketIo(url: string, workers: Worker[], devices: { apiKey: string; deviceId: string }[]) {
  const results = await Promise.all(
    split(devices, workers.length).map((slice, i) =>
      workers[i].call<{ connected: number; failed: number; firstError?: string; ms: number }>(
        'connect',
        { mode: SOCKET_CLIENT, url, devices: slice, concurrency: CONNECT_WAVE },
        600_000,
      ),
    ),
  );
  const failed = results.reduce((n, r) => n + r.failed, 0);
  if (failed > 0) throw new Error(`${failed} of ${devices.length} sockets failed to connect: ${results.find((r) => r.firstError)?.firstError}`);
  return { ms: Math.max(...results.map((r) => r.ms)) };
}

/** Connects plain ws clients to each room, every room's clients spread over the workers (from `localAddresses` in turn, when given). */
export async function connectWs(workers: Worker[], wsUrl: string, rooms: { room: string; count: number }[], localAddresses?: string[]) {
  for (const { room, count } of rooms) {
    const shares = workers.map((_, i) => Math.floor(count / workers.length) + (i < count % workers.length ? 1 : 0));
    const results = await Promise.all(
      workers.map((w, i) =>
        shares[i] === 0
          ? { failed: 0, firstError: undefined }
          : w.call<{ failed: number; firstError?: string }>('connect', { mode: 'ws', url: `${wsUrl}/?room=${room}`, count: shares[i], localAddresses, concurrency: CONNECT_WAVE }, 600_000),
      ),
    );
    const failed = results.reduce((n, r) => n + r.failed, 0);
    if (failed > 0) throw new Error(`${failed} ws clients failed to connect: ${results.find((r) => r.firstError)?.firstError}`);
  }
}

/** The same fan-out through the bare ws server: the marker-swapped payload, POSTed and broadcast to room `a`. */
export async function measureWsFanout(workers: Worker[], url: string | string[], payload: (marker: string) => string, receivers: number, changes: number, spacingMs: number) {
  // Several servers (each holding some of the clients) are told at once.
  const clients = (Array.isArray(url) ? url : [url]).map((u) => new HttpClient(u));
  try {
    return await measureFanout(workers, receivers, changes, spacingMs, async (marker) => {
      const body = payload(marker);
      const answers = await Promise.all(clients.map((client) => client.request('POST', '/broadcast?room=a', body)));
      if (answers.some((a) => a.status !== 204)) throw new Error(`broadcast: ${answers.map((a) => a.status).join(', ')}`);
    });
  } finally {
    for (const client of clients) client.close();
  }
}

/** Latency metrics of a fan-out beside its ws limit, plus the slowest receiver and losses. */
export function fanoutMetrics(key: string, server: FanoutRun, limit: FanoutRun, target?: number): Metric[] {
  const limitWhat = 'the same payload broadcast by a bare ws server (POST to broadcast)';
  return [
    ...latencyMetrics(`${key}.latency`, 'write-to-device latency', server.latency, limit.latency, limitWhat, target ? { op: '<=', value: target } : undefined),
    metric({ key: `${key}.last`, label: 'slowest device of a change, p95', unit: 'ms', value: round(server.lastArrivalP95), better: 'lower', limit: round(limit.lastArrivalP95), limitWhat }),
    metric({ key: `${key}.lost`, label: 'deliveries lost', unit: 'events', value: server.lost, better: 'lower', limit: limit.lost, limitWhat }),
  ];
}

/** One change reaching `receivers` connected devices of the tenant (SPEC §12), against a bare ws broadcast. */
function fanoutScenario(receivers: number, target: number): Scenario {
  const workerCount = receivers <= 100 ? 1 : 2;
  const spacingMs = receivers <= 100 ? 150 : 400;
  return {
    name: `fanout-${receivers}`,
    title: `one change reaching ${receivers.toLocaleString('en')} connected devices`,
    budgetMs: ({ quick }) => (quick ? 90_000 : 240_000),
    async run(ctx) {
      const changes = ctx.scale.fanoutChanges;
      const devices = Array.from({ length: receivers }, (_, n) => ({ apiKey: ctx.a.agents[n % ctx.a.agents.length].apiKey, deviceId: `fan${receivers}-${n}` }));
      return withWorkers('sockets.ts', workerCount, async (workers) => {
        const writer = writerOf(ctx, `fanout-writer-${receivers}`);
        const { connect, server } = await ctx.serverPhase(async () => {
          const connect = await connectSocketIo(ctx.server.url, workers, devices);
          // One unmeasured change: warms the path and gives the payload the ws limit replays.
          await writer.send('warm-up');
          await sleep(500);
          return { connect, server: await measureFanout(workers, receivers, changes, spacingMs, writer.send) };
        });
        writer.client.close();
        const payload = replayPayload(await workers[0].call('sample'));
        await Promise.all(workers.map((w) => w.call('close')));
        const limit = await withWsServer(async (ws) => {
          await connectWs(workers, ws.wsUrl, [{ room: 'a', count: receivers }]);
          const run = await measureWsFanout(workers, ws.url, payload, receivers, changes, spacingMs);
          await Promise.all(workers.map((w) => w.call('close')));
          return run;
        });
        return {
          metrics: fanoutMetrics(`fanout-${receivers}`, server, limit, target),
          details: { receivers, changes, spacingMs, loadProcesses: workerCount, connectMs: Math.round(connect.ms) },
        };
      });
    },
  };
}

export const fanout50 = fanoutScenario(50, 15);
export const fanout1000 = fanoutScenario(1000, 100);
