import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closed, freePort, ROOT, within } from '../src/lib/child-server.js';
import { killAll, startServer, type ServerProcess } from './helpers/process.js';
import { createScratchDatabase } from './helpers/test-db.js';
import { uniquePhone } from './helpers/test-app.js';

/*
 * Several instances behind nginx (SPEC §14, issue 16): three servers on one PostgreSQL
 * database and Redis, nginx from Debian's packages running deploy/nginx.conf with its ports
 * replaced. Clients come from different loopback addresses, so the sticky hash spreads them.
 */

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => spawnSync(p, ['-v']).status === 0);
const ready = Boolean(process.env.TEST_DATABASE_URL && process.env.TEST_REDIS_URL && NGINX);
const ADMIN_KEY = `fsk_scale_admin_${randomUUID().replace(/-/g, '')}`;
const RATE = 600;

describe.runIf(ready)('three instances behind nginx', () => {
  let scratch: { url: string; drop: () => Promise<void> };
  const instances: ServerProcess[] = [];
  let nginx: ChildProcess;
  let prefix: string;
  let url: string;
  let agentKey: string;
  const sockets: Socket[] = [];

  /** A fetch through nginx from loopback address `from` (127.0.0.x). */
  const call = async (method: string, path: string, opts: { key?: string; body?: unknown; headers?: Record<string, string> } = {}) => {
    const res = await fetch(url + path, {
      method,
      headers: { 'x-api-key': opts.key ?? agentKey, ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
  };

  /**
   * A Socket.IO client through nginx from 127.0.0.`host`: records the contacts it hears of and
   * its checkpoint, which advances only while events chain (`fromVersion` at or below it); a
   * gap (events missed while reconnecting) leaves it where the client must pull from.
   */
  const client = (host: number, deviceId: string) => {
    const heard = new Map<string, number>();
    const names = new Map<string, string>();
    const state = { checkpoint: -1 };
    const socket = io(url, {
      auth: { apiKey: agentKey, deviceId },
      transports: ['websocket'],
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
      localAddress: `127.0.0.${host}`,
    } as Parameters<typeof io>[1]);
    socket.on('changes', (event: { fromVersion: number; toVersion: number; changes: { id: string; data: { firstName?: string } }[] }) => {
      for (const c of event.changes) {
        heard.set(c.id, (heard.get(c.id) ?? 0) + 1);
        if (c.data.firstName) names.set(c.id, c.data.firstName);
      }
      if (state.checkpoint >= 0 && event.fromVersion <= state.checkpoint) state.checkpoint = Math.max(state.checkpoint, event.toVersion);
    });
    const authenticated = new Promise<void>((resolve) => socket.once('authenticated', () => resolve())).then(async () => {
      const answer = await socket.timeout(5000).emitWithAck('sync:pull', { version: 0, limit: 1, collections: ['contacts'] });
      state.checkpoint = Math.max(state.checkpoint, answer.data.latestVersion);
    });
    /** Pulls from the checkpoint over the socket until nothing is left: the protocol's catch-up. */
    const catchUp = async () => {
      for (let version = state.checkpoint; ; ) {
        const answer = await socket.timeout(5000).emitWithAck('sync:pull', { version, limit: 5000, collections: ['contacts'] });
        for (const c of answer.data.changes) if (c.data.firstName) names.set(c.id, c.data.firstName);
        version = answer.data.nextVersion;
        if (!answer.data.hasMore) return;
      }
    };
    sockets.push(socket);
    return { socket, heard, names, catchUp, authenticated };
  };

  beforeAll(async () => {
    scratch = await createScratchDatabase();
    const env = {
      DATABASE_URL: scratch.url,
      REDIS_URL: process.env.TEST_REDIS_URL!,
      FIELDSYNC_BOOTSTRAP_ADMIN_KEY: ADMIN_KEY,
      TRUST_PROXY: '1',
      RATE_LIMIT_PER_MINUTE: String(RATE),
      LOG_LEVEL: 'error',
    };
    // Started together: they race for the migrations and the bootstrap.
    instances.push(...(await Promise.all([1, 2, 3].map(() => startServer(env)))));
    prefix = mkdtempSync(join(tmpdir(), 'fieldsync-nginx-'));
    mkdirSync(join(prefix, 'logs'));
    const port = await freePort();
    let conf = readFileSync(join(ROOT, 'deploy/nginx.conf'), 'utf8');
    const upstream = /server 127\.0\.0\.1:300\d[^\n]*\n/g;
    expect(conf.match(upstream)).toHaveLength(3);
    let n = 0;
    conf = conf.replace(upstream, (line) => line.replace(/300\d/, String(instances[n++].port)));
    conf = conf.replace('listen 80;', `listen 127.0.0.1:${port};`).replace('worker_processes auto;', 'worker_processes 1;');
    writeFileSync(join(prefix, 'nginx.conf'), conf);
    nginx = spawn(NGINX!, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', `daemon off; pid ${join(prefix, 'nginx.pid')}; error_log ${join(prefix, 'logs/error.log')};`], {
      stdio: 'ignore',
    });
    url = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false);
      if (ok) break;
      if (i > 100) throw new Error(`nginx did not come up: ${readFileSync(join(prefix, 'logs/error.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const agent = await call('POST', '/api/agents', { key: ADMIN_KEY, body: { agentCode: 'scale-1', name: 'Scale' } });
    expect(agent.status).toBe(201);
    agentKey = agent.body.data.apiKey;
  }, 120_000);

  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    nginx?.kill('SIGQUIT');
    if (nginx) await within(closed(nginx), 10_000, 'nginx stop').catch(() => nginx.kill('SIGKILL'));
    await killAll();
    await scratch?.drop();
    if (prefix) rmSync(prefix, { recursive: true, force: true });
  });

  it('spreads clients over the instances and delivers a change written anywhere to every socket once', async () => {
    // Which instance each client address lands on.
    const landed = new Set<string>();
    for (let host = 2; host <= 9; host++) {
      const health = await new Promise<string>((resolve, reject) => {
        const req = http.get(`${url}/health`, { localAddress: `127.0.0.${host}` }, (res) => {
          let data = '';
          res.on('data', (c: Buffer) => (data += c));
          res.on('end', () => resolve(JSON.parse(data).instance));
        });
        req.on('error', reject);
      });
      landed.add(health);
    }
    expect(landed.size).toBeGreaterThan(1);

    const clients = [2, 3, 4, 5, 6, 7].map((host) => client(host, `spread-${host}`));
    await Promise.all(clients.map((c) => c.authenticated));
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      // Straight to each instance in turn: the change must reach sockets on the others too.
      const target = instances[i % 3];
      const res = await target.api('POST', '/api/contacts', { key: agentKey, body: { firstName: `Spread ${i}`, phonePrimary: uniquePhone() } });
      expect(res.status).toBe(201);
      ids.push(res.body.data.id);
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !clients.every((c) => ids.every((id) => c.heard.has(id)))) await new Promise((r) => setTimeout(r, 50));
    for (const c of clients) for (const id of ids) expect(c.heard.get(id), `${c.socket.id} ${id}`).toBe(1);
    for (const c of clients) c.socket.disconnect();
  }, 60_000);

  it('answers an Idempotency-Key replay from another instance, and shares one rate limit', async () => {
    const key = randomUUID();
    const body = { deviceId: 'idem-1', changes: [{ changeId: randomUUID(), entityType: 'contacts', operation: 'create', timestamp: Date.now(), data: { firstName: 'Once', phonePrimary: uniquePhone() } }] };
    const headers = { 'idempotency-key': key, 'x-device-id': 'idem-1' };
    const first = await instances[0].api('POST', '/api/sync', { key: agentKey, body, headers });
    const again = await instances[1].api('POST', '/api/sync', { key: agentKey, body, headers });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.body.data.acknowledged).toEqual(first.body.data.acknowledged);

    const limited = await call('POST', '/api/agents', { key: ADMIN_KEY, body: { agentCode: `rate-${randomUUID().slice(0, 6)}`, name: 'Rate' } });
    const rateKey = limited.body.data.apiKey;
    let refused = 0;
    const statuses = new Map<number, number>();
    for (let i = 0; i < RATE + 5; i++) {
      const res = await instances[i % 3].api('GET', '/api/contacts?limit=1', { key: rateKey });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 429) refused++;
    }
    expect([...statuses.keys()].sort(), JSON.stringify([...statuses])).toEqual([200, 429]);
    // The budget is one across the three: only the requests beyond it are refused.
    expect(refused).toBeGreaterThanOrEqual(5);
    expect(refused).toBeLessThanOrEqual(10);
  }, 120_000);

  it('loses nothing acknowledged when an instance is killed mid-load: every client ends with exactly the acknowledged set', async () => {
    const clients = [2, 3, 4, 5, 6, 7].map((host) => client(host, `kill-${host}`));
    await Promise.all(clients.map((c) => c.authenticated));
    const acknowledged = new Set<string>();
    const writer = async () => {
      for (let batch = 0; batch < 30; batch++) {
        const body = {
          deviceId: 'killer-writer',
          changes: Array.from({ length: 5 }, () => ({ changeId: randomUUID(), localId: randomUUID(), entityType: 'contacts', operation: 'create', timestamp: Date.now(), data: { firstName: 'Load', phonePrimary: uniquePhone() } })),
        };
        const idem = randomUUID();
        // Retried with its Idempotency-Key until answered, as the SDK does: an instance may die
        // under it, and its in-flight mark (409 IDEMPOTENCY_IN_FLIGHT, Retry-After) lasts until
        // its lease runs out (5 s).
        const deadline = Date.now() + 30_000;
        for (;;) {
          const res = await call('POST', '/api/sync', { body, headers: { 'idempotency-key': idem, 'x-device-id': 'killer-writer' } }).catch(() => undefined);
          if (res?.status === 200) {
            for (const a of res.body.data.acknowledged) if (a.success) acknowledged.add(a.serverId);
            break;
          }
          if (res && res.status !== 409 && res.status < 500) throw new Error(`push refused: ${res.status} ${JSON.stringify(res.body)}`);
          if (Date.now() > deadline) throw new Error(`push never answered: ${res?.status}`);
          const retryAfter = Number(res?.headers.get('retry-after'));
          await new Promise((r) => setTimeout(r, retryAfter > 0 ? retryAfter * 1000 : 100));
        }
      }
    };
    const writing = writer();
    await new Promise((r) => setTimeout(r, 400));
    const victim = instances[2];
    await victim.stop('SIGKILL');
    await writing;

    // Everyone reconnects (to a live instance) and catches up by the protocol: a pull from 0.
    const server = new Set<string>();
    for (let version = 0; ; ) {
      const page = await call('GET', `/api/sync/delta?version=${version}&collections=contacts&limit=5000`);
      for (const c of page.body.data.changes) if (c.op === 'upsert' && c.data.firstName === 'Load') server.add(c.id);
      version = page.body.data.nextVersion;
      if (!page.body.data.hasMore) break;
    }
    expect([...acknowledged].filter((id) => !server.has(id))).toEqual([]);
    expect(server.size).toBe(acknowledged.size);
    for (const c of clients) {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && !c.socket.connected) await new Promise((r) => setTimeout(r, 50));
      expect(c.socket.connected).toBe(true);
    }
    // Each catches up from its checkpoint and then holds exactly the acknowledged set; nothing came twice live.
    for (const c of clients) {
      await c.catchUp();
      const held = new Set([...c.names].filter(([, name]) => name === 'Load').map(([id]) => id));
      expect([...acknowledged].filter((id) => !held.has(id))).toEqual([]);
      expect(held.size).toBe(acknowledged.size);
      for (const [id, times] of c.heard) if (server.has(id)) expect(times).toBe(1);
    }
  }, 120_000);
});
