import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closed, freePort, ROOT, sleep } from '../../src/lib/child-server.js';
import { startWorker, withWorkers, type Worker } from '../lib/ipc.js';
import { childrenOf, cpuDuring, stopChild, track } from '../lib/proc.js';
import { connectInspector, profilerOf } from '../lib/inspector.js';
import { summarizeProfile } from '../lib/profile.js';
import { startFieldsync, type RunningServer } from '../lib/server.js';
import { metric, NotAvailable, type Scenario } from '../lib/types.js';
import { round } from '../lib/stats.js';
import { SOCKET_CLIENT, fanoutMetrics, measureFanout, measureWsFanout, connectWs, replayPayload, withWsServer, writerOf } from './fanout.js';

const INSTANCES = 3;
/** Sockets per load process. */
const PER_WORKER = 2500;
/** Client addresses: nginx's sticky hash spreads clients by address. */
const ADDRESSES = 1000;
/**
 * The n-th client address: 127.0.1.1 to 127.0.4.250. A fleet comes from thousands of addresses;
 * with 64 of them, nginx's consistent hash gave one instance 2,190 of 10,000 devices and the
 * other two 3,900 each, and the fullest instance set the pace.
 */
const addressOf = (n: number) => `127.0.${1 + Math.floor((n % ADDRESSES) / 250)}.${1 + (n % 250)}`;
const CONNECT_WAVE = 100;
/**
 * Between two changes: each is measured alone, as SPEC §12's "one change reaching" says, not a
 * stream of them queueing behind each other (10,000 deliveries per change through nginx take
 * this 2-core machine, load generators included, longer than the 400 ms of the smaller fan-outs).
 */
const SPACING_MS = 2000;

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((path) => spawnSync(path, ['-v']).status === 0);

/**
 * deploy/nginx.conf for this run: the three instances' ports, a free listen port, and room
 * for every client twice over (a client connection and its upstream connection each).
 */
function nginxConfig(ports: number[], listen: number, sockets: number): string {
  let conf = readFileSync(join(ROOT, 'deploy/nginx.conf'), 'utf8');
  const upstream = /server 127\.0\.0\.1:300\d[^\n]*\n/g;
  if (conf.match(upstream)?.length !== ports.length) throw new Error(`deploy/nginx.conf does not list ${ports.length} upstream servers`);
  let n = 0;
  conf = conf.replace(upstream, (line) => line.replace(/300\d/, String(ports[n++])));
  return conf
    .replace('listen 80;', `listen 127.0.0.1:${listen};`)
    .replace('worker_processes auto;', `worker_processes auto;\nworker_rlimit_nofile ${4 * sockets + 1024};`)
    .replace(/worker_connections \d+;/, `worker_connections ${2 * sockets + 1024};`);
}

async function startNginx(ports: number[], sockets: number): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  if (!NGINX) throw new NotAvailable('nginx is not installed (apt-get install -y nginx-light)');
  const prefix = mkdtempSync(join(tmpdir(), 'fieldsync-bench-nginx-'));
  mkdirSync(join(prefix, 'logs'));
  const port = await freePort();
  writeFileSync(join(prefix, 'nginx.conf'), nginxConfig(ports, port, sockets));
  const child: ChildProcess = track(
    spawn(NGINX, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', `daemon off; pid ${join(prefix, 'nginx.pid')}; error_log ${join(prefix, 'logs/error.log')} warn;`], { stdio: 'ignore' }),
  );
  const exited = closed(child);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopChild(child, 'SIGQUIT', 10_000);
    await exited;
    rmSync(prefix, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    if (await fetch(`${url}/health`).then((r) => r.ok, () => false)) return { url, pid: child.pid!, stop };
    if (i > 200) {
      const log = readFileSync(join(prefix, 'logs/error.log'), 'utf8');
      await stop();
      throw new Error(`nginx did not come up: ${log}`);
    }
    await sleep(50);
  }
}

/** Three bare ws servers behind nginx (deploy/nginx.conf) for `fn`; stopped afterwards. */
async function withBareServersBehindNginx<T>(
  sockets: number,
  fn: (servers: ({ pid: number; url: string }[] & { nginxWorkers: number[] }), wsUrl: string) => Promise<T>,
): Promise<T> {
  const workers = await Promise.all(Array.from({ length: INSTANCES }, (_, i) => startWorker('ws-server.ts', `ws-server.ts#nginx${i}`)));
  try {
    const started = await Promise.all(workers.map((w) => w.call<{ url: string; wsUrl: string }>('start')));
    const nginx = await startNginx(started.map((s) => Number(new URL(s.url).port)), sockets);
    try {
      const servers = Object.assign(
        workers.map((w, i) => ({ pid: w.pid, url: started[i].url })),
        { nginxWorkers: childrenOf(nginx.pid) },
      );
      return await fn(servers, nginx.url.replace(/^http/, 'ws'));
    } finally {
      await nginx.stop();
    }
  } finally {
    await Promise.all(workers.map(async (w) => {
      await w.call('stop', undefined, 20_000).catch(() => undefined);
      await w.stop();
    }));
  }
}

/** Sockets an instance holds, from its /metrics (`fieldsync_socket_connections`). */
async function socketsOf(server: RunningServer, adminKey: string): Promise<number> {
  const text = await fetch(`${server.url}/metrics`, { headers: { 'x-api-key': adminKey } }).then((r) => r.text());
  return [...text.matchAll(/^fieldsync_socket_connections(?:\{[^}]*\})? (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

/** Connects `devices` through `url` from the workers, each device from one of `ADDRESSES` loopback addresses. */
async function connectSpread(url: string, workers: Worker[], devices: { apiKey: string; deviceId: string; localAddress: string }[]) {
  const per = Math.ceil(devices.length / workers.length);
  const results = await Promise.all(
    workers.map((w, i) =>
      w.call<{ connected: number; failed: number; firstError?: string; ms: number }>(
        'connect',
        { mode: SOCKET_CLIENT, url, devices: devices.slice(i * per, (i + 1) * per), concurrency: CONNECT_WAVE },
        600_000,
      ),
    ),
  );
  const failed = results.reduce((n, r) => n + r.failed, 0);
  if (failed > 0) throw new Error(`${failed} of ${devices.length} sockets failed to connect through nginx: ${results.find((r) => r.firstError)?.firstError}`);
  return { ms: Math.max(...results.map((r) => r.ms)) };
}

/**
 * SPEC §12 / §14: one change reaching 10,000 devices (2,000 with --quick) spread over three
 * instances behind nginx (deploy/nginx.conf, sticky by client address), fanned out between the
 * instances through Redis. The writer pushes through nginx too. Limit: the same payload
 * broadcast by one bare ws server to as many clients.
 */
export const fanoutNginx: Scenario = {
  name: 'fanout-10k-nginx',
  title: 'one change reaching 10,000 devices over 3 instances behind nginx',
  budgetMs: ({ quick }) => (quick ? 180_000 : 600_000),
  async run(ctx) {
    const bypass = process.env.BENCH_NGINX_BYPASS === '1';
    const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
    const total = ctx.scale.connections;
    const instances = await Promise.all(
      Array.from({ length: INSTANCES }, () => startFieldsync({ databaseUrl: ctx.databaseUrl, adminKey: ctx.a.adminKey, env: { REDIS_URL: redisUrl } })),
    ).catch((error) => {
      throw new NotAvailable(`three instances on Redis at ${redisUrl} did not start: ${(error as Error).message.split('\n')[0]}`);
    });
    const nginx = await startNginx(instances.map((s) => Number(new URL(s.url).port)), total).catch(async (error) => {
      await Promise.all(instances.map((s) => s.stop()));
      throw error;
    });
    try {
      const devices = Array.from({ length: total }, (_, n) => ({
        apiKey: ctx.a.agents[n % ctx.a.agents.length].apiKey,
        deviceId: `nginx-${n}`,
        localAddress: addressOf(n),
      }));
      const workerCount = Math.max(1, Math.ceil(total / PER_WORKER));
      return await withWorkers('sockets.ts', workerCount, async (workers) => {
        // BENCH_NGINX_BYPASS=1: the same devices connected straight to the instances (a third each),
        // to tell nginx's share of the latency from the instances' own.
        const connect = bypass
          ? { ms: Math.max(...(await Promise.all(instances.map((instance, k) => connectSpread(instance.url, workers.length >= INSTANCES ? workers.filter((_, w) => w % INSTANCES === k) : [workers[k % workers.length]], devices.filter((_, n) => n % INSTANCES === k))))).map((c) => c.ms)) }
          : await connectSpread(nginx.url, workers, devices);
        await sleep(ctx.scale.settleMs);
        const spread = await Promise.all(instances.map((s) => socketsOf(s, ctx.a.adminKey)));
        const held = spread.reduce((a, b) => a + b, 0);
        if (held < total) throw new Error(`the instances hold ${held} of ${total} sockets (${spread.join(' / ')})`);
        const writer = writerOf(ctx, 'nginx-writer', nginx.url);
        await writer.send('warm-up');
        await sleep(1000);
        // CPU per change by component: on two cores shared by all of them, it is where the time goes.
        const perChange = (cpuMs: Record<string, number>) =>
          Object.fromEntries(Object.entries(cpuMs).map(([name, ms]) => [name, Math.round(ms / ctx.scale.fanoutChanges)]));
        // PostgreSQL: the backends serving this database (the instances' pools, after the warm-up).
        const { rows: backends } = await ctx.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        const groups = { instances: instances.map((s) => s.pid), nginx: childrenOf(nginx.pid), devices: workers.map((w) => w.pid), postgres: backends.map((b) => b.pid) };
        // The same processes over as long with no change: what they spend anyway (pings, timers).
        // BENCH_PROFILE_INSTANCE=1: CPU profiles of the first instance, idle and over the measured changes.
        const profiler = process.env.BENCH_PROFILE_INSTANCE === '1' && instances[0].inspectorUrl ? await profilerOf(await connectInspector(instances[0].inspectorUrl)) : undefined;
        const profiled = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
          if (!profiler) return fn();
          await profiler.start();
          const result = await fn();
          const file = join(ROOT, `packages/server/bench/profiles/fanout-10k-nginx-${name}.cpuprofile`);
          mkdirSync(join(file, '..'), { recursive: true });
          writeFileSync(file, JSON.stringify(await profiler.stop()));
          ctx.log(summarizeProfile(file));
          return result;
        };
        const { cpuMs: idleMs } = await profiled('idle', () => cpuDuring(groups, () => sleep(ctx.scale.fanoutChanges * SPACING_MS)));
        ctx.log(`  CPU ms per change slot, idle: ${JSON.stringify(perChange(idleMs))}`);
        const { result: server, cpuMs } = await profiled('instance', () =>
          cpuDuring(groups, () => measureFanout(workers, total, ctx.scale.fanoutChanges, SPACING_MS, writer.send)),
        );
        ctx.log(`  CPU ms per change: ${JSON.stringify(perChange(cpuMs))}`);
        writer.client.close();
        const payload = replayPayload(await workers[0].call('sample'));
        await Promise.all(workers.map((w) => w.call('close', undefined, 60_000)));

        const limit = await withWsServer(async (ws) => {
          await connectWs(workers, ws.wsUrl, [{ room: 'a', count: total }]);
          await sleep(ctx.scale.settleMs);
          const run = await cpuDuring({ server: [ws.worker.pid], devices: workers.map((w) => w.pid) }, () =>
            measureWsFanout(workers, ws.url, payload, total, ctx.scale.fanoutChanges, SPACING_MS),
          );
          ctx.log(`  limit's CPU ms per change: ${JSON.stringify(perChange(run.cpuMs))}`);
          await Promise.all(workers.map((w) => w.call('close', undefined, 60_000)));
          return run;
        });

        // The deployment's own share: the same broadcast from three bare ws servers (a third of the
        // clients each) behind the same nginx, so the nginx hop is in the reference too.
        const behindNginx = bypass ? undefined : await withBareServersBehindNginx(total, async (servers, wsUrl) => {
          const addresses = Array.from({ length: ADDRESSES }, (_, n) => addressOf(n));
          await connectWs(workers, wsUrl, [{ room: 'a', count: total }], addresses);
          await sleep(ctx.scale.settleMs);
          const run = await cpuDuring({ servers: servers.map((w) => w.pid), nginx: servers.nginxWorkers, devices: workers.map((w) => w.pid) }, () =>
            measureWsFanout(workers, servers.map((w) => w.url), payload, total, ctx.scale.fanoutChanges, SPACING_MS),
          );
          ctx.log(`  bare ws servers behind nginx, CPU ms per change: ${JSON.stringify(perChange(run.cpuMs))}; p50 ${run.result.latency.p50} ms, p95 ${run.result.latency.p95} ms`);
          await Promise.all(workers.map((w) => w.call('close', undefined, 60_000)));
          return run;
        });
        const behindWhat = 'the same payload broadcast by 3 bare ws servers (a third of the clients each) behind the same nginx';
        return {
          metrics: [
            ...fanoutMetrics('fanout-10k-nginx', server, limit.result, 200),
            ...(behindNginx
              ? [
                  metric({ key: 'fanout-10k-nginx.bare-behind-nginx.p50', label: `reference: ${behindWhat}, p50`, unit: 'ms', value: round(behindNginx.result.latency.p50), better: 'lower' }),
                  metric({ key: 'fanout-10k-nginx.bare-behind-nginx.p95', label: `reference: ${behindWhat}, p95`, unit: 'ms', value: round(behindNginx.result.latency.p95), better: 'lower' }),
                ]
              : []),
          ],
          details: {
            idleCpuMsPerChangeSlot: perChange(idleMs),
            behindNginxCpuMsPerChange: behindNginx && perChange(behindNginx.cpuMs), cpuMsPerChange: perChange(cpuMs), limitCpuMsPerChange: perChange(limit.cpuMs), devices: total, client: SOCKET_CLIENT, throughNginx: !bypass, socketsPerInstance: spread, connectMs: connect.ms, changes: ctx.scale.fanoutChanges },
        };
      });
    } finally {
      await nginx.stop();
      await Promise.all(instances.map((s) => s.stop()));
    }
  },
};
