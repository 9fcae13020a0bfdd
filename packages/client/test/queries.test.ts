import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, MemoryStore, type Contact, type FieldsyncClient, type SyncState } from '../src/index.js';
import { createAgent, device, phone, startTestApp, until, type TestApp } from './helpers.js';

/*
 * Queries (`list` with where / orderBy / limit), live queries (`watch`) and the state an app
 * shows (`client.state`, `syncStateChanged`), offline on the device and live against the real
 * server (in process, PGlite).
 */

/** A client that never reaches a server: everything here runs on the device. */
const offline = (store = new MemoryStore()) => createClient({ url: 'http://127.0.0.1:9', apiKey: 'k'.repeat(40), deviceId: 'offline-1', store, networkEvents: false });

/** Collects a watch's callbacks. */
function recorder<T>() {
  const calls: T[][] = [];
  return { calls, callback: (records: T[]) => calls.push(records) };
}
const tick = () => new Promise((r) => setTimeout(r, 20));

describe('list', () => {
  it('filters by equality, sorts either way with missing values last and ties by id, and limits', async () => {
    const client = await offline();
    const people = [
      { firstName: 'Cy', lastName: 'Lee', company: 'Acme', phonePrimary: phone() },
      { firstName: 'ada', lastName: 'Lee', company: 'Acme', phonePrimary: phone() },
      { firstName: 'Bo', lastName: 'Park', company: 'Beta', phonePrimary: phone() },
      { firstName: 'Di', phonePrimary: phone() },
    ];
    for (const p of people) await client.create('contacts', p);
    const names = (rows: Contact[]) => rows.map((c) => c.firstName);
    expect(names(await client.list('contacts', { where: { lastName: 'Lee' }, orderBy: ['firstName', 'asc'] }))).toEqual(['ada', 'Cy']);
    expect(names(await client.list('contacts', { where: { lastName: 'Lee', company: 'Acme' }, orderBy: ['firstName', 'desc'] }))).toEqual(['Cy', 'ada']);
    expect(names(await client.list('contacts', { orderBy: ['lastName', 'asc'] })).at(-1)).toBe('Di');
    expect(names(await client.list('contacts', { orderBy: ['lastName', 'desc'] })).at(-1)).toBe('Di');
    expect(await client.list('contacts', { orderBy: ['firstName', 'asc'], limit: 2 })).toHaveLength(2);
    expect(await client.list('contacts', { where: { lastName: 'Nobody' } })).toEqual([]);
    expect(names(await client.list('contacts', { where: (c) => c.firstName.toLowerCase().startsWith('b') }))).toEqual(['Bo']);
    expect(await client.list('contacts')).toHaveLength(4);
    // Ties keep a stable order (by id), so a re-run lists the same records the same way.
    const byCompany = await client.list('contacts', { orderBy: ['company', 'asc'] });
    expect(byCompany.slice(0, 2).map((c) => c.id)).toEqual(byCompany.slice(0, 2).map((c) => c.id).sort());
    await client.close();
  });

  it('refuses a malformed query instead of matching nothing', async () => {
    const client = await offline();
    await expect(client.list('contacts', { orderBy: ['firstName', 'up'] as never })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(client.list('contacts', { limit: -1 })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(client.list('contacts', { where: 'Lee' as never })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(() => client.watch('contacts', { limit: 1.5 }, () => {})).toThrow(/limit/);
    await client.close();
  });
});

describe('watch', () => {
  it('calls back with the current result at once, on a local write that changes it, and not for one that does not', async () => {
    const client = await offline();
    const lee = await client.create('contacts', { firstName: 'Ann', lastName: 'Lee', phonePrimary: phone() });
    const { calls, callback } = recorder<Contact>();
    const stop = client.watch('contacts', { where: { lastName: 'Lee' }, orderBy: ['firstName', 'asc'] }, callback);
    expect(calls).toHaveLength(0); // after watch returned, not during
    await tick();
    expect(calls).toEqual([[expect.objectContaining({ id: lee.id, firstName: 'Ann' })]]);

    await client.create('contacts', { firstName: 'Zed', lastName: 'Park', phonePrimary: phone() }); // not in the result
    await client.create('spaces', { name: 'Elsewhere' }); // another collection
    await tick();
    expect(calls).toHaveLength(1);

    await client.update('contacts', lee.id, { notes: 'called' }); // a field of a record in the result
    await tick();
    expect(calls).toHaveLength(2);
    expect(calls[1][0]).toMatchObject({ notes: 'called' });

    const bo = await client.create('contacts', { firstName: 'Bo', lastName: 'Lee', phonePrimary: phone() });
    await tick();
    expect(calls.at(-1)!.map((c) => c.firstName)).toEqual(['Ann', 'Bo']);
    await client.delete('contacts', bo.id);
    await tick();
    expect(calls.at(-1)!.map((c) => c.firstName)).toEqual(['Ann']);
    expect(calls).toHaveLength(4);

    stop();
    await client.update('contacts', lee.id, { notes: 'after stop' });
    await tick();
    expect(calls).toHaveLength(4);
    await client.close();
  });

  it('a limited query is called back only when its window changes', async () => {
    const client = await offline();
    for (const name of ['A', 'B', 'C']) await client.create('contacts', { firstName: name, phonePrimary: phone() });
    const { calls, callback } = recorder<Contact>();
    client.watch('contacts', { orderBy: ['firstName', 'asc'], limit: 2 }, callback);
    await tick();
    await client.create('contacts', { firstName: 'Z', phonePrimary: phone() }); // beyond the window
    await tick();
    expect(calls).toHaveLength(1);
    await client.create('contacts', { firstName: 'AA', phonePrimary: phone() }); // inside it
    await tick();
    expect(calls.map((c) => c.map((r) => r.firstName))).toEqual([['A', 'B'], ['A', 'AA']]);
    await client.close();
  });
});

describe('live queries and state against the server', () => {
  let app: TestApp;
  let keyA: string;
  let keyB: string;
  const clients: FieldsyncClient[] = [];
  const open = async (key: string, id: string, store?: MemoryStore) => {
    const c = await device(app, key, id, { store, networkEvents: false });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    app = await startTestApp('pglite');
    keyA = (await createAgent(app, 'q-a')).apiKey;
    keyB = (await createAgent(app, 'q-b')).apiKey;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await app?.close();
  });

  it('a live change from another device reaches a watching device within a second; a change outside the query does not call back', async () => {
    const watcher = await open(keyA, 'live-watch');
    const writer = await open(keyB, 'live-write');
    await watcher.sync();
    await writer.sync();
    watcher.connect();
    await until(() => watcher.state.online, 5000, 'watcher online');
    const { calls, callback } = recorder<Contact>();
    watcher.watch('contacts', { where: { company: 'Live Co' } }, callback);
    await until(() => calls.length === 1, 2000, 'the first result');
    expect(calls[0]).toEqual([]);

    await writer.create('contacts', { firstName: 'Other', company: 'Elsewhere', phonePrimary: phone() });
    await writer.sync();
    await until(() => watcher.state.checkpoint >= writer.state.checkpoint, 3000, 'the unrelated change applied');
    await tick();
    expect(calls).toHaveLength(1);

    const created = await writer.create('contacts', { firstName: 'Lively', company: 'Live Co', phonePrimary: phone() });
    const started = Date.now();
    await writer.sync();
    await until(() => calls.length === 2, 3000, 'the live callback');
    expect(Date.now() - started).toBeLessThan(1000 + 500); // the push itself included
    expect(calls[1]).toEqual([expect.objectContaining({ id: created.id, firstName: 'Lively', version: expect.any(Number) })]);
    expect(calls[1][0].version).toBeGreaterThan(0);
  });

  it('a pull that brings several changes of the result calls back once', async () => {
    const reader = await open(keyA, 'pull-read');
    const writer = await open(keyB, 'pull-write');
    await reader.sync();
    const { calls, callback } = recorder<Contact>();
    reader.watch('contacts', { where: { company: 'Batch Co' }, orderBy: ['firstName', 'asc'] }, callback);
    await until(() => calls.length === 1, 2000, 'the first result');
    for (const name of ['P1', 'P2', 'P3']) await writer.create('contacts', { firstName: name, company: 'Batch Co', phonePrimary: phone() });
    await writer.sync();
    await reader.sync();
    await tick();
    expect(calls.map((c) => c.map((r) => r.firstName))).toEqual([[], ['P1', 'P2', 'P3']]);
    await reader.sync(); // nothing new: no callback
    await tick();
    expect(calls).toHaveLength(2);
  });

  it('state: online with the socket, changes waiting, syncing while it syncs, last synced kept across a restart', async () => {
    const store = new MemoryStore();
    const client = await open(keyA, 'state-1', store);
    const states: SyncState[] = [];
    client.on('syncStateChanged', (s) => states.push(s));
    expect(client.state).toMatchObject({ online: false, pending: 0, lastSyncedAt: null, checkpoint: 0, syncing: false });
    await client.create('contacts', { firstName: 'Waiting', phonePrimary: phone() });
    expect(client.state.pending).toBe(1);
    const before = Date.now();
    await client.sync();
    expect(states.some((s) => s.syncing && s.status === 'pushing')).toBe(true);
    expect(states.some((s) => s.syncing && s.status === 'pulling')).toBe(true);
    expect(client.state).toMatchObject({ pending: 0, syncing: false, online: false });
    expect(client.state.checkpoint).toBeGreaterThan(0);
    expect(Date.parse(client.state.lastSyncedAt!)).toBeGreaterThanOrEqual(before - 5);
    client.connect();
    await until(() => client.state.online, 5000, 'online');
    expect(states.at(-1)).toMatchObject({ online: true, live: 'connected' });
    const synced = client.state.lastSyncedAt;
    await client.close();

    const again = await open(keyA, 'state-1', store);
    expect(again.state).toMatchObject({ online: false, pending: 0, lastSyncedAt: synced, checkpoint: client.state.checkpoint });
  });

  it('the network coming back ends a retry wait at once', async () => {
    let down = true;
    const client = await device(app, keyA, 'wake-1', {
      networkEvents: false,
      backoff: { baseMs: 60_000, maxMs: 60_000, maxAttempts: 5 },
      fetch: (input, init) => (down ? Promise.reject(new TypeError('fetch failed')) : fetch(input, init)),
    });
    clients.push(client);
    await client.create('contacts', { firstName: 'Patient', phonePrimary: phone() });
    const retries: number[] = [];
    client.on('retry', (r) => retries.push(r.delayMs));
    const sync = client.sync();
    await until(() => retries.length === 1, 2000, 'the first retry');
    expect(retries[0]).toBeGreaterThanOrEqual(30_000);
    down = false;
    const started = Date.now();
    client.setNetworkAvailable(true);
    await sync;
    expect(Date.now() - started).toBeLessThan(3000);
    expect(client.state.pending).toBe(0);
  });
});
