import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backoffDelay,
  FileStore,
  MemoryStore,
  parseRetryAfter,
  retryAfterDelay,
  type ChangeEvent,
  type ConflictEvent,
  type FieldsyncClient,
  type RetryInfo,
  type SyncState,
} from '../src/node.js';
import { createAgent, device, phone, startTestApp, until, type TestApp } from './helpers.js';

/*
 * The SDK against the real server (in process, PGlite), real HTTP and real sockets: one server
 * for the whole file, since starting one is the slow part.
 */
let app: TestApp;
let keyA: string;
let keyB: string;
let dir: string;
const clients: FieldsyncClient[] = [];

beforeAll(async () => {
  app = await startTestApp('pglite');
  keyA = (await createAgent(app, 'sdk-a')).apiKey;
  keyB = (await createAgent(app, 'sdk-b')).apiKey;
  dir = await mkdtemp(join(tmpdir(), 'fieldsync-sdk-'));
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await app?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('local writes and sync', () => {
  it('shows a write at once and queues it, without touching the server', async () => {
    const client = await device(app, keyA, 'opt-1');
    const changes: ChangeEvent[] = [];
    client.on('change', (e) => changes.push(e));
    const contact = await client.create('contacts', { firstName: 'Ada', phonePrimary: phone() });
    expect(await client.get('contacts', contact.id)).toMatchObject({ firstName: 'Ada', version: 0 });
    expect(client.pendingChanges()).toHaveLength(1);
    expect(changes).toEqual([expect.objectContaining({ op: 'upsert', source: 'local', id: contact.id })]);
    const server = await app.api('GET', `/api/contacts/${contact.id}`);
    expect(server.status).toBe(404);
    await client.close();
  });

  it('pushes the outbox, pulls what others wrote, and converges', async () => {
    const a = await device(app, keyA, 'sync-a');
    const b = await device(app, keyB, 'sync-b');
    const space = await a.create('spaces', { name: 'Leads' });
    const item = await a.create('items', { spaceId: space.id, title: 'Call Ada' });
    const contact = await a.create('contacts', { firstName: 'Bo', phonePrimary: phone() });
    await a.update('contacts', contact.id, { notes: 'first call' });
    const summary = await a.sync();
    expect(summary).toMatchObject({ pushed: 4, rejected: 0 });
    expect(a.pendingChanges()).toEqual([]);
    expect(await a.get('items', item.id)).toMatchObject({ title: 'Call Ada', version: expect.any(Number) });
    expect((await a.get('items', item.id))!.version).toBeGreaterThan(0);

    await b.sync();
    expect(await b.get('contacts', contact.id)).toMatchObject({ firstName: 'Bo', notes: 'first call' });
    // Space-scoped: b is no member of a's space.
    expect(await b.get('items', item.id)).toBeUndefined();

    await b.update('contacts', contact.id, { company: 'Acme' });
    await b.sync();
    await a.sync();
    expect(await a.get('contacts', contact.id)).toEqual(await b.get('contacts', contact.id));
    expect(await a.get('contacts', contact.id)).toMatchObject({ notes: 'first call', company: 'Acme' });
    // Pull again: nothing new.
    expect((await a.sync()).pulled).toBe(0);
    expect(await b.pull()).toBe(0);
    expect(b.state.status).toBe('idle');
    await a.close();
    await b.close();
  });

  it('reports a refused change and removes it from the view', async () => {
    const a = await device(app, keyA, 'reject-a');
    const taken = phone();
    await a.create('contacts', { firstName: 'One', phonePrimary: taken });
    await a.sync();
    const dup = await a.create('contacts', { firstName: 'Two', phonePrimary: taken });
    const rejected: string[] = [];
    a.on('rejected', (e) => rejected.push(e.ack.code ?? ''));
    const summary = await a.sync();
    expect(summary.rejected).toBe(1);
    expect(rejected).toEqual(['DUPLICATE']);
    expect(await a.get('contacts', dup.id)).toBeUndefined();
    expect(a.pendingChanges()).toEqual([]);
    await a.close();
  });

  it('sends an update of a record created offline with the create as its base', async () => {
    const a = await device(app, keyA, 'rebase-a', { batchSize: 1 });
    const c = await a.create('contacts', { firstName: 'Cy', phonePrimary: phone() });
    await a.update('contacts', c.id, { notes: 'n1' });
    const sent: unknown[] = [];
    a.on('acknowledged', (e) => sent.push([e.change.operation, e.change.baseVersion, e.ack.status]));
    await a.sync();
    expect(sent).toEqual([
      ['create', undefined, 'applied'],
      ['update', expect.any(Number), 'applied'],
    ]);
    await a.close();
  });
});

describe('exactly once', () => {
  it('re-sends a push whose answer was lost and applies it once', async () => {
    let drop = 1;
    const pushes: { key: string | null; replayed: string | null }[] = [];
    const lossy = async (url: string, init: RequestInit) => {
      const res = await fetch(url, init);
      if (init.method === 'POST') {
        pushes.push({ key: new Headers(init.headers).get('idempotency-key'), replayed: res.headers.get('idempotent-replayed') });
        if (drop-- > 0) {
          await res.arrayBuffer(); // the server did the work; the device never hears of it
          throw new TypeError('fetch failed: connection reset');
        }
      }
      return res;
    };
    const a = await device(app, keyA, 'lossy-a', { fetch: lossy });
    const c = await a.create('contacts', { firstName: 'Once', phonePrimary: phone() });
    await a.update('contacts', c.id, { notes: 'only once' });
    const summary = await a.sync();
    expect(summary.pushed).toBe(2);
    expect(pushes).toHaveLength(2);
    expect(pushes[1].key).toBe(pushes[0].key);
    expect(pushes[1].replayed).toBe('true');
    const history = await app.api('GET', `/api/contacts/${c.id}/history`);
    expect(history.body.data.map((h: { action: string }) => h.action)).toEqual(['create', 'update']);
    await a.close();
  });
});

describe('persistence', () => {
  it('keeps the outbox and replica of a restarted device (file store)', async () => {
    const path = join(dir, 'restart.jsonl');
    const first = await device(app, keyA, 'restart-a', { store: new FileStore(path) });
    await first.sync();
    const c = await first.create('contacts', { firstName: 'Kept', phonePrimary: phone() });
    await first.update('contacts', c.id, { notes: 'offline edit' });
    const checkpoint = first.state.checkpoint;
    await first.close(); // the app is killed before it could sync

    const again = await device(app, keyA, 'restart-a', { store: new FileStore(path) });
    expect(again.state.checkpoint).toBe(checkpoint);
    expect(again.pendingChanges().map((e) => e.operation)).toEqual(['create', 'update']);
    expect(await again.get('contacts', c.id)).toMatchObject({ notes: 'offline edit' });
    await again.sync();
    const server = await app.api('GET', `/api/contacts/${c.id}`);
    expect(server.body.data).toMatchObject({ firstName: 'Kept', notes: 'offline edit' });
    await again.close();

    const third = await device(app, keyA, 'restart-a', { store: new FileStore(path) });
    expect(third.pendingChanges()).toEqual([]);
    expect(await third.get('contacts', c.id)).toMatchObject({ notes: 'offline edit', version: server.body.data.version });
    await third.close();
  });

  it('refuses a store that belongs to another device', async () => {
    const store = new MemoryStore();
    await (await device(app, keyA, 'owner-1', { store })).close();
    await expect(device(app, keyA, 'owner-2', { store })).rejects.toMatchObject({ code: 'STORE' });
  });
});

describe('initial sync', () => {
  it('reports progress of records so far of the total, page by page', async () => {
    const res = await app.api('POST', '/api/contacts/bulk', {
      body: Array.from({ length: 120 }, (_, i) => ({ firstName: `Bulk ${i}`, phonePrimary: phone() })),
    });
    expect(res.status).toBeLessThan(300);
    const fresh = await device(app, keyB, 'initial-b', { pageSize: 25 });
    const states: SyncState[] = [];
    fresh.on('syncStateChanged', (s) => states.push(s));
    const summary = await fresh.sync();
    const progress = states.flatMap((s) => (s.progress ? [s.progress] : []));
    expect(progress.length).toBeGreaterThanOrEqual(5);
    expect(progress.every((p) => p.phase === 'initial' && p.received <= p.total)).toBe(true);
    expect(progress.map((p) => p.received)).toEqual([...progress.map((p) => p.received)].sort((x, y) => x - y));
    const last = progress[progress.length - 1];
    expect(last).toEqual({ phase: 'initial', received: summary.pulled, total: summary.pulled, done: true });
    expect((await fresh.list('contacts')).length).toBeGreaterThanOrEqual(120);
    await fresh.close();
  });
});

/** A fetch that fails the first requests with `failures` (in order), then passes through. */
function flaky(failures: ('network' | number | { status: number; retryAfter: string })[]) {
  const seen: string[] = [];
  const fn = async (url: string, init: RequestInit): Promise<Response> => {
    seen.push(`${init.method} ${new URL(url).pathname}`);
    const failure = failures.shift();
    if (failure === undefined) return fetch(url, init);
    if (failure === 'network') throw new TypeError('fetch failed');
    const status = typeof failure === 'number' ? failure : failure.status;
    // A proxy in front of the server answers without the envelope.
    if (status === 502) return new Response('<html>Bad Gateway</html>', { status, headers: { 'content-type': 'text/html' } });
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (typeof failure === 'object') headers['retry-after'] = failure.retryAfter;
    const error = status === 429 ? 'RATE_LIMITED' : 'UNAVAILABLE';
    return new Response(JSON.stringify({ success: false, error, message: 'try later' }), { status, headers });
  };
  return { fn, seen };
}

describe('backoff', () => {
  it('grows exponentially with jitter and stays under the cap', () => {
    const opts = { baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(0, opts, () => 0)).toBe(50);
    expect(backoffDelay(0, opts, () => 1)).toBe(100);
    expect(backoffDelay(3, opts, () => 0)).toBe(400);
    expect(backoffDelay(3, opts, () => 1)).toBe(800);
    expect(backoffDelay(20, opts, () => 1)).toBe(1000);
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(2, opts)));
    expect(spread.size).toBeGreaterThan(10);
    expect(retryAfterDelay(2000, opts, () => 0)).toBe(2000);
    expect(retryAfterDelay(2000, opts, () => 1)).toBe(2100);
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000);
  });

  it('retries 5xx answers and network errors with growing delays, then succeeds', async () => {
    const { fn, seen } = flaky([503, 'network', 502]);
    const client = await device(app, keyA, 'flaky-1', { fetch: fn, backoff: { baseMs: 40, maxMs: 1000, maxAttempts: 5 } });
    const retries: RetryInfo[] = [];
    client.on('retry', (r) => retries.push(r));
    await client.create('contacts', { firstName: 'Flaky', phonePrimary: phone() });
    const started = Date.now();
    const summary = await client.sync();
    expect(summary.pushed).toBe(1);
    expect(retries.map((r) => [r.operation, r.attempt, r.code])).toEqual([
      ['push', 1, 'UNAVAILABLE'],
      ['push', 2, 'NETWORK'],
      ['push', 3, 'HTTP_502'],
    ]);
    // Equal jitter: retry n waits between half and all of base * 2^(n-1).
    retries.forEach((r, i) => {
      expect(r.delayMs).toBeGreaterThanOrEqual((40 * 2 ** i) / 2);
      expect(r.delayMs).toBeLessThanOrEqual(40 * 2 ** i);
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(retries.reduce((s, r) => s + r.delayMs, 0));
    expect(seen.filter((s) => s === 'POST /api/sync')).toHaveLength(4);
    await client.close();
  });

  it('waits as long as a 429 Retry-After asks', async () => {
    const { fn } = flaky([{ status: 429, retryAfter: '1' }]);
    const client = await device(app, keyA, 'limited-1', { fetch: fn });
    const retries: RetryInfo[] = [];
    client.on('retry', (r) => retries.push(r));
    const started = Date.now();
    await client.sync();
    expect(retries).toEqual([expect.objectContaining({ operation: 'pull', code: 'RATE_LIMITED', status: 429 })]);
    expect(retries[0].delayMs).toBeGreaterThanOrEqual(1000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    await client.close();
  });

  it('gives up after maxAttempts and keeps the change queued', async () => {
    const { fn } = flaky([503, 503, 503]);
    const client = await device(app, keyA, 'giveup-1', { fetch: fn, backoff: { baseMs: 5, maxMs: 10, maxAttempts: 3 } });
    await client.create('contacts', { firstName: 'Later', phonePrimary: phone() });
    await expect(client.sync()).rejects.toMatchObject({ code: 'UNAVAILABLE', status: 503 });
    expect(client.state).toMatchObject({ status: 'error', pending: 1 });
    expect((await client.sync()).pushed).toBe(1);
    expect(client.state).toMatchObject({ status: 'idle', pending: 0 });
    await client.close();
  });

  it('splits a batch the server finds too large, and refuses a single change that is', async () => {
    const sizes: number[] = [];
    const small = async (url: string, init: RequestInit) => {
      if (init.method === 'POST') {
        const n = JSON.parse(String(init.body)).changes.length;
        sizes.push(n);
        const tooLarge = n > 2 || String(init.body).includes('HUGE');
        if (tooLarge) return new Response(JSON.stringify({ success: false, error: 'PAYLOAD_TOO_LARGE', message: 'too large' }), { status: 413 });
      }
      return fetch(url, init);
    };
    const client = await device(app, keyA, 'split-1', { fetch: small, batchSize: 8 });
    for (let i = 0; i < 5; i++) await client.create('contacts', { firstName: `Split ${i}`, phonePrimary: phone() });
    await client.create('contacts', { firstName: 'HUGE', phonePrimary: phone() });
    const rejected: string[] = [];
    client.on('rejected', (e) => rejected.push(e.ack.code!));
    const summary = await client.sync();
    expect(summary).toMatchObject({ pushed: 5, rejected: 1 });
    expect(rejected).toEqual(['PAYLOAD_TOO_LARGE']);
    expect(sizes.slice(0, 3)).toEqual([6, 3, 2]);
    expect(client.state.pending).toBe(0);
    await client.close();
  });

  it('does not retry an answer that will not change (bad credentials)', async () => {
    const client = await device(app, 'fsk_wrong_key_0123456789abcdefghijklmnop', 'badkey-1');
    const retries: RetryInfo[] = [];
    client.on('retry', (r) => retries.push(r));
    await expect(client.sync()).rejects.toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    expect(retries).toEqual([]);
    await client.close();
  });
});

async function live(key: string, deviceId: string, extra: Parameters<typeof device>[3] = {}) {
  const client = await device(app, key, deviceId, extra);
  clients.push(client);
  // Connecting catches up with a sync of its own, started on `authenticated` by a timer: return
  // after that sync, so a test sees only the requests it causes (on a loaded machine the timer
  // could otherwise fire in the middle of the test).
  let pulling = false;
  let caughtUp = false;
  const off = client.on('syncStateChanged', (s) => {
    if (s.live !== 'connected') return;
    if (s.status === 'pulling') pulling = true;
    else if (pulling && s.status === 'idle') caughtUp = true;
  });
  client.connect();
  await until(() => caughtUp, 5000, `${deviceId} live and caught up`);
  off();
  return client;
}

describe('live mode', () => {
  it("applies another device's change as it happens, without a sync call", async () => {
    const a = await live(keyA, 'live-1');
    const b = await device(app, keyB, 'live-2');
    clients.push(b);
    const seen: ChangeEvent[] = [];
    a.on('change', (e) => seen.push(e));
    const c = await b.create('contacts', { firstName: 'Live', phonePrimary: phone() });
    await b.sync();
    await until(async () => (await a.get('contacts', c.id)) !== undefined, 5000, 'live change');
    expect(seen).toContainEqual(expect.objectContaining({ id: c.id, op: 'upsert', source: 'remote' }));
    expect(await a.get('contacts', c.id)).toEqual(await b.get('contacts', c.id));
    expect(a.state.checkpoint).toBe(b.state.checkpoint);
  });

  it('pushes local changes by itself shortly after they are made', async () => {
    const a = await live(keyA, 'live-3');
    const c = await a.create('contacts', { firstName: 'Auto', phonePrimary: phone() });
    await until(async () => a.state.pending === 0 && (await a.get('contacts', c.id))!.version > 0, 5000, 'auto push');
    expect((await app.api('GET', `/api/contacts/${c.id}`)).body.data.firstName).toBe('Auto');
  });

  it('pulls when an event does not continue from its checkpoint', async () => {
    const gets: string[] = [];
    const counting = async (url: string, init: RequestInit) => {
      if (init.method === 'GET') gets.push(new URL(url).search);
      return fetch(url, init);
    };
    const a = await live(keyA, 'live-4', { fetch: counting });
    const before = a.state.checkpoint;
    gets.length = 0;
    // A write of this same device outside the SDK: the server sends no echo to its socket,
    // so the next event starts beyond the device's checkpoint.
    const direct = await app.api('POST', '/api/contacts', { key: keyA, headers: { 'x-device-id': 'live-4' }, body: { firstName: 'Gap', phonePrimary: phone() } });
    expect(direct.status).toBe(201);
    const b = await device(app, keyB, 'live-5');
    clients.push(b);
    const c = await b.create('contacts', { firstName: 'After gap', phonePrimary: phone() });
    await b.sync();
    await until(async () => (await a.get('contacts', c.id)) !== undefined, 5000, 'event after the gap');
    expect(await a.get('contacts', direct.body.data.id)).toMatchObject({ firstName: 'Gap' });
    expect(gets).toEqual([`?version=${before}&limit=1000`]);
  });

  it('reconnects after the connection drops and catches up on what it missed', async () => {
    const a = await live(keyA, 'live-6');
    const b = await device(app, keyB, 'live-7');
    clients.push(b);
    const states: string[] = [];
    a.on('syncStateChanged', (s) => states.push(s.live));
    a.socket!.io.engine.close(); // the network drops
    await until(() => a.state.live === 'connecting', 2000, 'drop noticed');
    const c = await b.create('contacts', { firstName: 'Missed', phonePrimary: phone() });
    await b.sync();
    await until(async () => (await a.get('contacts', c.id)) !== undefined, 8000, 'catch-up after reconnect');
    expect(states).toContain('connecting');
    expect(a.state.live).toBe('connected');
  });
});

describe('server shutdown', () => {
  it('comes back after the retryAfterMs the server asked for, and catches up', async () => {
    const a = await live(keyA, 'shutdown-1');
    const b = await device(app, keyB, 'shutdown-2');
    clients.push(b);
    const io = app.built.gateway.io;
    const sid = [...io.of('/').sockets.values()].find((s) => s.data.principal?.deviceId === 'shutdown-1')!.id;
    // The reconnection: the first 'connected' after the drop (a state change still connected
    // before the drop lands, a checkpoint say, is not it).
    let connectedAt = 0;
    let dropped = false;
    a.on('syncStateChanged', (s) => {
      if (s.live === 'connecting') dropped = true;
      else if (s.live === 'connected' && dropped && !connectedAt) connectedAt = Date.now();
    });
    // What the gateway does on a graceful shutdown, for this one socket.
    io.to(sid).emit('server_shutdown', { reconnect: true, retryAfterMs: 400 });
    const closedAt = Date.now();
    io.in(sid).disconnectSockets(true);
    await until(() => a.state.live === 'connecting', 2000, 'disconnect noticed');
    const c = await b.create('contacts', { firstName: 'While away', phonePrimary: phone() });
    await b.sync();
    await until(async () => (await a.get('contacts', c.id)) !== undefined, 5000, 'catch-up after the shutdown');
    expect(connectedAt - closedAt).toBeGreaterThanOrEqual(400);
  });
});

describe('token auth', () => {
  it('syncs and goes live with an access token from a function', async () => {
    await createAgent(app, 'token-a', { password: 'correct horse battery staple' });
    let calls = 0;
    const token = async () => {
      calls++;
      const res = await app.api('POST', '/api/auth/login', { key: null, body: { login: 'token-a', password: 'correct horse battery staple' } });
      return res.body.data.accessToken as string;
    };
    const client = await device(app, keyA, 'token-1', { apiKey: undefined, token });
    clients.push(client);
    const c = await client.create('contacts', { firstName: 'Token', phonePrimary: phone() });
    await client.sync();
    expect((await app.api('GET', `/api/contacts/${c.id}`)).body.data.createdByAgent).toBe('token-a');
    client.connect();
    await until(() => client.state.live === 'connected', 5000, 'token socket');
    expect(calls).toBeGreaterThanOrEqual(3);
  });
});

describe('conflicts', () => {
  it('reports a conflict the policy resolved, and converges on the outcome', async () => {
    const a = await device(app, keyA, 'conf-a');
    const b = await device(app, keyB, 'conf-b');
    clients.push(a, b);
    const c = await a.create('contacts', { firstName: 'Con', phonePrimary: phone() });
    await a.sync();
    await b.sync();
    // Both edit the same field offline; b's edit is the later one.
    await a.update('contacts', c.id, { notes: 'from a' });
    await new Promise((r) => setTimeout(r, 5));
    await b.update('contacts', c.id, { notes: 'from b', company: 'B Corp' });
    await b.sync();
    const conflicts: ConflictEvent[] = [];
    a.on('conflict', (e) => conflicts.push(e));
    const summary = await a.sync();
    expect(summary.conflicts).toBe(1);
    expect(conflicts[0].conflict).toMatchObject({ id: c.id, collection: 'contacts', strategy: 'most_recent_wins', outcome: 'server_kept' });
    expect(conflicts[0].change).toMatchObject({ operation: 'update', data: { notes: 'from a' } });
    expect(await a.get('contacts', c.id)).toMatchObject({ notes: 'from b', company: 'B Corp' });
    await b.sync();
    expect(await a.get('contacts', c.id)).toEqual(await b.get('contacts', c.id));
  });

  it("applies the client's fields under client_wins and tells the device", async () => {
    expect((await app.api('PUT', '/api/conflict-policies/items', { body: { strategy: 'client_wins' } })).status).toBe(200);
    const a = await device(app, keyA, 'conf-c');
    clients.push(a);
    const space = await a.create('spaces', { name: 'Conflicts' });
    const item = await a.create('items', { spaceId: space.id, title: 'original' });
    await a.sync();
    await a.update('items', item.id, { title: 'device edit' });
    const rest = await app.api('PATCH', `/api/items/${item.id}`, { key: keyA, body: { title: 'office edit' } });
    expect(rest.status).toBe(200);
    const conflicts: ConflictEvent[] = [];
    a.on('conflict', (e) => conflicts.push(e));
    await a.sync();
    expect(conflicts.map((e) => [e.conflict.strategy, e.conflict.outcome])).toEqual([['client_wins', 'client_applied']]);
    expect(await a.get('items', item.id)).toMatchObject({ title: 'device edit' });
    expect((await app.api('GET', `/api/items/${item.id}`, { key: keyA })).body.data.title).toBe('device edit');
  });
});
