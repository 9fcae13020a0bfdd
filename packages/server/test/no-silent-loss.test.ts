import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, eventually, refusedWith, type Probe } from './helpers/sockets.js';

type Ack = { localId: string | null; serverId: string | null; success: boolean; status: string; code?: string; error?: string; version?: number };

const ts = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();

/**
 * SPEC §4 "Client ids", "Values the database cannot hold" and "Devices": a device's changes are
 * never silently lost or answered with another record, one bad value never blocks a queue, and
 * a device's checkpoint is what the server has given it.
 */
describe.each(backends)('no silent loss on %s', (backend) => {
  let app: TestApp;
  let alice: { apiKey: string; agent: { id: string } };
  let bob: { apiKey: string; agent: { id: string } };

  beforeAll(async () => {
    app = await startTestApp(backend);
    alice = await createAgent(app, `NSL-A-${backend}`);
    bob = await createAgent(app, `NSL-B-${backend}`);
  });
  afterAll(async () => {
    await app?.close();
  });

  const push = (key: string, body: unknown, headers: Record<string, string> = {}) => app.api('POST', '/api/sync', { key, body, headers });
  const acksOf = (res: { body: any }): Ack[] => res.body.data.acknowledged;
  const latest = async (): Promise<number> => (await app.api('GET', '/api/sync/delta?version=0&limit=1')).body.data.latestVersion;
  const contact = (localId: string, extra: Record<string, unknown> = {}) => ({
    localId,
    entityType: 'contacts',
    operation: 'create',
    timestamp: ts(),
    data: { firstName: `C ${localId}`, phonePrimary: uniquePhone(), ...extra },
  });

  describe('device ids belong to one user', () => {
    it("refuses another user's push, pull and socket with a device id, and writes nothing for them", async () => {
      const deviceId = `shared-${randomUUID()}`;
      const first = await push(alice.apiKey, { deviceId, changes: [contact('x1')] });
      expect(first.status).toBe(200);
      expect(acksOf(first)[0].success).toBe(true);
      const before = await latest();

      // Bob's create with the same device id and local id would have been answered with Alice's
      // record ("duplicate") and never written: now it is a 403 and nothing changes.
      const stolen = await push(bob.apiKey, { deviceId, changes: [contact('x1')] });
      expect(stolen.status).toBe(403);
      expect(stolen.body).toMatchObject({ success: false, error: 'FORBIDDEN' });
      expect(await latest()).toBe(before);

      const pull = await app.api('GET', '/api/sync/delta?version=0', { key: bob.apiKey, headers: { 'x-device-id': deviceId } });
      expect(pull.status).toBe(403);
      const socket = await refusedWith(app.url, { apiKey: bob.apiKey, deviceId });
      expect(socket.data).toMatchObject({ error: 'FORBIDDEN' });

      // The owner goes on as before; Bob with a device id of his own too.
      expect((await push(alice.apiKey, { deviceId, changes: [contact('x2')] })).status).toBe(200);
      const own = await push(bob.apiKey, { deviceId: `${deviceId}-bob`, changes: [contact('x1')] });
      expect(acksOf(own)[0]).toMatchObject({ success: true, status: 'applied' });
      expect(acksOf(own)[0].serverId).not.toBe(acksOf(first)[0].serverId);
    });

    it('lets exactly one of two users who first sync with a new device id at the same time have it', async () => {
      const deviceId = `race-${randomUUID()}`;
      const [a, b] = await Promise.all([
        push(alice.apiKey, { deviceId, changes: [contact('r1')] }),
        push(bob.apiKey, { deviceId, changes: [contact('r1')] }),
      ]);
      expect([a.status, b.status].sort()).toEqual([200, 403]);
    });
  });

  describe('an app reinstalled that reuses local ids', () => {
    it('creates a new record for a reused local id, and later references by it mean the newest', async () => {
      const deviceId = `reinstall-${randomUUID()}`;
      const original = acksOf(await push(alice.apiKey, { deviceId, changes: [contact('c-1', { company: 'Old' })] }))[0];
      expect(original).toMatchObject({ success: true, status: 'applied' });

      // The reinstalled app starts its local counter again: same local id, another contact.
      const fresh = acksOf(await push(alice.apiKey, { deviceId, changes: [{ ...contact('c-1', { company: 'New' }), timestamp: ts(5) }] }))[0];
      expect(fresh).toMatchObject({ success: true, status: 'applied' });
      expect(fresh.serverId).not.toBe(original.serverId);
      const [old, now] = await Promise.all([original, fresh].map((a) => app.api('GET', `/api/contacts/${a.serverId}`)));
      expect(old.body.data.company).toBe('Old');
      expect(now.body.data.company).toBe('New');

      // An update by that local id goes to the newest record, not the old one.
      const edit = acksOf(
        await push(alice.apiKey, { deviceId, changes: [{ localId: 'c-1', entityType: 'contacts', operation: 'update', timestamp: ts(10), data: { notes: 'edited' } }] }),
      )[0];
      expect(edit).toMatchObject({ success: true, serverId: fresh.serverId });
      expect((await app.api('GET', `/api/contacts/${fresh.serverId}`)).body.data.notes).toBe('edited');
      expect((await app.api('GET', `/api/contacts/${original.serverId}`)).body.data.notes).toBeNull();

      // The original change re-sent byte for byte is still answered with its own result.
      const space = { localId: 's-1', entityType: 'spaces', operation: 'create', timestamp: ts(), data: { name: 'Mine' } };
      const first = acksOf(await push(alice.apiKey, { deviceId, changes: [space] }))[0];
      const resent = acksOf(await push(alice.apiKey, { deviceId, changes: [space] }))[0];
      expect(resent).toMatchObject({ status: 'duplicate', serverId: first.serverId });
    });

    it('maps a local id reused within one batch to the newest record for the changes after it', async () => {
      const deviceId = `reuse-batch-${randomUUID()}`;
      const res = await push(alice.apiKey, {
        deviceId,
        changes: [
          { localId: 'l', entityType: 'spaces', operation: 'create', timestamp: ts(), data: { name: 'First' } },
          { localId: 'l', entityType: 'spaces', operation: 'create', timestamp: ts(1), data: { name: 'Second' } },
          { localId: 'i', entityType: 'items', operation: 'create', timestamp: ts(2), data: { title: 'Item', spaceLocalId: 'l' } },
        ],
      });
      const [a, b, item] = acksOf(res);
      expect([a.success, b.success, item.success]).toEqual([true, true, true]);
      expect(a.serverId).not.toBe(b.serverId);
      const stored = await app.api('GET', `/api/items/${item.serverId}`, { key: alice.apiKey });
      expect(stored.body.data.spaceId).toBe(b.serverId);
    });
  });

  describe('values the database cannot hold', () => {
    const uuid = '5f1b3c1e-8a4d-4f6b-9c2e-1d2e3f4a5b6c';
    const poisons: [string, (base: Record<string, any>) => Record<string, unknown>, string][] = [
      ['a urn:uuid: id', (c) => ({ ...c, operation: 'update', id: `urn:uuid:${uuid}`, data: { notes: 'x' } }), 'id'],
      ['a braced id', (c) => ({ ...c, operation: 'update', id: `{${uuid}}`, data: { notes: 'x' } }), 'id'],
      ['a year 0000 timestamp', (c) => ({ ...c, timestamp: '0000-01-01T00:00:00Z' }), 'timestamp'],
      ['an offset past +14:00', (c) => ({ ...c, timestamp: '2026-01-01T00:00:00+15:00' }), 'timestamp'],
      ['a year 10000 epoch', (c) => ({ ...c, timestamp: 253402300800000 }), 'timestamp'],
      ['a day that does not exist', (c) => ({ ...c, timestamp: '2026-02-30T00:00:00Z' }), 'timestamp'],
      ['a urn:uuid: photoFileId', (c) => ({ ...c, data: { ...c.data, photoFileId: `urn:uuid:${uuid}` } }), 'photoFileId'],
      ['a baseVersion past 2^53', (c) => ({ ...c, operation: 'update', id: uuid, baseVersion: 2 ** 60, data: { notes: 'x' } }), 'baseVersion'],
    ];

    it.each(poisons)('rejects %s as that change alone, naming the field; the rest of the batch commits', async (_name, poison, field) => {
      const deviceId = `poison-${randomUUID()}`;
      const good = [contact('g1'), contact('g2')];
      const res = await push(alice.apiKey, { deviceId, changes: [good[0], poison(contact('bad')), good[1]] });
      expect(res.status).toBe(200);
      const [a, bad, b] = acksOf(res);
      expect(a).toMatchObject({ success: true, status: 'applied' });
      expect(b).toMatchObject({ success: true, status: 'applied' });
      expect(bad).toMatchObject({ success: false, status: 'rejected', code: 'VALIDATION_FAILED' });
      expect(bad.error).toContain(field);
    });

    it('rejects list fields the database cannot hold (dates, ids) per change', async () => {
      const deviceId = `poison-lists-${randomUUID()}`;
      const res = await push(alice.apiKey, {
        deviceId,
        changes: [
          { localId: 'sp', entityType: 'spaces', operation: 'create', timestamp: ts(), data: { name: 'Lists' } },
          { localId: 'i1', entityType: 'items', operation: 'create', timestamp: ts(), data: { title: 'x', spaceLocalId: 'sp', dueDate: '0000-06-01T00:00:00Z' } },
          { localId: 'i2', entityType: 'items', operation: 'create', timestamp: ts(), data: { title: 'x', spaceLocalId: 'sp', completedAt: '2026-01-01T00:00:00+14:30' } },
          { localId: 'i3', entityType: 'items', operation: 'create', timestamp: ts(), data: { title: 'x', spaceId: `urn:uuid:${uuid}` } },
          { localId: 'i4', entityType: 'items', operation: 'create', timestamp: ts(), data: { title: 'ok', spaceLocalId: 'sp', dueDate: '9999-12-31T23:59:59-14:00' } },
        ],
      });
      expect(res.status).toBe(200);
      const acks = acksOf(res);
      expect(acks.map((a) => a.success)).toEqual([true, false, false, false, true]);
      expect(acks[1].error).toContain('dueDate');
      expect(acks[2].error).toContain('completedAt');
      expect(acks[3].error).toContain('spaceId');
    });

    it('answers 400 for such values over REST, bulk rows and query parameters, and writes nothing', async () => {
      const before = await latest();
      const rest = await app.api('POST', '/api/contacts', { body: { firstName: 'R', phonePrimary: uniquePhone(), photoFileId: `urn:uuid:${uuid}` } });
      expect(rest.status).toBe(400);
      const bulk = await app.api('POST', '/api/contacts/bulk', {
        body: [
          { firstName: 'B1', phonePrimary: uniquePhone(), photoFileId: `urn:uuid:${uuid}` },
          { firstName: 'B2', phonePrimary: uniquePhone() },
        ],
      });
      expect(bulk.status).toBe(200);
      expect(bulk.body.data.results.map((r: { success: boolean }) => r.success)).toEqual([false, true]);
      expect(bulk.body.data.results[0].error).toContain('photoFileId');
      for (const query of ['updatedSince=0000-01-01T00:00:00Z', 'updatedSince=2026-01-01T00:00:00%2B15:00', 'updatedSince=2026-13-01T00:00:00Z']) {
        const list = await app.api('GET', `/api/contacts?${query}`);
        expect(list.status, query).toBe(400);
      }
      // A CSV import: the row with the bad id is that row's error, the others are created.
      const csv = `firstName,phonePrimary,photoFileId\nGood,${uniquePhone()},\nBad,${uniquePhone()},urn:uuid:${uuid}\n`;
      const imported = await app.api('POST', '/api/contacts/import', { raw: csv, headers: { 'content-type': 'text/csv' } });
      expect(imported.status).toBe(200);
      expect(imported.body.data).toMatchObject({ created: 1, failed: 1 });
      expect(imported.body.data.errors[0]).toMatchObject({ row: 3 });
      expect(imported.body.data.errors[0].error).toContain('photoFileId');
      const space = await app.api('POST', '/api/spaces', { key: alice.apiKey, body: { name: 'S' } });
      const item = await app.api('POST', '/api/items', { key: alice.apiKey, body: { title: 'T', spaceId: space.body.data.id, dueDate: '0000-01-01T00:00:00Z' } });
      expect(item.status).toBe(400);
      expect(await latest()).toBe(before + 3); // the bulk's good row, the import's and the space
    });

    it('never answers 5xx and always commits the valid changes of batches with random junk mixed in', async () => {
      const deviceId = `junk-${randomUUID()}`;
      const junk = fc.oneof(
        fc.anything(),
        fc.record({
          localId: fc.string({ maxLength: 10 }),
          id: fc.oneof(fc.constant(`urn:uuid:${uuid}`), fc.string(), fc.uuid().map((u) => u.toUpperCase())),
          entityType: fc.constantFrom('contacts', 'contact', 'spaces', 'items', 'categories', 'nope', ''),
          operation: fc.constantFrom('create', 'update', 'delete', 'upsert'),
          timestamp: fc.oneof(fc.constantFrom('0000-01-01T00:00:00Z', '2026-01-01T00:00:00+14:01', 'yesterday'), fc.integer({ min: -1e15, max: 1e16 })),
          data: fc.dictionary(
            fc.constantFrom('firstName', 'phonePrimary', 'photoFileId', 'spaceId', 'dueDate', 'title', 'name', 'tags', 'order'),
            fc.oneof(fc.string(), fc.constant('\u0000'), fc.constant('\ud800'), fc.double(), fc.constant(`urn:uuid:${uuid}`), fc.constant('0000-01-01T00:00:00Z')),
          ),
        }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(junk, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 4 }), async (bad, goodCount) => {
          const good = Array.from({ length: goodCount }, (_, i) => contact(`ok-${randomUUID()}-${i}`));
          const changes = [...bad, ...good].sort(() => Math.random() - 0.5);
          const res = await push(alice.apiKey, { deviceId, changes });
          expect(res.status).toBe(200);
          const acks = acksOf(res);
          expect(acks).toHaveLength(changes.length);
          for (const g of good) {
            const ack = acks[changes.indexOf(g)];
            expect(ack).toMatchObject({ success: true, status: 'applied' });
          }
          for (const ack of acks) if (!ack.success) expect(['VALIDATION_FAILED', 'NOT_FOUND', 'FORBIDDEN', 'DUPLICATE']).toContain(ack.code);
        }),
        { numRuns: 25 },
      );
    });
  });

  describe('device checkpoints', () => {
    const device = async (id: string) => (await app.api('GET', `/api/devices/${encodeURIComponent(id)}`)).body.data;

    it('is what the server has given the device: 0 behind after a pull, a push and a live event', async () => {
      const pulled = `cp-pull-${randomUUID()}`;
      let page;
      let version = 0;
      do {
        page = (await app.api('GET', `/api/sync/delta?version=${version}&limit=5000`, { key: alice.apiKey, headers: { 'x-device-id': pulled } })).body.data;
        version = page.nextVersion;
      } while (page.hasMore);
      await eventually(async () => (await device(pulled))?.versionsBehind === 0);
      expect((await device(pulled)).lastSyncVersion).toBe(version);

      const pusher = `cp-push-${randomUUID()}`;
      const pushed = await push(alice.apiKey, { deviceId: pusher, lastSyncVersion: version, changes: [contact('cp')] });
      const syncVersion = pushed.body.data.syncVersion;
      expect(syncVersion).toBeGreaterThan(version);
      await eventually(async () => (await device(pusher))?.lastSyncVersion === syncVersion);
      expect((await device(pusher)).versionsBehind).toBe(0);

      // A socket device that receives the next change live is at its toVersion without pulling.
      const live = `cp-live-${randomUUID()}`;
      let socket: Probe | undefined;
      try {
        socket = await authedProbe(app.url, { apiKey: bob.apiKey, deviceId: live });
        const write = await push(alice.apiKey, { deviceId: pusher, changes: [contact('cp2')] });
        expect(write.status).toBe(200);
        const event = await socket.waitFor('changes', (e) => e.changes.length > 0);
        await eventually(async () => (await device(live))?.lastSyncVersion === event.toVersion);
        const outdated = await app.api('GET', '/api/devices/outdated?threshold=0');
        const listed = outdated.body.data.map((d: { deviceId: string }) => d.deviceId);
        expect(listed).not.toContain(live);
      } finally {
        closeAll(socket);
      }
    });

    it('never moves a checkpoint backwards when an older pull finishes last', async () => {
      const id = `cp-order-${randomUUID()}`;
      const top = await latest();
      await app.api('GET', `/api/sync/delta?version=${top}`, { key: alice.apiKey, headers: { 'x-device-id': id } });
      await app.api('GET', '/api/sync/delta?version=0&limit=1', { key: alice.apiKey, headers: { 'x-device-id': id } });
      await eventually(async () => (await device(id))?.lastSyncVersion === top);
    });
  });
});
