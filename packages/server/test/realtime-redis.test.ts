import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, quiet, type Probe } from './helpers/sockets.js';

interface Deployment {
  name: string;
  backend: Backend;
  /** Set: both instances fan out through this Redis; unset: each instance only to its own sockets. */
  redisUrl?: string;
}

// Built from what this machine has, so a suite with nothing to run is simply not generated.
const deployments: Deployment[] = [{ name: 'the in-process adapter on PGlite', backend: 'pglite' }];
if (process.env.TEST_DATABASE_URL && process.env.TEST_REDIS_URL) {
  deployments.push({ name: 'the Redis adapter on PostgreSQL', backend: 'postgres', redisUrl: process.env.TEST_REDIS_URL });
}

describe.each(deployments)('two instances of one deployment with $name', ({ backend, redisUrl }) => {
  const crossesInstances = redisUrl !== undefined;
  let one: TestApp;
  let two: TestApp;
  let twoClosed = false;
  let writer: { apiKey: string; agent: { id: string; agentCode: string } };
  let reader: { apiKey: string; agent: { id: string; agentCode: string } };
  let seq = 0;
  const deviceId = (name: string) => `${backend}-${name}-${++seq}`;

  const createContact = async (app: TestApp, device?: string) => {
    const res = await app.api('POST', '/api/contacts', {
      key: writer.apiKey,
      headers: device ? { 'x-device-id': device } : {},
      body: { firstName: 'Nadia', phonePrimary: uniquePhone() },
    });
    expect(res.status).toBe(201);
    return res.body.data;
  };
  const about = (id: string) => (p: any) =>
    p?.contact?.id === id || (Array.isArray(p?.changes) && p.changes.some((c: { id: string }) => c.id === id));
  const heardOf = (s: Probe, id: string) => s.dataEvents().filter((r) => about(id)(r.payload));

  beforeAll(async () => {
    const env: Record<string, string> = redisUrl ? { REDIS_URL: redisUrl } : {};
    one = await startTestApp(backend, env);
    two = await startTestApp(backend, env, { sharedDb: one.testDb });
    writer = await createAgent(one, `RW${backend}`);
    reader = await createAgent(one, `RR${backend}`);
  });
  afterAll(async () => {
    // The second instance borrows the first one's database: close it first.
    if (!twoClosed) await two?.close();
    await one?.close();
  });

  describe('fan-out', () => {
    let originOnTwo: Probe; // the writing device, connected to instance two
    let sameAgentOnTwo: Probe;
    let readerOnTwo: Probe;
    let readerOnOne: Probe;
    let originId: string;

    beforeAll(async () => {
      originId = deviceId('origin');
      [originOnTwo, sameAgentOnTwo, readerOnTwo, readerOnOne] = await Promise.all([
        authedProbe(two.url, { apiKey: writer.apiKey, deviceId: originId }),
        authedProbe(two.url, { apiKey: writer.apiKey, deviceId: deviceId('same-agent') }),
        authedProbe(two.url, { apiKey: reader.apiKey, deviceId: deviceId('reader-two') }),
        authedProbe(one.url, { apiKey: reader.apiKey, deviceId: deviceId('reader-one') }),
      ]);
    });
    afterAll(() => closeAll(originOnTwo, sameAgentOnTwo, readerOnTwo, readerOnOne));

    it(
      crossesInstances
        ? 'delivers a change written through one instance to sockets on the other, but not to the origin device'
        : 'delivers a change to the sockets of the instance that committed it only',
      async () => {
        const contact = await createContact(one, originId);
        // Positive control: the writing instance's own socket.
        const local = await readerOnOne.waitFor('contact_created', about(contact.id));
        expect(local).toEqual({ contact, version: contact.version, createdBy: writer.agent.agentCode });
        if (crossesInstances) {
          for (const remote of [readerOnTwo, sameAgentOnTwo]) {
            expect(await remote.waitFor('contact_created', about(contact.id))).toEqual(local);
            expect(await remote.waitFor('changes', about(contact.id))).toEqual({
              fromVersion: contact.version - 1,
              toVersion: contact.version,
              changes: [{ collection: 'contacts', op: 'upsert', id: contact.id, version: contact.version, data: contact }],
            });
          }
        }
        await quiet();
        expect(heardOf(originOnTwo, contact.id)).toEqual([]);
        if (!crossesInstances) {
          for (const remote of [readerOnTwo, sameAgentOnTwo]) expect(heardOf(remote, contact.id)).toEqual([]);
        }
      },
    );

    it('skips the origin device in both directions and carries updates and deletes', async () => {
      const contact = await createContact(two, originId);
      const patched = await two.api('PATCH', `/api/contacts/${contact.id}`, {
        key: writer.apiKey,
        headers: { 'x-device-id': originId },
        body: { company: 'Initech' },
      });
      expect(patched.status).toBe(200);
      const removed = await two.api('DELETE', `/api/contacts/${contact.id}`, { key: writer.apiKey, headers: { 'x-device-id': originId } });
      expect(removed.status).toBe(204);

      // Same instance as the write: always delivered.
      const deleted = await readerOnTwo.waitFor('contact_deleted', about(contact.id));
      expect(deleted).toMatchObject({ contact: { id: contact.id, isDeleted: true }, deletedBy: writer.agent.agentCode });
      expect(await readerOnTwo.waitFor('contact_updated', about(contact.id))).toEqual({
        contact: patched.body.data,
        version: patched.body.data.version,
        updatedBy: writer.agent.agentCode,
      });
      if (crossesInstances) {
        const events = await readerOnOne.waitForCount('changes', 3, about(contact.id));
        expect(events.map((e) => e.changes[0].op)).toEqual(['upsert', 'upsert', 'delete']);
        expect(events.map((e) => e.toVersion)).toEqual([contact.version, patched.body.data.version, deleted.version]);
        expect((await readerOnOne.waitFor('contact_deleted', about(contact.id))).version).toBe(deleted.version);
      }
      await quiet();
      expect(heardOf(originOnTwo, contact.id)).toEqual([]);
      if (!crossesInstances) expect(heardOf(readerOnOne, contact.id)).toEqual([]);
    });

    it('routes a shared space to its collaborator, not to other agents, through the instances', async () => {
      const outsider = await createAgent(one, `RO${backend}`);
      const host = crossesInstances ? two : one; // where the collaborator and the outsider are connected
      const [collaborator, stranger] = await Promise.all([
        authedProbe(host.url, { apiKey: reader.apiKey, deviceId: deviceId('collaborator') }),
        authedProbe(host.url, { apiKey: outsider.apiKey, deviceId: deviceId('outsider') }),
      ]);
      try {
        const res = await one.api('POST', '/api/spaces', {
          key: writer.apiKey,
          headers: { 'x-device-id': originId },
          body: { name: 'Shared pipeline', collaborators: [{ userId: reader.agent.id, role: 'editor' }] },
        });
        expect(res.status, res.text).toBe(201);
        const space = res.body.data;
        const got = await collaborator.waitFor('changes', (p) => p.toVersion === space.version);
        expect(got.changes.map((c: { id: string }) => c.id)).toEqual([space.id]);
        const told = await stranger.waitFor('changes', (p) => p.toVersion === space.version);
        expect(told.changes).toEqual([]);
        await quiet();
        expect(heardOf(originOnTwo, space.id)).toEqual([]);
      } finally {
        closeAll(collaborator, stranger);
      }
    });

    it('keeps tenants apart across instances', async () => {
      const tenant = await one.api('POST', '/api/tenants', { body: { name: 'Far Away Ltd', slug: `far-away-${backend}` } });
      expect(tenant.status).toBe(201);
      const stranger = await authedProbe(two.url, { apiKey: tenant.body.data.apiKey, deviceId: deviceId('stranger') });
      try {
        const contact = await createContact(one, undefined);
        await readerOnOne.waitFor('contact_created', about(contact.id));
        if (crossesInstances) await readerOnTwo.waitFor('contact_created', about(contact.id));
        await quiet();
        expect(stranger.dataEvents()).toEqual([]);
      } finally {
        closeAll(stranger);
      }
    });
  });

  // Last: it closes instance two.
  describe('closing one instance', () => {
    it('sends server_shutdown only to its own sockets; the other instance keeps serving', async () => {
      const onOne = await authedProbe(one.url, { apiKey: reader.apiKey, deviceId: deviceId('stays') });
      const onTwo = await authedProbe(two.url, { apiKey: reader.apiKey, deviceId: deviceId('leaves') });
      try {
        twoClosed = true;
        await two.close();
        await onTwo.waitFor('disconnect');
        expect(onTwo.received.map((r) => r.event).filter((e) => e === 'server_shutdown' || e === 'disconnect')).toEqual([
          'server_shutdown',
          'disconnect',
        ]);
        expect(onOne.socket.connected).toBe(true);
        const contact = await createContact(one, undefined);
        await onOne.waitFor('contact_created', about(contact.id));
        expect(onOne.all('server_shutdown')).toEqual([]);
      } finally {
        closeAll(onOne, onTwo);
      }
    });
  });
});
