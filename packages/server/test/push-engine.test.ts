import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, type TestDb } from './helpers/test-db.js';
import { ADMIN_KEY, createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, type Probe } from './helpers/sockets.js';

/** The batched push end to end (SPEC §4 "Batched push", "Idempotency"; §7 `sync:push`). */

const ts = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();
/** Redis backs the Idempotency-Key locks and cache when the environment provides one. */
const env: Record<string, string> = process.env.TEST_REDIS_URL ? { REDIS_URL: process.env.TEST_REDIS_URL } : {};

interface Ack {
  changeId?: string;
  localId: string | null;
  serverId: string | null;
  entityType: string;
  operation: string;
  success: boolean;
  status: string;
  version?: number;
  code?: string;
  error?: string;
}

const createChange = (localId: string, data: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  localId,
  entityType: 'contacts',
  operation: 'create',
  timestamp: ts(),
  data: { firstName: `N-${localId}`, phonePrimary: uniquePhone(), ...data },
  ...extra,
});

describe.each(backends)('the batched push on %s', (backend) => {
  let app: TestApp;
  /** The database this suite created; the app is restarted on it once. */
  let ownDb: TestDb;
  /** Set once the app runs on ownDb as a shared database: closing it no longer drops ownDb. */
  let restarted = false;
  let agent: { apiKey: string; agent: { id: string } };

  beforeAll(async () => {
    app = await startTestApp(backend, env);
    ownDb = app.testDb;
    agent = await createAgent(app, `PE-${backend}`);
  });
  afterAll(async () => {
    await app?.close();
    if (restarted) await ownDb.drop();
  });

  const push = (body: unknown, opts: { key?: string; headers?: Record<string, string> } = {}) =>
    app.api('POST', '/api/sync', { body, key: opts.key ?? agent.apiKey, headers: opts.headers });
  const acksOf = (res: { body: any }): Ack[] => res.body.data.acknowledged;
  /** The tenant's latest version (admin key unless another tenant's key is given). */
  const latest = async (key = ADMIN_KEY): Promise<number> => {
    const res = await app.api('GET', '/api/sync/delta?version=0&limit=1', { key });
    expect(res.status).toBe(200);
    return res.body.data.latestVersion;
  };
  const getContact = (id: string, key = ADMIN_KEY) => app.api('GET', `/api/contacts/${id}`, { key });
  /** How many live contacts of the tenant carry `phone`, counted through search. */
  const countPhone = async (phone: string, key = ADMIN_KEY) => {
    // Search also finds similar numbers: count the exact ones.
    const res = await app.api('GET', `/api/contacts?search=${encodeURIComponent(phone)}&limit=100`, { key });
    expect(res.status).toBe(200);
    return (res.body.data as { phonePrimary: string }[]).filter((c) => c.phonePrimary === phone).length;
  };

  describe('batch semantics', () => {
    it('applies a create, an update and a delete of one localId in order, one version and one audit entry each', async () => {
      const phone = uniquePhone();
      const before = await latest();
      const res = await push({
        deviceId: 'order-1',
        changes: [
          { localId: 'o-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Ord', phonePrimary: phone } },
          { localId: 'o-1', entityType: 'contacts', operation: 'update', timestamp: ts(1), data: { company: 'Ordered' } },
          { localId: 'o-1', entityType: 'contacts', operation: 'delete', timestamp: ts(2) },
        ],
      });
      expect(res.status).toBe(200);
      const acks = acksOf(res);
      expect(acks.map((a) => [a.operation, a.status, a.success])).toEqual([
        ['create', 'applied', true],
        ['update', 'applied', true],
        ['delete', 'applied', true],
      ]);
      const id = acks[0].serverId!;
      expect(acks.map((a) => a.serverId)).toEqual([id, id, id]);
      expect(acks.map((a) => a.version)).toEqual([before + 1, before + 2, before + 3]);
      expect(await latest()).toBe(before + 3);

      // Final state: a tombstone carrying the update, gone from REST, delivered as a delete.
      expect((await getContact(id)).status).toBe(404);
      const delta = await app.api('GET', `/api/sync/delta?version=${before}&collections=contacts`);
      expect(delta.body.data.changes).toHaveLength(1);
      expect(delta.body.data.changes[0]).toMatchObject({ id, op: 'delete', version: before + 3, data: { company: 'Ordered', isDeleted: true, phonePrimary: phone } });

      const history = await app.api('GET', `/api/contacts/${id}/history`);
      expect(history.status).toBe(200);
      const entries = [...history.body.data].sort((a: { version: number }, b: { version: number }) => a.version - b.version);
      expect(entries.map((e: { action: string; version: number; deviceId: string }) => [e.action, e.version, e.deviceId])).toEqual([
        ['create', before + 1, 'order-1'],
        ['update', before + 2, 'order-1'],
        ['delete', before + 3, 'order-1'],
      ]);
      expect(entries[1].changes).toEqual({ company: { from: null, to: 'Ordered' } });
      // The create's entry holds the record as created, not as the batch left it.
      expect(entries[0].changes).toEqual({ firstName: { from: null, to: 'Ord' }, phonePrimary: { from: null, to: phone }, doNotCall: { from: null, to: false } });
      // The phone is free again: a live record may take it.
      expect(await countPhone(phone)).toBe(0);
    });

    it('audits each created record with every field it set, by its device, at the change time, whether or not the batch edits it again', async () => {
      const at = [ts(-60_000), ts(-30_000), ts(-10_000)];
      const kept = { ...createChange('au-1', { company: 'Kept Ltd', email: 'kept@example.com' }), timestamp: at[0] };
      const edited = { ...createChange('au-2'), timestamp: at[1] };
      const res = await push({
        deviceId: 'audit-1',
        changes: [kept, edited, { localId: 'au-2', entityType: 'contacts', operation: 'update', timestamp: at[2], data: { notes: 'later' } }],
      });
      expect(acksOf(res).map((a) => a.status)).toEqual(['applied', 'applied', 'applied']);
      const [keptId, editedId] = acksOf(res).map((a) => a.serverId);
      const { rows } = await app.testDb.db.query<{ record_id: string; action: string; changes: unknown; changed_fields: string[]; ms: number; device_id: string; agent_code: string | null }>(
        `SELECT record_id, action, changes, changed_fields, (extract(epoch from change_ts) * 1000)::float8 AS ms, device_id, agent_code
           FROM audit_log WHERE record_id = ANY($1::uuid[]) ORDER BY version`,
        [[keptId, editedId]],
      );
      expect(rows.map((r) => [r.record_id, r.action, r.ms, r.device_id])).toEqual([
        [keptId, 'create', Date.parse(at[0]), 'audit-1'],
        [editedId, 'create', Date.parse(at[1]), 'audit-1'],
        [editedId, 'update', Date.parse(at[2]), 'audit-1'],
      ]);
      expect(rows[0].changes).toEqual({
        firstName: { from: null, to: 'N-au-1' },
        phonePrimary: { from: null, to: kept.data.phonePrimary },
        company: { from: null, to: 'Kept Ltd' },
        email: { from: null, to: 'kept@example.com' },
        doNotCall: { from: null, to: false },
      });
      expect([...rows[0].changed_fields].sort()).toEqual(['company', 'doNotCall', 'email', 'firstName', 'phonePrimary']);
      expect(rows[1].changes).toEqual({ firstName: { from: null, to: 'N-au-2' }, phonePrimary: { from: null, to: edited.data.phonePrimary }, doNotCall: { from: null, to: false } });
      expect(rows[2].changes).toEqual({ notes: { from: null, to: 'later' } });
      expect(rows[0].agent_code).toBe(rows[2].agent_code);
    });

    it('answers every kind of junk change on its own and still applies the valid changes around it', async () => {
      const before = await latest();
      const first = createChange('ok-first');
      const last = createChange('ok-last');
      const junk: { change: unknown; code: string; why: string }[] = [
        { change: { localId: 'j1', entityType: 'rockets', operation: 'create', timestamp: ts(), data: {} }, code: 'VALIDATION_FAILED', why: 'unknown entityType' },
        { change: { ...createChange('j2'), operation: 'upsert' }, code: 'VALIDATION_FAILED', why: 'unknown operation' },
        { change: createChange('j3', { shoeSize: 44 }), code: 'VALIDATION_FAILED', why: 'unknown field' },
        { change: createChange('j4', { firstName: 42 }), code: 'VALIDATION_FAILED', why: 'number for a string' },
        { change: createChange('j5', { doNotCall: 'yes' }), code: 'VALIDATION_FAILED', why: 'string for a boolean' },
        { change: createChange('j6', { phonePrimary: '12' }), code: 'VALIDATION_FAILED', why: 'invalid phone' },
        { change: createChange('j7', { title: 'an item field' }), code: 'VALIDATION_FAILED', why: 'field of another collection' },
        { change: createChange('j8', { id: randomUUID(), version: 1 }), code: 'VALIDATION_FAILED', why: 'server-owned fields in data' },
        // Updates of the record the first change created: only writable contact fields.
        ...[{ shoeSize: 44 }, { createdByAgent: 'SOMEONE' }, { isDeleted: true }, { version: 999 }, { id: randomUUID() }, { title: 'x' }, { firstName: null }, { doNotCall: 1 }].map(
          (data) => ({
            change: { localId: 'ok-first', entityType: 'contacts', operation: 'update', timestamp: ts(1), data },
            code: 'VALIDATION_FAILED',
            why: `update with ${JSON.stringify(data)}`,
          }),
        ),
        { change: { entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'NoIds', phonePrimary: uniquePhone() } }, code: 'VALIDATION_FAILED', why: 'no changeId, localId or id' },
        { change: { entityType: 'contacts', operation: 'update', timestamp: ts(), data: { company: 'x' } }, code: 'VALIDATION_FAILED', why: 'update naming no record' },
        { change: { ...createChange('j9'), timestamp: 'yesterday' }, code: 'VALIDATION_FAILED', why: 'unparseable timestamp' },
        { change: { ...createChange('j10'), timestamp: -5 }, code: 'VALIDATION_FAILED', why: 'negative timestamp' },
        { change: { ...createChange('j11'), timestamp: 1.5 }, code: 'VALIDATION_FAILED', why: 'fractional timestamp' },
        { change: { ...createChange('j12'), timestamp: 1e20 }, code: 'VALIDATION_FAILED', why: 'timestamp beyond any date' },
        { change: { ...createChange('j13'), timestamp: undefined }, code: 'VALIDATION_FAILED', why: 'missing timestamp' },
        { change: { ...createChange('j14'), id: 'not-a-uuid' }, code: 'VALIDATION_FAILED', why: 'id that is no UUID' },
        { change: { id: randomUUID(), entityType: 'contacts', operation: 'update', timestamp: ts(), data: { company: 'x' } }, code: 'NOT_FOUND', why: 'update of an unknown id' },
        { change: { localId: 'never-created', entityType: 'contacts', operation: 'delete', timestamp: ts() }, code: 'NOT_FOUND', why: 'delete of an unknown localId' },
        { change: { ...createChange('j15'), data: 'not an object' }, code: 'VALIDATION_FAILED', why: 'data that is no object' },
        { change: { ...createChange('j16'), baseVersion: -1 }, code: 'VALIDATION_FAILED', why: 'negative baseVersion' },
        { change: { ...createChange('j17'), extra: true }, code: 'VALIDATION_FAILED', why: 'unknown change property' },
        { change: 42, code: 'VALIDATION_FAILED', why: 'a number' },
        { change: null, code: 'VALIDATION_FAILED', why: 'null' },
        { change: 'change', code: 'VALIDATION_FAILED', why: 'a string' },
        { change: [createChange('j18')], code: 'VALIDATION_FAILED', why: 'an array' },
      ];
      const res = await push({ deviceId: 'junk-1', changes: [first, ...junk.map((j) => j.change), last] });
      expect(res.status).toBe(200);
      const acks = acksOf(res);
      expect(acks).toHaveLength(junk.length + 2);
      expect(acks[0]).toMatchObject({ localId: 'ok-first', success: true, status: 'applied', version: before + 1 });
      expect(acks[acks.length - 1]).toMatchObject({ localId: 'ok-last', success: true, status: 'applied', version: before + 2 });
      junk.forEach((j, i) => {
        const ack = acks[i + 1];
        expect({ why: j.why, success: ack.success, status: ack.status, code: ack.code }).toEqual({ why: j.why, success: false, status: 'rejected', code: j.code });
        expect(typeof ack.error).toBe('string');
        expect(ack.version).toBeUndefined();
      });
      // The ack names the change it answers where the change said.
      expect(acks[1]).toMatchObject({ localId: 'j1', entityType: 'rockets' });
      expect((await getContact(acks[0].serverId!)).body.data).toMatchObject({
        firstName: 'N-ok-first',
        phonePrimary: first.data.phonePrimary,
        createdByAgent: `PE-${backend}`,
        version: before + 1,
      });
      expect((await getContact(acks[acks.length - 1].serverId!)).body.data).toMatchObject({ firstName: 'N-ok-last' });
      // Only the two valid creates took versions; no rejected change wrote anything.
      expect(await latest()).toBe(before + 2);
      for (const j of junk.slice(1, 6)) expect(await countPhone(((j.change as { data: { phonePrimary: string } }).data.phonePrimary))).toBe(0);
    });

    it('refuses a request body of the wrong shape with 400 and applies nothing', async () => {
      const before = await latest();
      const valid = createChange('shape-ok');
      for (const body of [
        { changes: [valid] },
        { deviceId: 'bad device id!', changes: [valid] },
        { deviceId: 'shape-1', changes: valid },
        { deviceId: 'shape-1', changes: [valid], extra: 1 },
        { deviceId: 'shape-1', lastSyncVersion: -1, changes: [valid] },
        { deviceId: 'shape-1', lastSyncVersion: '3', changes: [valid] },
      ]) {
        const res = await push(body);
        expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
        expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
      }
      expect(await latest()).toBe(before);
      expect(await countPhone(valid.data.phonePrimary)).toBe(0);
      // A NUL character in one change refuses that change alone (SPEC §4: one bad change never
      // blocks a device's queue); the valid one applies.
      const nul = await push({ deviceId: 'shape-1', changes: [valid, createChange('nul', { notes: 'a\u0000b' })] });
      expect(nul.status).toBe(200);
      expect(acksOf(nul).map((a) => [a.success, a.code])).toEqual([
        [true, undefined],
        [false, 'VALIDATION_FAILED'],
      ]);
      expect(await latest()).toBe(before + 1);
      expect(await countPhone(valid.data.phonePrimary)).toBe(1);
    });

    it('refuses 1001 changes with 400 and applies none of them', async () => {
      const before = await latest();
      const changes = Array.from({ length: 1001 }, (_, i) => createChange(`big-${i}`, { company: 'TooMany' }));
      const res = await push({ deviceId: 'big-1', changes });
      expect(res.status).toBe(400);
      expect(res.body.success).toBe(false);
      expect(await latest()).toBe(before);
      expect(await countPhone(changes[0].data.phonePrimary)).toBe(0);
      expect(await countPhone(changes[1000].data.phonePrimary)).toBe(0);
    });

    it('accepts the plural and the singular collection name and echoes the one sent', async () => {
      const res = await push({
        deviceId: 'names-1',
        changes: [createChange('pl', {}, { entityType: 'contacts' }), createChange('sg', {}, { entityType: 'contact' })],
      });
      const acks = acksOf(res);
      expect(acks.map((a) => [a.entityType, a.status])).toEqual([
        ['contacts', 'applied'],
        ['contact', 'applied'],
      ]);
      for (const ack of acks) expect((await getContact(ack.serverId!)).status).toBe(200);
      // A singular-named update reaches the record a plural-named create made.
      const upd = await push({ deviceId: 'names-1', changes: [{ localId: 'pl', entityType: 'contact', operation: 'update', timestamp: ts(5), data: { company: 'Sing' } }] });
      expect(acksOf(upd)[0]).toMatchObject({ serverId: acks[0].serverId, status: 'applied' });
      expect((await getContact(acks[0].serverId!)).body.data.company).toBe('Sing');
    });

    it('honours a client-proposed UUID id and refuses a second record with the same id', async () => {
      const id = randomUUID();
      const res = await push({ deviceId: 'uuid-1', changes: [{ id, entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Own', phonePrimary: uniquePhone() } }] });
      expect(acksOf(res)[0]).toMatchObject({ serverId: id, status: 'applied', success: true });
      expect((await getContact(id)).body.data).toMatchObject({ id, firstName: 'Own' });
      const upd = await push({ deviceId: 'uuid-1', changes: [{ id, entityType: 'contacts', operation: 'update', timestamp: ts(10), data: { lastName: 'Id' } }] });
      expect(acksOf(upd)[0]).toMatchObject({ serverId: id, status: 'applied' });
      const before = await latest();
      // Another device (or the same one with a new timestamp) creating that id again is refused.
      const again = await push({ deviceId: 'uuid-2', changes: [{ id, entityType: 'contacts', operation: 'create', timestamp: ts(20), data: { firstName: 'Twin', phonePrimary: uniquePhone() } }] });
      expect(acksOf(again)[0]).toMatchObject({ success: false, status: 'rejected', code: 'DUPLICATE' });
      expect(await latest()).toBe(before);
      expect((await getContact(id)).body.data).toMatchObject({ firstName: 'Own', lastName: 'Id' });
    });

    it("never touches another tenant's record: its id is refused for a create, and updates and deletes of it are NOT_FOUND", async () => {
      const created = await app.api('POST', '/api/tenants', { body: { name: 'Other Co', slug: `other-${backend}` } });
      expect(created.status).toBe(201);
      const otherKey: string = created.body.data.apiKey;
      const theirs = await app.api('POST', '/api/contacts', { key: otherKey, body: { firstName: 'Theirs', phonePrimary: uniquePhone(), notes: 'keep' } });
      expect(theirs.status).toBe(201);
      const { id } = theirs.body.data;
      const theirVersion = await latest(otherKey);
      const mineBefore = await latest();

      const res = await push({
        deviceId: 'tenant-1',
        changes: [
          { id, entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Hijack', phonePrimary: uniquePhone() } },
          { id, entityType: 'contacts', operation: 'update', timestamp: ts(), data: { notes: 'overwritten' } },
          { id, entityType: 'contacts', operation: 'update', timestamp: ts(1), baseVersion: 0, data: { notes: 'overwritten' } },
          { id, entityType: 'contacts', operation: 'delete', timestamp: ts(2) },
          createChange('tenant-ok'),
        ],
      });
      const acks = acksOf(res);
      // The create is refused without saying that another tenant has the id.
      expect(acks.map((a) => [a.success, a.code])).toEqual([
        [false, 'VALIDATION_FAILED'],
        [false, 'NOT_FOUND'],
        [false, 'NOT_FOUND'],
        [false, 'NOT_FOUND'],
        [true, undefined],
      ]);
      expect(await latest()).toBe(mineBefore + 1);
      expect(await latest(otherKey)).toBe(theirVersion);
      expect((await getContact(id, otherKey)).body.data).toMatchObject({ firstName: 'Theirs', notes: 'keep', version: theirs.body.data.version, isDeleted: false });
      expect((await getContact(id)).status).toBe(404);
      expect(res.body.data.conflicts).toEqual([]);
    });

    it('refuses a primary phone that a live contact has, or that an earlier change of the batch took, as DUPLICATE', async () => {
      const taken = uniquePhone();
      const holder = (await app.api('POST', '/api/contacts', { body: { firstName: 'Holder', phonePrimary: taken } })).body.data;
      const fresh = uniquePhone();
      const national = `(${taken.slice(2, 5)}) ${taken.slice(5, 8)}-${taken.slice(8)}`;
      const other = (await app.api('POST', '/api/contacts', { body: { firstName: 'Other', phonePrimary: uniquePhone() } })).body.data;
      const before = await latest();
      const res = await push({
        deviceId: 'dup-1',
        changes: [
          createChange('d1', { phonePrimary: national }),
          createChange('d2', { phonePrimary: fresh }),
          createChange('d3', { phonePrimary: fresh }),
          { id: other.id, entityType: 'contacts', operation: 'update', timestamp: ts(), data: { phonePrimary: taken } },
          // A phone only as a secondary number is no clash.
          createChange('d4', { phoneSecondary: taken }),
        ],
      });
      const acks = acksOf(res);
      expect(acks.map((a) => a.code ?? a.status)).toEqual(['DUPLICATE', 'applied', 'DUPLICATE', 'DUPLICATE', 'applied']);
      expect(await latest()).toBe(before + 2);
      expect((await getContact(holder.id)).body.data).toMatchObject({ firstName: 'Holder', phonePrimary: taken, version: holder.version });
      expect((await getContact(other.id)).body.data.phonePrimary).toBe(other.phonePrimary);

      // Deleting the holder frees its phone for a later change of the same batch.
      const freed = await push({
        deviceId: 'dup-1',
        changes: [
          { id: holder.id, entityType: 'contacts', operation: 'delete', timestamp: ts() },
          createChange('d5', { phonePrimary: taken }),
        ],
      });
      expect(acksOf(freed).map((a) => a.status)).toEqual(['applied', 'applied']);
      const list = await app.api('GET', `/api/contacts?search=${encodeURIComponent(taken)}`);
      const primaries = list.body.data.filter((c: { phonePrimary: string }) => c.phonePrimary === taken);
      expect(primaries.map((c: { id: string }) => c.id)).toEqual([acksOf(freed)[1].serverId]);
    });

    it('commits the accepted changes of a request together, on consecutive versions, latestVersion advancing by exactly their number', async () => {
      const existing = (await app.api('POST', '/api/contacts', { body: { firstName: 'Ex', phonePrimary: uniquePhone() } })).body.data;
      const observer = await authedProbe(app.url, { apiKey: ADMIN_KEY, deviceId: 'atomic-observer' });
      try {
        const before = await latest();
        const res = await push({
          deviceId: 'atomic-1',
          changes: [
            createChange('a1'),
            createChange('bad', { firstName: '' }),
            { id: existing.id, entityType: 'contacts', operation: 'update', timestamp: ts(), data: { notes: 'n' } },
            createChange('a2'),
            { id: randomUUID(), entityType: 'contacts', operation: 'delete', timestamp: ts() },
            { localId: 'a1', entityType: 'contacts', operation: 'update', timestamp: ts(1), data: { company: 'A' } },
            // An update that changes nothing takes no version.
            { id: existing.id, entityType: 'contacts', operation: 'update', timestamp: ts(2), data: { notes: 'n' } },
          ],
        });
        const acks = acksOf(res);
        expect(acks.map((a) => a.success)).toEqual([true, false, true, true, false, true, true]);
        const versions = acks.filter((a) => a.success).map((a) => a.version);
        expect(versions).toEqual([before + 1, before + 2, before + 3, before + 4, before + 2]);
        expect(await latest()).toBe(before + 4);
        // One commit: other devices receive the batch as one event covering its versions.
        const event = await observer.waitFor('changes', (e) => e.toVersion === before + 4);
        expect(event.fromVersion).toBe(before);
        expect(event.changes.map((c: { version: number }) => c.version)).toEqual([before + 2, before + 3, before + 4]);
        const delta = await app.api('GET', `/api/sync/delta?version=${before}`);
        expect(delta.body.data.changes.map((c: { version: number }) => c.version)).toEqual([before + 2, before + 3, before + 4]);
      } finally {
        closeAll(observer);
      }
    });
  });

  describe('serverUpdates, hasMore and syncVersion', () => {
    it('answers no updates and hasMore without lastSyncVersion', async () => {
      const res = await push({ deviceId: 'su-1', changes: [createChange('su-a')] });
      expect(res.body.data).toMatchObject({ serverUpdates: {}, hasMore: true, syncVersion: 0 });
      expect(typeof res.body.data.syncTimestamp).toBe('string');
      expect(Number.isNaN(Date.parse(res.body.data.syncTimestamp))).toBe(false);
    });

    it("carries what changed since lastSyncVersion, another device's changes and its own, and a syncVersion at the top", async () => {
      const checkpoint = await latest();
      const elsewhere = (await app.api('POST', '/api/contacts', { body: { firstName: 'Elsewhere', phonePrimary: uniquePhone() } })).body.data;
      const res = await push({ deviceId: 'su-2', lastSyncVersion: checkpoint, changes: [createChange('su-b')] });
      const mine = acksOf(res)[0];
      expect(res.body.data.hasMore).toBe(false);
      expect(res.body.data.syncVersion).toBe(await latest());
      expect(res.body.data.syncVersion).toBe(mine.version);
      const updates = res.body.data.serverUpdates.contacts as { id: string; version: number }[];
      expect(updates.map((u) => u.id)).toEqual([elsewhere.id, mine.serverId]);
      expect(updates[0]).toMatchObject({ firstName: 'Elsewhere', version: elsewhere.version });
      // Already up to date: nothing but what this push wrote (here: nothing).
      const idle = await push({ deviceId: 'su-2', lastSyncVersion: res.body.data.syncVersion, changes: [] });
      expect(idle.body.data).toMatchObject({ serverUpdates: {}, hasMore: false, syncVersion: res.body.data.syncVersion, acknowledged: [] });
    });

    it('caps serverUpdates at 1000 with hasMore and a syncVersion equal to the last version returned', async () => {
      const checkpoint = await latest();
      const rows = Array.from({ length: 1002 }, (_, i) => ({ firstName: `Many${i}`, phonePrimary: uniquePhone() }));
      const bulk = await app.api('POST', '/api/contacts/bulk', { body: rows });
      expect(bulk.status).toBe(200);
      expect(bulk.body.data.created).toBe(1002);
      const res = await push({ deviceId: 'su-3', lastSyncVersion: checkpoint, changes: [createChange('su-c')] });
      const updates = res.body.data.serverUpdates.contacts as { id: string; version: number }[];
      expect(updates).toHaveLength(1000);
      expect(res.body.data.hasMore).toBe(true);
      const versions = updates.map((u) => u.version);
      expect(versions).toEqual([...versions].sort((a, b) => a - b));
      expect(res.body.data.syncVersion).toBe(versions[999]);
      // The same page a delta pull would give; paging on from syncVersion yields the rest once.
      const page = await app.api('GET', `/api/sync/delta?version=${checkpoint}&limit=1000`);
      expect(page.body.data.nextVersion).toBe(res.body.data.syncVersion);
      expect(page.body.data.changes.map((c: { id: string }) => c.id)).toEqual(updates.map((u) => u.id));
      const rest = await push({ deviceId: 'su-3', lastSyncVersion: res.body.data.syncVersion, changes: [] });
      const restIds = (rest.body.data.serverUpdates.contacts as { id: string }[]).map((u) => u.id);
      expect(rest.body.data.hasMore).toBe(false);
      expect(restIds).toContain(acksOf(res)[0].serverId);
      expect(restIds).toHaveLength(3);
      expect(new Set([...updates.map((u) => u.id), ...restIds]).size).toBe(1003);
    });

    it('refuses a lastSyncVersion beyond 2^53 - 1 with 400 before applying anything', async () => {
      const before = await latest();
      const change = createChange('su-huge');
      const res = await push({ deviceId: 'su-4', lastSyncVersion: 2 ** 53, changes: [change] });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('VALIDATION_FAILED');
      expect(await latest()).toBe(before);
      expect(await countPhone(change.data.phonePrimary)).toBe(0);
    });
  });

  describe('exactly once', () => {
    it('answers a change re-sent with its changeId as a duplicate with the original result, and does not apply it again', async () => {
      const created = (await app.api('POST', '/api/contacts', { body: { firstName: 'Once', phonePrimary: uniquePhone() } })).body.data;
      const update = { changeId: randomUUID(), id: created.id, entityType: 'contacts', operation: 'update', timestamp: ts(), data: { notes: 'from device' } };
      const first = acksOf(await push({ deviceId: 'once-1', changes: [update] }))[0];
      expect(first).toMatchObject({ status: 'applied', serverId: created.id, changeId: update.changeId });
      // The office edits the same field afterwards; the re-sent change must not undo that.
      await app.api('PATCH', `/api/contacts/${created.id}`, { body: { notes: 'from office' } });
      const before = await latest();
      // Re-sent with the same changeId, even with another timestamp: still the same change.
      const again = await push({ deviceId: 'once-1', changes: [{ ...update, timestamp: ts(1000) }, update] });
      for (const ack of acksOf(again)) expect(ack).toMatchObject({ status: 'duplicate', success: true, serverId: created.id, version: first.version, changeId: update.changeId });
      expect(await latest()).toBe(before);
      expect((await getContact(created.id)).body.data.notes).toBe('from office');
      // Receipts are per device: the same changeId from another device is another change.
      const otherDevice = acksOf(await push({ deviceId: 'once-2', changes: [{ ...update, data: { company: 'Other' } }] }))[0];
      expect(otherDevice.status).toBe('applied');
    });

    it('identifies a change without changeId by localId, operation and timestamp; a later edit of the same localId applies', async () => {
      const t0 = ts();
      const create = { localId: 'idem-1', entityType: 'contacts', operation: 'create', timestamp: t0, data: { firstName: 'Idem', phonePrimary: uniquePhone() } };
      const edit = { localId: 'idem-1', entityType: 'contacts', operation: 'update', timestamp: ts(1), data: { company: 'First' } };
      const first = acksOf(await push({ deviceId: 'idem-dev', changes: [create, edit] }));
      expect(first.map((a) => a.status)).toEqual(['applied', 'applied']);
      const id = first[0].serverId!;
      const before = await latest();

      // The whole queue re-sent (a lost answer), plus the same change twice within one batch.
      const again = acksOf(await push({ deviceId: 'idem-dev', changes: [create, edit, edit] }));
      expect(again.map((a) => [a.status, a.serverId, a.version])).toEqual([
        ['duplicate', id, first[0].version],
        ['duplicate', id, first[1].version],
        ['duplicate', id, first[1].version],
      ]);
      expect(await latest()).toBe(before);
      expect(await countPhone(create.data.phonePrimary)).toBe(1);

      // A later edit of the same record by localId has a later timestamp: it applies.
      const later = acksOf(await push({ deviceId: 'idem-dev', changes: [{ ...edit, timestamp: ts(2), data: { company: 'Second' } }] }))[0];
      expect(later).toMatchObject({ status: 'applied', serverId: id, version: before + 1 });
      expect((await getContact(id)).body.data.company).toBe('Second');
      // A create with the same localId but a new timestamp is another change (SPEC §4: a re-sent
      // change is byte-identical): a new record, here refused for its taken phone, never
      // answered with the old record.
      const restamped = acksOf(await push({ deviceId: 'idem-dev', changes: [{ ...create, timestamp: ts(3) }] }))[0];
      expect(restamped).toMatchObject({ success: false, status: 'rejected', code: 'DUPLICATE' });
      expect(restamped.serverId).not.toBe(id);
      expect(await latest()).toBe(before + 1);
      expect(await countPhone(create.data.phonePrimary)).toBe(1);
    });

    it('answers a re-sent rejected change with its original rejection', async () => {
      const holder = (await app.api('POST', '/api/contacts', { body: { firstName: 'Rej', phonePrimary: uniquePhone() } })).body.data;
      const change = { changeId: randomUUID(), localId: 'rej-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Clash', phonePrimary: holder.phonePrimary } };
      const first = acksOf(await push({ deviceId: 'rej-dev', changes: [change] }))[0];
      expect(first).toMatchObject({ success: false, code: 'DUPLICATE', status: 'rejected' });
      const again = acksOf(await push({ deviceId: 'rej-dev', changes: [change] }))[0];
      expect(again).toMatchObject({ success: false, code: 'DUPLICATE', status: 'duplicate' });
    });

    it('keeps its receipts across a restart of the server on the same database', async () => {
      const changes = [
        { changeId: randomUUID(), localId: 'rs-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Restart', phonePrimary: uniquePhone() } },
        { localId: 'rs-1', entityType: 'contacts', operation: 'update', timestamp: ts(1), data: { notes: 'before restart' } },
        { localId: 'rs-2', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Restart2', phonePrimary: uniquePhone() } },
      ];
      const first = acksOf(await push({ deviceId: 'restart-dev', changes }));
      expect(first.map((a) => a.status)).toEqual(['applied', 'applied', 'applied']);
      const before = await latest();

      await app.built.close();
      restarted = true;
      app = await startTestApp(backend, env, { sharedDb: ownDb });

      const again = acksOf(await push({ deviceId: 'restart-dev', changes }));
      expect(again.map((a) => [a.status, a.serverId, a.version])).toEqual(first.map((a) => ['duplicate', a.serverId, a.version]));
      expect(await latest()).toBe(before);
      expect(await countPhone(changes[0].data!.phonePrimary as string)).toBe(1);
      // The localId map survived too: a new edit by localId reaches the same record.
      const edit = acksOf(await push({ deviceId: 'restart-dev', changes: [{ localId: 'rs-2', entityType: 'contacts', operation: 'update', timestamp: ts(5), data: { notes: 'after restart' } }] }))[0];
      expect(edit).toMatchObject({ status: 'applied', serverId: first[2].serverId, version: before + 1 });
    });
  });

  describe('Idempotency-Key', () => {
    it('replays the stored answer for the same key and body, applying nothing, and refuses another body with 422', async () => {
      const key = `idem-${randomUUID()}`;
      const body = { deviceId: 'ik-1', changes: [createChange('ik-a'), createChange('ik-b')] };
      const first = await push(body, { headers: { 'idempotency-key': key } });
      expect(first.status).toBe(200);
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      const before = await latest();
      const replay = await push(body, { headers: { 'idempotency-key': key } });
      expect(replay.status).toBe(200);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.body).toEqual(first.body);
      expect(acksOf(replay).map((a) => a.status)).toEqual(['applied', 'applied']);
      expect(await latest()).toBe(before);

      const other = await push({ ...body, changes: [createChange('ik-c')] }, { headers: { 'idempotency-key': key } });
      expect(other.status).toBe(422);
      expect(other.body).toMatchObject({ success: false, error: 'IDEMPOTENCY_KEY_REUSED' });
      expect(await latest()).toBe(before);
      // Without the header the same body is a new request, answered from the per-change receipts.
      const plain = await push(body);
      expect(plain.headers.get('idempotent-replayed')).toBeNull();
      expect(acksOf(plain).map((a) => a.status)).toEqual(['duplicate', 'duplicate']);
      // A key belongs to its caller: another agent's request with it is its own.
      const someone = await createAgent(app, `PE2-${backend}`);
      const theirs = await push({ deviceId: 'ik-2', changes: [createChange('ik-d')] }, { key: someone.apiKey, headers: { 'idempotency-key': key } });
      expect(theirs.status).toBe(200);
      expect(theirs.headers.get('idempotent-replayed')).toBeNull();
    });

    it('refuses an invalid Idempotency-Key header with 400 and applies nothing', async () => {
      const before = await latest();
      for (const key of ['', 'has space', 'x'.repeat(256), 'tab\there']) {
        const change = createChange('ik-bad');
        const res = await push({ deviceId: 'ik-bad', changes: [change] }, { headers: { 'idempotency-key': key } });
        expect(res.status, JSON.stringify(key)).toBe(400);
        expect(res.body.error).toBe('VALIDATION_FAILED');
      }
      expect(await latest()).toBe(before);
    });

    it('answers 409 to a duplicate of a request still in flight, then replays the finished answer', async () => {
      const changes = () => Array.from({ length: 1000 }, (_, i) => createChange(`fl-${i}`, { company: 'InFlight' }));
      if (backend === 'postgres') {
        // Deterministic: hold the tenant's version lock, so the first request waits inside its
        // transaction (and so holds its key) until released.
        const tenantId = await defaultTenantId(app);
        const holder = new pg.Client({ connectionString: app.testDb.url });
        await holder.connect();
        try {
          await holder.query('BEGIN');
          await holder.query('SELECT current_version FROM tenant_versions WHERE tenant_id = $1 FOR UPDATE', [tenantId]);
          const key = randomUUID();
          const body = { deviceId: 'fl-1', changes: changes() };
          const firstP = push(body, { headers: { 'idempotency-key': key } });
          // Wait until the first request is blocked on the lock: it holds its key by then.
          const deadline = Date.now() + 10_000;
          for (;;) {
            const { rows } = await holder.query(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            );
            if (rows[0].n > 0) break;
            if (Date.now() > deadline) throw new Error('the first request never reached the lock');
            await new Promise((r) => setTimeout(r, 20));
          }
          // With Redis the in-flight mark has a short TTL that the running request renews:
          // after longer than that TTL, the key must still be held.
          if (env.REDIS_URL) await new Promise((r) => setTimeout(r, 6000));
          const second = await push(body, { headers: { 'idempotency-key': key } });
          expect(second.status).toBe(409);
          expect(second.body.error).toBe('IDEMPOTENCY_IN_FLIGHT');
          expect(second.headers.get('retry-after')).toBeTruthy();
          await holder.query('COMMIT');
          const first = await firstP;
          expect(first.status).toBe(200);
          expect(acksOf(first).every((a) => a.status === 'applied')).toBe(true);
          const third = await push(body, { headers: { 'idempotency-key': key } });
          expect(third.status).toBe(200);
          expect(third.headers.get('idempotent-replayed')).toBe('true');
          expect(third.body).toEqual(first.body);
        } finally {
          await holder.query('ROLLBACK').catch(() => undefined);
          await holder.end();
        }
        return;
      }
      // PGlite: no second connection can hold the lock. Send two at once; the first takes its
      // key and is busy for a while, so the second normally sees it in flight. Whichever wins,
      // the pair must be one 200 and one 409, or a 200 and a replay; a 409 must show up.
      let saw409 = false;
      for (let attempt = 0; attempt < 5 && !saw409; attempt++) {
        const key = randomUUID();
        const body = { deviceId: `fl-${attempt}`, changes: changes() };
        const pair = await Promise.all([push(body, { headers: { 'idempotency-key': key } }), push(body, { headers: { 'idempotency-key': key } })]);
        const statuses = pair.map((r) => r.status).sort();
        const fresh = pair.filter((r) => r.status === 200 && r.headers.get('idempotent-replayed') !== 'true');
        expect(fresh).toHaveLength(1);
        expect(acksOf(fresh[0]).every((a) => a.status === 'applied')).toBe(true);
        if (statuses[1] === 409) {
          saw409 = true;
          expect(statuses).toEqual([200, 409]);
          expect(pair.find((r) => r.status === 409)!.body.error).toBe('IDEMPOTENCY_IN_FLIGHT');
          const after = await push(body, { headers: { 'idempotency-key': key } });
          expect(after.headers.get('idempotent-replayed')).toBe('true');
          expect(after.body).toEqual(fresh[0].body);
        } else {
          expect(statuses).toEqual([200, 200]);
        }
      }
      expect(saw409).toBe(true);
    });
  });

  describe('sync:push over Socket.IO', () => {
    let sock: Probe | undefined;
    afterAll(() => closeAll(sock));

    it('answers like POST /api/sync, per change, with serverUpdates and duplicates by receipt', async () => {
      sock = await authedProbe(app.url, { apiKey: agent.apiKey, deviceId: 'sock-1' });
      const checkpoint = await latest();
      const change = createChange('sk-1');
      const answer = await sock.ack('sync:push', { deviceId: 'sock-1', lastSyncVersion: checkpoint, changes: [change, { ...change, localId: 'sk-2', operation: 'explode' }] });
      expect(answer.success).toBe(true);
      const [ok, bad] = answer.data.acknowledged as Ack[];
      expect(ok).toMatchObject({ localId: 'sk-1', status: 'applied', success: true, version: checkpoint + 1 });
      expect(bad).toMatchObject({ localId: 'sk-2', status: 'rejected', code: 'VALIDATION_FAILED' });
      expect(answer.data).toMatchObject({ hasMore: false, syncVersion: checkpoint + 1, conflicts: [] });
      expect(answer.data.serverUpdates.contacts.map((c: { id: string }) => c.id)).toEqual([ok.serverId]);
      expect((await getContact(ok.serverId!)).body.data.firstName).toBe('N-sk-1');
      // The same change over HTTP from the same device: a duplicate.
      const http = await push({ deviceId: 'sock-1', changes: [change] });
      expect(acksOf(http)[0]).toMatchObject({ status: 'duplicate', serverId: ok.serverId });
    });

    it('refuses a malformed payload, another deviceId and 1001 changes with an error envelope, applying nothing', async () => {
      sock ??= await authedProbe(app.url, { apiKey: agent.apiKey, deviceId: 'sock-1' });
      const before = await latest();
      const many = Array.from({ length: 1001 }, (_, i) => createChange(`sk-many-${i}`));
      for (const payload of [{ deviceId: 'sock-1', changes: many }, { deviceId: 'not-this-socket', changes: [createChange('sk-x')] }, { changes: [] }, 'push']) {
        const answer = await sock.ack('sync:push', payload);
        expect(answer).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
      }
      expect(await latest()).toBe(before);
      expect(await countPhone(many[0].data.phonePrimary)).toBe(0);
    });

    it('rejects NUL characters per change, ids included, and still applies the valid changes of the batch', async () => {
      sock ??= await authedProbe(app.url, { apiKey: agent.apiKey, deviceId: 'sock-1' });
      const before = await latest();
      const good = createChange('sk-nul-ok');
      const answer = await sock.ack('sync:push', {
        deviceId: 'sock-1',
        changes: [
          createChange('sk-nul-1', { notes: 'a\u0000b' }),
          createChange('sk-nul-2', { firstName: '\u0000' }),
          createChange('sk\u0000nul-3'),
          createChange('sk-nul-4', {}, { changeId: 'c\u00004' }),
          { ...createChange('sk-nul-5'), timestamp: `${ts()}\u0000` },
          createChange('sk-nul-6', {}, { entityType: 'contacts\u0000' }),
          createChange('sk-sur-1', { notes: 'lone \ud800 surrogate' }),
          createChange('sk-\udc00-2'),
          createChange('sk-sur-3', { ['\u0000key']: 'x' }),
          good,
        ],
      });
      expect(answer, JSON.stringify(answer).slice(0, 300)).toMatchObject({ success: true });
      const acks = answer.data.acknowledged as Ack[];
      expect(acks.map((a) => a.status)).toEqual([...Array(9).fill('rejected'), 'applied']);
      expect(acks.slice(0, 9).every((a) => a.code === 'VALIDATION_FAILED')).toBe(true);
      expect(await latest()).toBe(before + 1);
      expect((await getContact(acks[9].serverId!)).body.data.firstName).toBe('N-sk-nul-ok');
    });
  });
});

/** The id of the default tenant (where ADMIN_KEY and the suite's agents live). */
async function defaultTenantId(app: TestApp): Promise<string> {
  const { rows } = await app.testDb.db.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'");
  expect(rows).toHaveLength(1);
  return rows[0].id;
}
