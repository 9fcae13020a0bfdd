import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevicesService } from '../src/modules/devices/devices.service.js';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

interface DeviceWire {
  deviceId: string;
  userId: string | null;
  agentCode: string | null;
  platform: string | null;
  appVersion: string | null;
  osVersion: string | null;
  networkType: string | null;
  battery: number | null;
  lastSyncVersion: number;
  lastSyncAt: string | null;
  lastSeenAt: string | null;
  syncStatus: string;
  changesCount: number;
  syncCount: number;
  versionsBehind: number;
  online: boolean;
}

const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(backends)('devices on %s', (backend) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  let tenantSeq = 0;
  /** A fresh tenant with its admin key: its device list holds only what the test made. */
  const newTenant = async () => {
    const slug = `dev-${backend}-${++tenantSeq}`;
    const res = await app.api('POST', '/api/tenants', { body: { name: `Devices ${slug}`, slug } });
    expect(res.status).toBe(201);
    const key = res.body.data.apiKey as string;
    const tenantId = res.body.data.tenant.id as string;
    const me = await app.api('GET', '/api/agents', { key });
    const admin = (me.body.data as { id: string; agentCode: string }[]).find((u) => u.agentCode === 'admin');
    /** The tenant's latest version now (tenant_versions). */
    const latest = async () => {
      const { rows } = await app.testDb.db.query<{ current_version: number }>('SELECT current_version FROM tenant_versions WHERE tenant_id = $1', [
        tenantId,
      ]);
      return Number(rows[0].current_version);
    };
    return {
      key,
      tenantId,
      adminUserId: admin?.id,
      /**
       * The tenant's version once created, before the test writes anything: the team directory is
       * a synced collection (SPEC §8), so the admin's entry took the first version.
       */
      base: await latest(),
      latest,
      api: (method: string, path: string, opts: { body?: unknown; headers?: Record<string, string>; key?: string } = {}) =>
        app.api(method, path, { key, ...opts }),
      /** Creates `n` contacts in one write: the tenant's latest version moves by `n`. */
      async addContacts(n: number) {
        const res = await app.api('POST', '/api/contacts/bulk', {
          key,
          body: Array.from({ length: n }, (_, i) => ({ firstName: `D${i}`, phonePrimary: uniquePhone() })),
        });
        expect(res.status).toBe(200);
        expect(res.body.data.created).toBe(n);
      },
      /**
       * A delta pull of contacts as device `deviceId` (header) from `version`: the directory's
       * versions (users, SPEC §8) are passed over, so changes are the test's contacts.
       */
      async pullAs(deviceId: string, version: number, headers: Record<string, string> = {}, pullKey = key, limit = 1000) {
        const res = await app.api('GET', `/api/sync/delta?version=${version}&limit=${limit}&collections=contacts`, {
          key: pullKey,
          headers: { 'x-device-id': deviceId, ...headers },
        });
        expect(res.status, res.text).toBe(200);
        return res.body.data as { changes: unknown[]; latestVersion: number; nextVersion: number };
      },
      async device(deviceId: string) {
        const res = await app.api('GET', `/api/devices/${encodeURIComponent(deviceId)}`, { key });
        expect(res.status, res.text).toBe(200);
        return res.body.data as DeviceWire;
      },
      async list(path = '/api/devices') {
        const res = await app.api('GET', path, { key });
        expect(res.status, res.text).toBe(200);
        return res.body.data as DeviceWire[];
      },
    };
  };

  it('records a pull with X-Device-Id: checkpoint = the nextVersion given, sync and change counts, header facts', async () => {
    const t = await newTenant();
    const b = t.base;
    await t.addContacts(5);
    const before = Date.now();
    const first = await t.pullAs('phone-1', b + 2, {
      'x-platform': 'ios',
      'x-app-version': '2.4.1',
      'x-os-version': '17.4',
      'x-network-type': 'wifi',
    });
    expect(first.changes).toHaveLength(3);
    const d1 = await t.device('phone-1');
    expect(d1).toEqual({
      deviceId: 'phone-1',
      userId: t.adminUserId,
      agentCode: 'admin',
      platform: 'ios',
      appVersion: '2.4.1',
      osVersion: '17.4',
      networkType: 'wifi',
      battery: null,
      lastSyncVersion: b + 5,
      lastSyncAt: expect.stringMatching(ISO_RE),
      lastSeenAt: expect.stringMatching(ISO_RE),
      syncStatus: 'ok',
      changesCount: 3,
      syncCount: 1,
      errorCount: 0,
      versionsBehind: 0,
      online: false,
      healthScore: 100,
    });
    expect(Date.parse(d1.lastSyncAt!)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(d1.lastSyncAt!)).toBeLessThanOrEqual(Date.now() + 1000);

    // The next pull moves the checkpoint and adds to the counters; facts not sent are kept.
    const second = await t.pullAs('phone-1', first.nextVersion, { 'x-network-type': 'cellular' });
    expect(second.changes).toHaveLength(0);
    const d2 = await t.device('phone-1');
    expect(d2).toMatchObject({
      lastSyncVersion: b + 5,
      syncCount: 2,
      changesCount: 3,
      versionsBehind: 0,
      platform: 'ios',
      appVersion: '2.4.1',
      osVersion: '17.4',
      networkType: 'cellular',
    });
    expect(Date.parse(d2.lastSyncAt!)).toBeGreaterThanOrEqual(Date.parse(d1.lastSyncAt!));

    // A full re-sync is given everything again: the checkpoint stays where it was, never back.
    const third = await t.pullAs('phone-1', 0);
    expect(third.changes).toHaveLength(5);
    expect(await t.device('phone-1')).toMatchObject({ lastSyncVersion: b + 5, syncCount: 3, changesCount: 8, versionsBehind: 0 });
    // A page that stops short leaves the device behind by what it has not been given.
    await t.addContacts(4);
    await t.pullAs('phone-2', 0, {}, t.key, 6);
    expect(await t.device('phone-2')).toMatchObject({ lastSyncVersion: b + 6, versionsBehind: 3 });
  });

  it('counts every pull of a burst exactly once (write-behind coalescing loses nothing)', async () => {
    const t = await newTenant();
    const b = t.base;
    await t.addContacts(4);
    await Promise.all(Array.from({ length: 10 }, () => t.pullAs('burst', b + 1, {}, t.key, 2)));
    expect(await t.device('burst')).toMatchObject({ syncCount: 10, changesCount: 20, lastSyncVersion: b + 3, versionsBehind: 1 });
    // Interleaved with reads that flush in between.
    for (let i = 0; i < 3; i++) {
      await t.pullAs('burst', b + 4);
      await t.list();
    }
    expect(await t.device('burst')).toMatchObject({ syncCount: 13, changesCount: 20, lastSyncVersion: b + 4, versionsBehind: 0 });
  });

  it('writes the device row behind, without waiting for a device read', async () => {
    const t = await newTenant();
    await t.pullAs('behind-1', 0, { 'x-platform': 'android' });
    // The test app flushes every 50 ms; the row must reach the table on its own.
    let rows: { last_sync_version: number; sync_count: number; platform: string }[] = [];
    for (let waited = 0; waited < 5000 && rows.length === 0; waited += 25) {
      await sleep(25);
      rows = (
        await app.testDb.db.query<{ last_sync_version: number; sync_count: number; platform: string }>(
          'SELECT last_sync_version, sync_count, platform FROM devices WHERE tenant_id = $1 AND device_id = $2',
          [t.tenantId, 'behind-1'],
        )
      ).rows;
    }
    // A tenant without contacts is at its directory's version (SPEC §8): the checkpoint given.
    expect(rows).toEqual([{ last_sync_version: t.base, sync_count: 1, platform: 'android' }]);
  });

  it('records the device named by the deviceId query parameter, the header winning when both are sent', async () => {
    const t = await newTenant();
    const b = t.base;
    await t.addContacts(2);
    const res = await t.api('GET', `/api/sync/delta?version=${b + 1}&deviceId=web-client.7`);
    expect(res.status).toBe(200);
    expect(await t.device('web-client.7')).toMatchObject({ lastSyncVersion: b + 2, syncCount: 1, changesCount: 1 });
    const both = await t.api('GET', `/api/sync/delta?version=${b + 2}&deviceId=query-dev`, { headers: { 'x-device-id': 'header-dev' } });
    expect(both.status).toBe(200);
    expect(await t.device('header-dev')).toMatchObject({ lastSyncVersion: b + 2, syncCount: 1 });
    expect((await t.api('GET', '/api/devices/query-dev')).status).toBe(404);
  });

  it('records nothing for a pull that names no device', async () => {
    const t = await newTenant();
    await t.addContacts(1);
    expect((await t.api('GET', '/api/sync/delta?version=0')).status).toBe(200);
    expect(await t.list()).toEqual([]);
  });

  it("records the pulling agent's code and user id on its device", async () => {
    const t = await newTenant();
    const { apiKey, agent } = await createAgent(app, 'FIELD7', {}, t.key);
    // The agent's directory entry took a version (SPEC §8): count from after it.
    const setup = await t.latest();
    await t.addContacts(2);
    await t.pullAs('agent-phone', 0, { 'x-platform': 'android' }, apiKey);
    expect(await t.device('agent-phone')).toMatchObject({
      deviceId: 'agent-phone',
      agentCode: 'FIELD7',
      userId: agent.id,
      platform: 'android',
      lastSyncVersion: setup + 2,
      changesCount: 2,
    });
  });

  it('lists devices to admins and managers only: an agent gets 403, no credentials 401', async () => {
    const t = await newTenant();
    const agent = await createAgent(app, 'AG1', {}, t.key);
    const manager = await createAgent(app, 'MGR1', { role: 'manager' }, t.key);
    await t.pullAs('list-a', 0, { 'x-platform': 'ios' });
    await t.pullAs('list-b', 0, {}, agent.apiKey);

    const asAdmin = await t.list();
    expect(asAdmin.map((d) => d.deviceId).sort()).toEqual(['list-a', 'list-b']);
    expect(asAdmin.find((d) => d.deviceId === 'list-a')).toMatchObject({ platform: 'ios', agentCode: 'admin', syncCount: 1 });
    expect(asAdmin.find((d) => d.deviceId === 'list-b')).toMatchObject({ agentCode: 'AG1', syncCount: 1 });
    // Most recently seen first.
    expect(asAdmin.map((d) => d.deviceId)).toEqual(['list-b', 'list-a']);

    const asManager = await t.api('GET', '/api/devices', { key: manager.apiKey });
    expect(asManager.status).toBe(200);
    expect(asManager.body).toEqual({ success: true, data: asAdmin });
    expect((await t.api('GET', '/api/devices/list-a', { key: manager.apiKey })).status).toBe(200);
    expect((await t.api('GET', '/api/devices/outdated?threshold=0', { key: manager.apiKey })).status).toBe(200);

    for (const path of ['/api/devices', '/api/devices/list-b', '/api/devices/outdated?threshold=0']) {
      const asAgent = await t.api('GET', path, { key: agent.apiKey });
      expect(asAgent.status, path).toBe(403);
      expect(asAgent.body).toMatchObject({ success: false, error: 'FORBIDDEN' });
      const anonymous = await app.api('GET', path, { key: null });
      expect(anonymous.status, path).toBe(401);
    }
  });

  it("answers 404 for an unknown device and for another tenant's device, and never lists it", async () => {
    const a = await newTenant();
    const b = await newTenant();
    await a.addContacts(3);
    await a.pullAs('shared-name', a.base + 1, { 'x-platform': 'ios' });
    await a.pullAs('only-in-a', 0);

    const unknown = await a.api('GET', '/api/devices/no-such-device');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ success: false, error: 'NOT_FOUND' });

    const foreign = await b.api('GET', '/api/devices/only-in-a');
    expect(foreign.status).toBe(404);
    expect(foreign.body).toMatchObject({ success: false, error: 'NOT_FOUND' });
    expect(await b.list()).toEqual([]);
    expect(await b.list('/api/devices/outdated?threshold=0')).toEqual([]);

    // The same device id in another tenant is another device.
    await b.pullAs('shared-name', 0, { 'x-platform': 'android' });
    // b has no contacts: its device is at b's directory version (SPEC §8), a's at its contacts'.
    expect(await b.device('shared-name')).toMatchObject({ platform: 'android', lastSyncVersion: b.base, syncCount: 1, versionsBehind: 0 });
    expect(await a.device('shared-name')).toMatchObject({ platform: 'ios', lastSyncVersion: a.base + 3, syncCount: 1, versionsBehind: 0 });
  });

  it('lists as outdated exactly the devices more than `threshold` versions behind', async () => {
    const t = await newTenant();
    // Each device is at the version it was given: before the writes, or by pages that stop short.
    await t.pullAs('at-0', 0);
    await t.addContacts(10);
    await t.pullAs('at-6', 0, {}, t.key, 6);
    await t.pullAs('at-9', 0, {}, t.key, 9);
    await t.pullAs('at-10', 0);
    const ids = (devices: DeviceWire[]) => devices.map((d) => d.deviceId).sort();

    expect(ids(await t.list('/api/devices/outdated?threshold=4'))).toEqual(['at-0']);
    expect(ids(await t.list('/api/devices/outdated?threshold=3'))).toEqual(['at-0', 'at-6']);
    expect(ids(await t.list('/api/devices/outdated?threshold=0'))).toEqual(['at-0', 'at-6', 'at-9']);
    expect(ids(await t.list('/api/devices/outdated?threshold=9'))).toEqual(['at-0']);
    expect(ids(await t.list('/api/devices/outdated?threshold=10'))).toEqual([]);
    // Default threshold: 100.
    expect(await t.list('/api/devices/outdated')).toEqual([]);

    const outdated = await t.list('/api/devices/outdated?threshold=0');
    expect(Object.fromEntries(outdated.map((d) => [d.deviceId, d.versionsBehind]))).toEqual({ 'at-0': 10, 'at-6': 4, 'at-9': 1 });

    // 100 more changes: at-10 is exactly 100 behind, not more.
    await t.addContacts(100);
    expect(ids(await t.list('/api/devices/outdated'))).toEqual(['at-0', 'at-6', 'at-9']);
    expect(ids(await t.list('/api/devices/outdated?threshold=99'))).toEqual(['at-0', 'at-10', 'at-6', 'at-9']);
    // A device that catches up leaves the list.
    await t.pullAs('at-0', t.base + 110);
    expect(ids(await t.list('/api/devices/outdated'))).toEqual(['at-6', 'at-9']);

    for (const bad of ['-1', 'abc', '1.5']) {
      const res = await t.api('GET', `/api/devices/outdated?threshold=${bad}`);
      expect(res.status, bad).toBe(400);
      expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
    }
  });

  it('rejects an invalid X-Device-Id with a 400 and records nothing', async () => {
    const t = await newTenant();
    for (const bad of ['has space', 'slash/id', 'x'.repeat(129), 'emoji-\u00e9', '']) {
      const res = await app.api('GET', '/api/sync/delta?version=0', { key: t.key, headers: { 'x-device-id': bad } });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED', details: [{ field: 'X-Device-Id' }] });
    }
    const badQuery = await t.api('GET', '/api/sync/delta?version=0&deviceId=has%20space');
    expect(badQuery.status).toBe(400);
    expect(await t.list()).toEqual([]);
    // The longest valid id is fine.
    const longest = 'a'.repeat(128);
    await t.pullAs(longest, 0);
    expect((await t.device(longest)).deviceId).toBe(longest);
  });

  it('ignores device facts in headers longer than the protocol allows, keeping the stored ones', async () => {
    const t = await newTenant();
    await t.pullAs('facts', 0, { 'x-platform': 'ios', 'x-network-type': 'wifi' });
    await t.pullAs('facts', 0, { 'x-platform': 'p'.repeat(65), 'x-network-type': 'n'.repeat(33), 'x-app-version': '3.0.0' });
    expect(await t.device('facts')).toMatchObject({ platform: 'ios', networkType: 'wifi', appVersion: '3.0.0', syncCount: 2 });
  });

  it('flushes pending device updates on stop, and keeps updates recorded while a flush is writing', async () => {
    const errors: unknown[] = [];
    // A second tracker over the same database, never started: only flush and stop write.
    const devices = createDevicesService({ db: app.testDb.db, flushMs: 60_000, onError: (e) => errors.push(e) });
    const t = await newTenant();
    const who = { tenantId: t.tenantId, deviceId: 'unit-dev' };
    devices.recordSync(who, { version: 3, changes: 2, ok: true }, { platform: 'ios', battery: 55 });
    const flushing = devices.flush();
    devices.recordSync(who, { version: 4, changes: 1, ok: true });
    await flushing;
    devices.recordSync(who, { version: 7, changes: 5, ok: false }, { networkType: '4g' });
    devices.recordSeen(who, { battery: 40 });
    await devices.stop();
    expect(errors).toEqual([]);
    const row = await t.device('unit-dev');
    expect(row).toMatchObject({
      lastSyncVersion: 7,
      syncCount: 3,
      changesCount: 8,
      syncStatus: 'error',
      platform: 'ios',
      networkType: '4g',
      battery: 40,
    });
    // A heartbeat alone updates facts and last seen, never the checkpoint.
    devices.recordSeen(who, { networkType: 'wifi' });
    await devices.flush();
    expect(await t.device('unit-dev')).toMatchObject({ lastSyncVersion: 7, syncCount: 3, syncStatus: 'error', networkType: 'wifi' });
  });
});
