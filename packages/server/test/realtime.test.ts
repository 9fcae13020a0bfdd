import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '@fieldsync/protocol/errors';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, eventually, probe, quiet, refusedWith, type Probe } from './helpers/sockets.js';

/** Short enough that the deadline test is quick, long enough for a loaded CI machine to authenticate. */
const AUTH_TIMEOUT_MS = 1000;
const PASSWORD = 'correct horse battery staple';

describe.each(backends)('real-time gateway on %s', (backend) => {
  let app: TestApp;
  /** Agent A (with a password), agent B, and the admin of another tenant. */
  let a: { apiKey: string; agent: { id: string; agentCode: string } };
  let b: { apiKey: string; agent: { id: string; agentCode: string } };
  let otherTenantKey: string;
  /** An access token of agent A (logins cost an argon2 verification: one per suite). */
  let tokenA: string;
  /** Set by the graceful-close test, which closes the suite's app last. */
  let closed = false;
  let seq = 0;
  const deviceId = (name: string) => `${backend}-${name}-${++seq}`;

  const createContact = async (key: string, device: string | undefined, body: Record<string, unknown> = {}) => {
    const res = await app.api('POST', '/api/contacts', {
      key,
      headers: device ? { 'x-device-id': device } : {},
      body: { firstName: 'Rita', phonePrimary: uniquePhone(), ...body },
    });
    expect(res.status).toBe(201);
    return res.body.data;
  };
  const login = async (login: string, password = PASSWORD) => {
    const res = await app.api('POST', '/api/auth/login', { key: null, body: { login, password } });
    expect(res.status).toBe(200);
    return res.body.data.accessToken as string;
  };

  beforeAll(async () => {
    app = await startTestApp(backend, { SOCKET_AUTH_TIMEOUT_MS: String(AUTH_TIMEOUT_MS), AUTH_CACHE_MS: '0' });
    a = await createAgent(app, `RTA${backend}`, { password: PASSWORD });
    b = await createAgent(app, `RTB${backend}`);
    const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Elsewhere Inc', slug: `elsewhere-rt-${backend}` } });
    expect(tenant.status).toBe(201);
    otherTenantKey = tenant.body.data.apiKey;
    tokenA = await login(a.agent.agentCode);
  });
  afterAll(async () => {
    if (!closed) await app?.close();
  });

  describe('authentication', () => {
    it('admits a socket with an API key in the handshake and answers authenticated {user, deviceId}', async () => {
      const device = deviceId('key');
      const s = await authedProbe(app.url, { apiKey: a.apiKey, deviceId: device, agentCode: a.agent.agentCode });
      try {
        const [answer] = s.all('authenticated');
        expect(answer).toMatchObject({ user: { id: a.agent.id, agentCode: a.agent.agentCode, role: 'agent' }, deviceId: device });
        expect(answer.user.tenantId).toEqual(expect.any(String));
        // Admitted means in the tenant's room: a contact written over REST reaches it.
        const contact = await createContact(app.adminKey, undefined);
        await s.waitFor('contact_created', (p) => p.contact.id === contact.id);
      } finally {
        closeAll(s);
      }
    });

    it('admits a socket with a JWT from POST /api/auth/login and delivers changes to it', async () => {
      const device = deviceId('jwt');
      const s = await authedProbe(app.url, { token: tokenA, deviceId: device });
      try {
        expect(s.all('authenticated')[0]).toMatchObject({ user: { id: a.agent.id, agentCode: a.agent.agentCode }, deviceId: device });
        const contact = await createContact(b.apiKey, undefined);
        const changes = await s.waitFor('changes', (p) => p.changes.some((c: { id: string }) => c.id === contact.id));
        expect(changes.changes[0]).toMatchObject({ collection: 'contacts', op: 'upsert', id: contact.id, version: contact.version });
      } finally {
        closeAll(s);
      }
    });

    it('answers deviceId null to a JWT socket that names no device', async () => {
      const s = await authedProbe(app.url, { token: tokenA });
      closeAll(s);
      expect(s.all('authenticated')[0]).toMatchObject({ user: { id: a.agent.id }, deviceId: null });
    });

    it('refuses bad handshake credentials with connect_error and an error code', async () => {
      const unknownKey = await refusedWith(app.url, { apiKey: 'fsk_not_a_real_key_0123456789abcdef', deviceId: 'x' });
      expect(unknownKey.data).toMatchObject({ error: 'UNAUTHORIZED' });
      const shortKey = await refusedWith(app.url, { apiKey: 'short', deviceId: 'x' });
      expect(shortKey.data).toMatchObject({ error: 'UNAUTHORIZED' });
      const badToken = await refusedWith(app.url, { token: 'not.a.jwt' });
      expect(badToken.data).toMatchObject({ error: 'UNAUTHORIZED' });
      const forged = await refusedWith(app.url, {
        token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4IiwidGlkIjoieSJ9.c2lnbmF0dXJlLWlzLXdyb25nLXdyb25nLXdyb25nLXc',
      });
      expect(forged.data).toMatchObject({ error: 'UNAUTHORIZED' });
      const wrongAgent = await refusedWith(app.url, { apiKey: a.apiKey, agentCode: b.agent.agentCode });
      expect(wrongAgent.data).toMatchObject({ error: 'UNAUTHORIZED' });
      const badDevice = await refusedWith(app.url, { apiKey: a.apiKey, deviceId: 'no spaces allowed' });
      expect(badDevice.data).toMatchObject({ error: 'UNAUTHORIZED' });
      const junk = await refusedWith(app.url, { user: 'admin', password: 'x' });
      expect(junk.data).toMatchObject({ error: 'UNAUTHORIZED' });
      const wrongType = await refusedWith(app.url, { token: 12345 });
      expect(wrongType.data).toMatchObject({ error: 'UNAUTHORIZED' });
    });

    it('authenticates through the authenticate event: auth_error for bad credentials, then authenticated', async () => {
      const device = deviceId('event');
      const s = probe(app.url);
      try {
        await s.waitFor('connect');
        const refused = await s.ack('authenticate', { apiKey: 'fsk_not_a_real_key_0123456789abcdef', deviceId: device });
        expect(refused).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
        expect(await s.waitFor('auth_error')).toMatchObject({ error: 'UNAUTHORIZED', message: expect.any(String) });
        expect(s.socket.connected).toBe(true);

        const answer = await s.ack('authenticate', { apiKey: b.apiKey, deviceId: device });
        expect(answer).toMatchObject({ success: true, data: { user: { id: b.agent.id, agentCode: b.agent.agentCode }, deviceId: device } });
        expect(await s.waitFor('authenticated')).toEqual(answer.data);

        const again = await s.ack('authenticate', { apiKey: b.apiKey, deviceId: device });
        expect(again).toMatchObject({ success: false, error: 'CONFLICT' });

        const contact = await createContact(a.apiKey, deviceId('writer'));
        await s.waitFor('contact_created', (p) => p.contact.id === contact.id);
      } finally {
        closeAll(s);
      }
    });

    it('authenticates through the authenticate event without an ack callback', async () => {
      const s = probe(app.url);
      try {
        await s.waitFor('connect');
        s.socket.emit('authenticate', { token: tokenA });
        expect(await s.waitFor('authenticated')).toMatchObject({ user: { id: a.agent.id }, deviceId: null });
      } finally {
        closeAll(s);
      }
    });

    it('sends nothing to a socket that never authenticates and disconnects it after the deadline, but keeps one that did', async () => {
      const lurker = probe(app.url);
      const late = probe(app.url); // authenticates by event, just before the lurker's deadline passes
      const control = await authedProbe(app.url, { apiKey: b.apiKey, deviceId: deviceId('control') });
      try {
        await Promise.all([lurker.waitFor('connect'), late.waitFor('connect')]);
        const connectedAt = Date.now();
        expect(await late.ack('authenticate', { apiKey: a.apiKey, deviceId: deviceId('late') })).toMatchObject({ success: true });
        const created = await createContact(a.apiKey, deviceId('writer'));
        await app.api('PATCH', `/api/contacts/${created.id}`, { key: a.apiKey, body: { notes: 'secret' } });
        await control.waitFor('contact_updated', (p) => p.contact.id === created.id);

        const reason = await lurker.waitFor('disconnect', () => true, { timeoutMs: AUTH_TIMEOUT_MS + 5000 });
        expect(reason).toBe('io server disconnect');
        expect(Date.now() - connectedAt).toBeGreaterThanOrEqual(AUTH_TIMEOUT_MS - 200);
        // The only thing it ever heard is why it was dropped.
        expect(lurker.dataEvents().map((r) => r.event)).toEqual(['auth_error']);
        expect(lurker.all('auth_error')[0]).toMatchObject({ error: 'UNAUTHORIZED' });

        // The one that authenticated in time outlives the deadline and still gets changes.
        await quiet(200);
        expect(late.socket.connected).toBe(true);
        expect(late.all('disconnect')).toEqual([]);
        const after = await createContact(b.apiKey, undefined);
        await late.waitFor('contact_created', (p) => p.contact.id === after.id);
      } finally {
        closeAll(lurker, late, control);
      }
    });

    it('refuses an inactive agent: connect_error FORBIDDEN by key or token, auth_error by event', async () => {
      const code = `RTX${backend}`;
      const x = await createAgent(app, code, { password: PASSWORD });
      const token = await login(code);
      // Active: admitted.
      closeAll(await authedProbe(app.url, { apiKey: x.apiKey, deviceId: deviceId('x') }));

      const patched = await app.api('PATCH', `/api/agents/${code}`, { body: { isActive: false } });
      expect(patched.status).toBe(200);

      expect((await refusedWith(app.url, { apiKey: x.apiKey, deviceId: deviceId('x') })).data).toMatchObject({ error: 'FORBIDDEN' });
      expect((await refusedWith(app.url, { token })).data).toMatchObject({ error: 'FORBIDDEN' });
      const s = probe(app.url);
      try {
        await s.waitFor('connect');
        expect(await s.ack('authenticate', { apiKey: x.apiKey })).toMatchObject({ success: false, error: 'FORBIDDEN' });
        expect(await s.waitFor('auth_error')).toMatchObject({ error: 'FORBIDDEN' });
        expect(await s.ack('sync:pull', { version: 0 })).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
      } finally {
        closeAll(s);
      }
    });
  });

  describe('fan-out of contact changes', () => {
    let d1: Probe; // agent A, the writer
    let d3: Probe; // agent A, another device
    let d2: Probe; // agent B
    let other: Probe; // another tenant
    let d1Id: string;
    let d2Id: string;
    let d3Id: string;

    beforeAll(async () => {
      [d1Id, d2Id, d3Id] = [deviceId('d1'), deviceId('d2'), deviceId('d3')];
      [d1, d3, d2, other] = await Promise.all([
        authedProbe(app.url, { apiKey: a.apiKey, deviceId: d1Id }),
        authedProbe(app.url, { apiKey: a.apiKey, deviceId: d3Id }),
        authedProbe(app.url, { apiKey: b.apiKey, deviceId: d2Id }),
        authedProbe(app.url, { apiKey: otherTenantKey, deviceId: deviceId('other') }),
      ]);
    });
    afterAll(() => closeAll(d1, d3, d2, other));

    const aboutContact = (id: string) => (p: any) =>
      p?.contact?.id === id || (Array.isArray(p?.changes) && p.changes.some((c: { id: string }) => c.id === id));

    /** After the positive controls arrived, the writer and the other tenant hear nothing about `id`. */
    const expectNoEcho = async (id: string) => {
      await quiet();
      expect(d1.dataEvents().filter((r) => aboutContact(id)(r.payload))).toEqual([]);
      expect(other.dataEvents().filter((r) => aboutContact(id)(r.payload))).toEqual([]);
    };

    it('pushes a created contact to the other agent and to the same agent on another device, as changes and contact_created', async () => {
      const contact = await createContact(a.apiKey, d1Id, { lastName: 'Levi', company: 'Acme' });
      for (const receiver of [d2, d3]) {
        const changes = await receiver.waitFor('changes', aboutContact(contact.id));
        expect(changes).toEqual({
          fromVersion: contact.version - 1,
          toVersion: contact.version,
          changes: [{ collection: 'contacts', op: 'upsert', id: contact.id, version: contact.version, data: contact }],
        });
        const created = await receiver.waitFor('contact_created', aboutContact(contact.id));
        expect(created).toEqual({ contact, version: contact.version, createdBy: a.agent.agentCode });
      }
      await expectNoEcho(contact.id);
    });

    it('pushes an update as changes and contact_updated {contact, version, updatedBy}', async () => {
      const contact = await createContact(a.apiKey, d1Id);
      const res = await app.api('PATCH', `/api/contacts/${contact.id}`, {
        key: a.apiKey,
        headers: { 'x-device-id': d1Id },
        body: { notes: 'prefers mornings', doNotCall: true },
      });
      expect(res.status).toBe(200);
      const updated = res.body.data;
      for (const receiver of [d2, d3]) {
        const event = await receiver.waitFor('contact_updated', aboutContact(contact.id));
        expect(event).toEqual({ contact: updated, version: updated.version, updatedBy: a.agent.agentCode });
        const changes = await receiver.waitFor('changes', (p) => p.toVersion === updated.version);
        expect(changes.changes).toEqual([{ collection: 'contacts', op: 'upsert', id: contact.id, version: updated.version, data: updated }]);
      }
      await expectNoEcho(contact.id);
    });

    it('pushes a delete as a delete change and contact_deleted {contact, version, deletedBy}', async () => {
      const contact = await createContact(a.apiKey, d1Id);
      const res = await app.api('DELETE', `/api/contacts/${contact.id}`, { key: a.apiKey, headers: { 'x-device-id': d1Id } });
      expect(res.status).toBe(204);
      for (const receiver of [d2, d3]) {
        const event = await receiver.waitFor('contact_deleted', aboutContact(contact.id));
        expect(event).toMatchObject({ contact: { id: contact.id, isDeleted: true }, deletedBy: a.agent.agentCode });
        expect(event.version).toBe(event.contact.version);
        expect(event.version).toBeGreaterThan(contact.version);
        const changes = await receiver.waitFor('changes', (p) => p.toVersion === event.version);
        expect(changes.changes).toEqual([{ collection: 'contacts', op: 'delete', id: contact.id, version: event.version, data: event.contact }]);
      }
      await expectNoEcho(contact.id);
    });

    it("records a delivered changes event as the device's checkpoint, beside its other facts, without a pull", async () => {
      const first = await createContact(a.apiKey, d1Id);
      await d2.waitFor('changes', (p) => p.toVersion === first.version);
      await d3.waitFor('changes', (p) => p.toVersion === first.version);
      // d3 also reports itself: its row gets a full update in the same flush as the delivery.
      d3.socket.emit('heartbeat', { networkType: 'wifi', appVersion: '9.9.9', osVersion: 'test' });
      const second = await createContact(a.apiKey, d1Id);
      await d2.waitFor('changes', (p) => p.toVersion === second.version);
      await d3.waitFor('changes', (p) => p.toVersion === second.version);
      for (const id of [d2Id, d3Id]) {
        const row = await app.api('GET', `/api/devices/${id}`);
        expect(row.status).toBe(200);
        expect(row.body.data).toMatchObject({ deviceId: id, lastSyncVersion: second.version });
      }
      expect((await app.api('GET', `/api/devices/${d3Id}`)).body.data).toMatchObject({ networkType: 'wifi', appVersion: '9.9.9' });
    });

    it('spares a socket that says seedEvents: false the contact events, not the changes, alone and beside scoped changes', async () => {
      const quietSocket = await authedProbe(app.url, { apiKey: b.apiKey, deviceId: deviceId('changes-only'), seedEvents: false });
      try {
        // A contact alone: every socket of the tenant gets one room broadcast.
        const contact = await createContact(a.apiKey, d1Id);
        await quietSocket.waitFor('changes', aboutContact(contact.id));
        await d2.waitFor('contact_created', aboutContact(contact.id));
        // A contact beside a space (scoped to its owner): the sockets are grouped one by one.
        const push = await app.api('POST', '/api/sync', {
          key: a.apiKey,
          body: {
            deviceId: d1Id,
            changes: [
              { entityType: 'contacts', operation: 'create', localId: 'c-1', timestamp: new Date().toISOString(), data: { firstName: 'Mixed', phonePrimary: uniquePhone() } },
              { entityType: 'spaces', operation: 'create', localId: 's-1', timestamp: new Date().toISOString(), data: { name: 'Mine' } },
            ],
          },
        });
        expect(push.status).toBe(200);
        const mixed = push.body.data.acknowledged[0].serverId as string;
        await quietSocket.waitFor('changes', aboutContact(mixed));
        await d2.waitFor('contact_created', aboutContact(mixed));
        await quiet();
        expect(quietSocket.all('contact_created')).toEqual([]);
        expect(quietSocket.all('changes').filter(aboutContact(contact.id))).toHaveLength(1);
      } finally {
        closeAll(quietSocket);
      }
    });

    it('echoes to every device when the writer names no device, but never to another tenant', async () => {
      const contact = await createContact(a.apiKey, undefined);
      for (const receiver of [d1, d2, d3]) await receiver.waitFor('contact_created', aboutContact(contact.id));
      await quiet();
      expect(other.dataEvents().filter((r) => aboutContact(contact.id)(r.payload))).toEqual([]);
    });

    it("delivers another tenant's changes to its own sockets only", async () => {
      const contact = await createContact(otherTenantKey, undefined);
      await other.waitFor('contact_created', aboutContact(contact.id));
      await quiet();
      for (const s of [d1, d2, d3]) expect(s.dataEvents().filter((r) => aboutContact(contact.id)(r.payload))).toEqual([]);
    });

    it('delivers quick successive writes in version order, each fromVersion chaining to the previous toVersion', async () => {
      const before = (await app.api('GET', '/api/sync/delta?version=0&limit=1')).body.data.latestVersion as number;
      const mark = d2.received.length;
      const headers = { 'x-device-id': d1Id };
      // Concurrent creates, then concurrent updates of what they created, then a bulk insert.
      const created = await Promise.all(Array.from({ length: 8 }, () => createContact(a.apiKey, d1Id)));
      await Promise.all(
        created.map((c, i) => app.api('PATCH', `/api/contacts/${c.id}`, { key: a.apiKey, headers, body: { notes: `note ${i}` } })),
      );
      const bulk = await app.api('POST', '/api/contacts/bulk', {
        key: a.apiKey,
        headers,
        body: Array.from({ length: 5 }, (_, i) => ({ firstName: `Bulk${i}`, phonePrimary: uniquePhone() })),
      });
      expect(bulk.body.data.created).toBe(5);
      const after = (await app.api('GET', '/api/sync/delta?version=0&limit=1')).body.data.latestVersion as number;
      expect(after).toBe(before + 8 + 8 + 5);

      await d2.waitFor('changes', (p) => p.toVersion === after, { from: mark });
      // An event of an earlier test's write may still arrive after the mark: only this test's count.
      const events = d2.all('changes', mark).filter((e: { toVersion: number }) => e.toVersion > before);
      expect(events[0].fromVersion).toBe(before);
      for (let k = 1; k < events.length; k++) expect(events[k].fromVersion).toBe(events[k - 1].toVersion);
      for (const e of events) {
        expect(e.changes.map((c: { version: number }) => c.version)).toEqual(
          Array.from({ length: e.toVersion - e.fromVersion }, (_, i) => e.fromVersion + 1 + i),
        );
      }
      expect(events.flatMap((e) => e.changes).length).toBe(after - before);
      const bulkEvent = events.at(-1);
      expect(bulkEvent.changes).toHaveLength(5);
      // The same-agent device saw the same sequence.
      await d3.waitFor('changes', (p) => p.toVersion === after);
      expect(d3.all('changes').filter((e) => e.toVersion > before).map((e) => [e.fromVersion, e.toVersion])).toEqual(
        events.map((e) => [e.fromVersion, e.toVersion]),
      );
      // And the writer none of it.
      await quiet();
      expect(d1.all('changes').filter((e) => e.toVersion > before)).toEqual([]);
    });

    it("pushes a private space's records to its members only: the owner's other devices, a collaborator while added", async () => {
      const headers = { 'x-device-id': d1Id };
      const write = async (method: string, path: string, body?: unknown) => {
        const res = await app.api(method, path, { key: a.apiKey, headers, body });
        expect(res.status, res.text).toBeLessThan(300);
        return res.body?.data;
      };
      const ids = (e: { changes: { id: string }[] }) => e.changes.map((c) => c.id);
      /** The events of the commit that wrote `version` (a scope change adds versions after it). */
      const ofCommit = (version: number) => (p: { fromVersion: number; toVersion: number }) => p.fromVersion < version && version <= p.toVersion;
      const mark = { d2: d2.received.length, other: other.received.length };

      const space = await write('POST', '/api/spaces', { name: 'Private leads' });
      const item = await write('POST', '/api/items', { spaceId: space.id, title: 'Call back Tuesday' });
      // The owner's other device gets both; the other agent learns only that the versions were used.
      expect(ids(await d3.waitFor('changes', (p) => p.toVersion === space.version))).toEqual([space.id]);
      expect(ids(await d3.waitFor('changes', (p) => p.toVersion === item.version))).toEqual([item.id]);
      expect(ids(await d2.waitFor('changes', (p) => p.toVersion === space.version))).toEqual([]);
      expect(ids(await d2.waitFor('changes', (p) => p.toVersion === item.version))).toEqual([]);

      // Added as a collaborator: the space and everything in it arrive, then new items too.
      const shared = await write('PATCH', `/api/spaces/${space.id}`, { collaborators: [{ userId: b.agent.id, role: 'viewer' }] });
      await d2.waitFor('changes', (p) => ofCommit(shared.version)(p) && ids(p).includes(item.id), { from: mark.d2 });
      const granted = d2.all('changes', mark.d2).filter(ofCommit(shared.version)).flatMap(ids);
      expect(granted).toEqual(expect.arrayContaining([space.id, item.id]));
      const second = await write('POST', '/api/items', { spaceId: space.id, title: 'Send brochure' });
      expect(ids(await d2.waitFor('changes', (p) => p.toVersion === second.version))).toEqual([second.id]);

      // Removed: its copies are deleted, and later items no longer arrive.
      const unshared = await write('PATCH', `/api/spaces/${space.id}`, { collaborators: [] });
      await d2.waitFor('changes', (p) => ofCommit(unshared.version)(p) && p.changes.some((c: { op: string }) => c.op === 'delete'), { from: mark.d2 });
      const revoked = d2
        .all('changes', mark.d2)
        .filter(ofCommit(unshared.version))
        .flatMap((e) => e.changes)
        .filter((c: { op: string }) => c.op === 'delete')
        .map((c: { id: string }) => c.id);
      expect(revoked).toEqual(expect.arrayContaining([space.id, item.id, second.id]));
      const third = await write('POST', '/api/items', { spaceId: space.id, title: 'Private again' });
      await d3.waitFor('changes', (p) => p.toVersion === third.version);
      expect(ids(await d2.waitFor('changes', (p) => p.toVersion === third.version))).toEqual([]);

      // What the sockets delivered agrees with what B may pull.
      const pulled = (await app.api('GET', `/api/sync/delta?version=${second.version}`, { key: b.apiKey })).body.data.changes;
      expect(pulled.filter((c: { id: string; op: string }) => c.id === third.id)).toEqual([]);
      await quiet();
      expect(other.dataEvents(mark.other)).toEqual([]);
      expect(d1.all('changes').filter((e) => [space.id, item.id, second.id, third.id].some((id) => ids(e).includes(id)))).toEqual([]);
    });
  });

  describe('sync:pull', () => {
    let s: Probe;
    let device: string;
    beforeAll(async () => {
      device = deviceId('puller');
      s = await authedProbe(app.url, { apiKey: b.apiKey, deviceId: device });
      for (let i = 0; i < 3; i++) await createContact(a.apiKey, undefined);
    });
    afterAll(() => closeAll(s));

    it('answers what GET /api/sync/delta returns, for a full pull, a page and a collection filter', async () => {
      const rest = (query: string) => app.api('GET', `/api/sync/delta?${query}`, { key: b.apiKey, headers: { 'x-device-id': device } });
      const full = await s.ack('sync:pull', { version: 0 });
      expect(full).toEqual({ success: true, data: (await rest('version=0')).body.data });
      expect(full.data.changes.length).toBeGreaterThanOrEqual(3);

      const page = await s.ack('sync:pull', { version: 1, limit: 2 });
      expect(page).toEqual({ success: true, data: (await rest('version=1&limit=2')).body.data });
      expect(page.data).toMatchObject({ hasMore: true });
      expect(page.data.changes).toHaveLength(2);

      const next = await s.ack('sync:pull', { version: page.data.nextVersion, limit: 2, collections: ['contacts'] });
      expect(next).toEqual({ success: true, data: (await rest(`version=${page.data.nextVersion}&limit=2&collections=contacts`)).body.data });

      const latest = full.data.latestVersion;
      const empty = await s.ack('sync:pull', { version: latest });
      expect(empty).toEqual({ success: true, data: (await rest(`version=${latest}`)).body.data });
      expect(empty.data.changes).toEqual([]);
    });

    it('records the pull as the device checkpoint', async () => {
      const { data } = await s.ack('sync:pull', { version: 0 });
      await s.ack('sync:pull', { version: data.latestVersion });
      const row = await app.api('GET', `/api/devices/${device}`);
      expect(row.status).toBe(200);
      expect(row.body.data).toMatchObject({ deviceId: device, lastSyncVersion: data.latestVersion, agentCode: b.agent.agentCode });
    });

    it('acks a 400 envelope for invalid payloads and keeps serving the socket', async () => {
      const invalid: unknown[] = [
        null,
        'version=0',
        42,
        [],
        {},
        { version: -1 },
        { version: '0' },
        { version: 1.5 },
        { version: 1e300 },
        { version: 0, limit: 0 },
        { version: 0, limit: 5001 },
        { version: 0, extra: true },
        { version: 0, collections: 'contacts' },
        { version: 0, collections: ['no-such-collection'] },
      ];
      for (const payload of invalid) {
        const answer = await s.ack('sync:pull', payload);
        expect(answer, JSON.stringify(payload)).toMatchObject({ success: false, error: expect.any(String), message: expect.any(String) });
        expect(ErrorCodes[answer.error as keyof typeof ErrorCodes], JSON.stringify([payload, answer])).toBe(400);
      }
      // A request without an ack callback is not a crash either.
      const untyped = s.socket.emit.bind(s.socket) as (event: string, ...args: unknown[]) => void;
      untyped('sync:pull', { version: -5 });
      untyped('sync:pull');
      untyped('heartbeat', { battery: -1 });
      expect(await s.ack('sync:pull', { version: 0, limit: 1 })).toMatchObject({ success: true, data: { changes: [expect.any(Object)] } });
      expect(s.socket.connected).toBe(true);
    });

    it('acks UNAUTHORIZED to sync:pull and heartbeat before authentication, then serves after it', async () => {
      const early = probe(app.url);
      try {
        await early.waitFor('connect');
        expect(await early.ack('sync:pull', { version: 0 })).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
        expect(await early.ack('heartbeat', { networkType: 'wifi' })).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
        await early.ack('authenticate', { apiKey: a.apiKey });
        expect(await early.ack('sync:pull', { version: 0, limit: 1 })).toMatchObject({ success: true });
      } finally {
        closeAll(early);
      }
    });
  });

  describe('heartbeat and presence', () => {
    const device = (id: string) => app.api('GET', `/api/devices/${id}`);

    it('updates the device row from heartbeat; online while connected, offline after disconnect', async () => {
      const id = deviceId('hb');
      const s = await authedProbe(app.url, { apiKey: a.apiKey, deviceId: id });
      try {
        const answer = await s.ack('heartbeat', { networkType: 'wifi', appVersion: '2.4.1', osVersion: 'Android 14', battery: 63 });
        expect(answer).toMatchObject({ success: true, data: { serverTime: expect.any(String) } });
        expect(Number.isNaN(Date.parse(answer.data.serverTime))).toBe(false);
        const row = await device(id);
        expect(row.status).toBe(200);
        expect(row.body.data).toMatchObject({
          deviceId: id,
          userId: a.agent.id,
          agentCode: a.agent.agentCode,
          networkType: 'wifi',
          appVersion: '2.4.1',
          osVersion: 'Android 14',
          battery: 63,
          online: true,
        });
        expect(row.body.data.lastSeenAt).toEqual(expect.any(String));

        // A later heartbeat changes only what it names.
        await s.ack('heartbeat', { networkType: 'cellular' });
        expect((await device(id)).body.data).toMatchObject({ networkType: 'cellular', appVersion: '2.4.1', battery: 63 });
      } finally {
        closeAll(s);
      }
      await eventually(async () => (await device(id)).body.data.online === false);
    });

    it('rejects an invalid heartbeat with a 400 envelope and changes nothing', async () => {
      const id = deviceId('hb-bad');
      const s = await authedProbe(app.url, { apiKey: a.apiKey, deviceId: id });
      try {
        await s.ack('heartbeat', { networkType: 'wifi', battery: 50 });
        for (const payload of [{ battery: 101 }, { battery: 'full' }, { networkType: 'x'.repeat(33) }, { imei: '123' }, 'wifi']) {
          const answer = await s.ack('heartbeat', payload);
          expect(answer, JSON.stringify(payload)).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
        }
        expect((await device(id)).body.data).toMatchObject({ networkType: 'wifi', battery: 50 });
        expect(await s.ack('heartbeat', {})).toMatchObject({ success: true });
      } finally {
        closeAll(s);
      }
    });

    it('keeps a device online until its last socket disconnects', async () => {
      const id = deviceId('twice');
      const first = await authedProbe(app.url, { apiKey: a.apiKey, deviceId: id });
      const second = await authedProbe(app.url, { token: tokenA, deviceId: id });
      try {
        expect((await device(id)).body.data.online).toBe(true);
        const firstId = first.socket.id as string;
        first.close();
        await eventually(async () => !app.built.gateway.io.of('/').sockets.has(firstId));
        expect((await device(id)).body.data.online).toBe(true);
      } finally {
        closeAll(first, second);
      }
      await eventually(async () => (await device(id)).body.data.online === false);
    });

    it('does not leave a device online after racing authenticate events', async () => {
      const id = deviceId('race');
      const s = probe(app.url);
      try {
        await s.waitFor('connect');
        const answers = await Promise.all([
          s.ack('authenticate', { apiKey: a.apiKey, deviceId: id }),
          s.ack('authenticate', { apiKey: a.apiKey, deviceId: id }),
          s.ack('authenticate', { apiKey: a.apiKey, deviceId: id }),
        ]);
        expect(answers.filter((x) => x.success)).toHaveLength(1);
        expect(answers.filter((x) => !x.success).map((x) => x.error)).toEqual(['CONFLICT', 'CONFLICT']);
        expect((await device(id)).body.data.online).toBe(true);
      } finally {
        closeAll(s);
      }
      await eventually(async () => (await device(id)).body.data.online === false);
    });

    it('does not admit a socket that hung up while its credentials were being checked', async () => {
      const id = deviceId('gone');
      const fresh = await createAgent(app, `RTG${backend}`);
      const s = probe(app.url);
      await s.waitFor('connect');
      // Hold every database connection so the key lookup of `authenticate` waits until the socket is gone.
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const connections = backend === 'postgres' ? 10 : 1;
      let holding = 0;
      const holders = Array.from({ length: connections }, () =>
        app.testDb.db.transaction(async () => {
          holding++;
          await gate;
        }),
      );
      try {
        await eventually(async () => holding === connections);
        s.socket.emit('authenticate', { apiKey: fresh.apiKey, deviceId: id });
        if (backend === 'postgres') await eventually(async () => app.testDb.db.poolStats().waiting > 0);
        else await quiet(100);
        s.close();
        await quiet(100); // for the server to process the hang-up
      } finally {
        release();
        await Promise.all(holders);
      }
      // The lookup finishes now; the socket it was for is gone, so nothing records the device.
      await quiet(100);
      const row = await app.api('GET', `/api/devices/${id}`);
      expect(row.status === 200 ? row.body.data : 'no such device').toBe('no such device');
    });
  });

  // Last: it closes the suite's app.
  describe('graceful close', () => {
    it('emits server_shutdown {reconnect: true} to connected sockets before disconnecting them', async () => {
      const sockets: Probe[] = [];
      try {
        sockets.push(await authedProbe(app.url, { apiKey: a.apiKey, deviceId: deviceId('shutdown') }));
        sockets.push(await authedProbe(app.url, { token: tokenA }));
        const unauthenticated = probe(app.url);
        await unauthenticated.waitFor('connect');
        const refused = probe(app.url, { auth: { apiKey: 'fsk_not_a_real_key_0123456789abcdef' } });
        await refused.waitFor('connect_error');

        const started = Date.now();
        closed = true;
        await app.close();
        expect(Date.now() - started).toBeLessThan(5000);

        for (const s of sockets) {
          await s.waitFor('disconnect');
          const order = s.received.map((r) => r.event).filter((e) => e === 'server_shutdown' || e === 'disconnect');
          expect(order).toEqual(['server_shutdown', 'disconnect']);
          expect(s.all('server_shutdown')[0]).toMatchObject({ reconnect: true, retryAfterMs: expect.any(Number) });
          expect(s.all('disconnect')[0]).toBe('io server disconnect');
        }
        await unauthenticated.waitFor('disconnect');
        closeAll(unauthenticated, refused);
      } finally {
        closeAll(...sockets);
      }
    });
  });
});
