import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, quiet } from './helpers/sockets.js';

/** A fresh external id for a run (suites share nothing, but tests of one suite must not collide). */
const ext = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

describe.each(backends)('outreach: projects, contacts, links, call and terminal sessions on %s', (backend) => {
  let app: TestApp;
  let agentKey: string;
  let otherKey: string;

  const count = async (table: string) =>
    (await app.testDb.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;
  const newContact = async (extra: Record<string, unknown> = {}) => {
    const res = await app.api('POST', '/api/contacts', { body: { firstName: 'Lead', phonePrimary: uniquePhone(), ...extra } });
    expect(res.status).toBe(201);
    return res.body.data as { id: string; phonePrimary: string; version: number };
  };
  const newProject = async (extra: Record<string, unknown> = {}) => {
    const res = await app.api('POST', '/api/projects', { body: { projectId: ext('p'), name: 'Roof job', ...extra } });
    expect(res.status).toBe(201);
    return res.body.data as { id: string; projectId: string; version: number; nextCallEligibleAt: string | null };
  };

  beforeAll(async () => {
    app = await startTestApp(backend);
    agentKey = (await createAgent(app, 'out-1')).apiKey;
    const other = await app.api('POST', '/api/tenants', { body: { name: 'Other org', slug: `other-${randomUUID().slice(0, 8)}` } });
    expect(other.status).toBe(201);
    otherKey = other.body.data.apiKey;
  });
  afterAll(async () => {
    await app?.close();
  });

  describe('projects', () => {
    it('upserts by external projectId: 201 new, 200 updated, one record', async () => {
      const projectId = ext('p');
      const first = await app.api('POST', '/api/projects', { body: { projectId, name: 'Kitchen', properties: { city: 'Austin', budget: 12000 } } });
      expect(first.status).toBe(201);
      expect(first.body.data).toMatchObject({ projectId, name: 'Kitchen', status: 'active', callSuppressed: false, nextCallEligibleAt: null, properties: { city: 'Austin', budget: 12000 } });
      const again = await app.api('POST', '/api/projects', { body: { projectId, name: 'Kitchen remodel', callSuppressed: true } });
      expect(again.status).toBe(200);
      expect(again.body.data).toMatchObject({ id: first.body.data.id, name: 'Kitchen remodel', callSuppressed: true });
      expect(again.body.data.version).toBeGreaterThan(first.body.data.version);
      expect((await app.api('GET', `/api/projects/${encodeURIComponent(projectId)}`)).body.data.name).toBe('Kitchen remodel');
      const list = await app.api('GET', '/api/projects?limit=500');
      expect(list.body.data.filter((p: { projectId: string }) => p.projectId === projectId)).toHaveLength(1);
      expect(list.body.pagination).toMatchObject({ page: 1, limit: 500 });
    });

    it('answers 404 for another tenant’s project and never shows it in its list', async () => {
      const project = await newProject();
      const res = await app.api('GET', `/api/projects/${project.projectId}`, { key: otherKey });
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ success: false, error: 'NOT_FOUND' });
      const list = await app.api('GET', '/api/projects', { key: otherKey });
      expect(list.body.data.some((p: { projectId: string }) => p.projectId === project.projectId)).toBe(false);
      // The other tenant may use the same external id for its own project.
      const own = await app.api('POST', '/api/projects', { key: otherKey, body: { projectId: project.projectId, name: 'Theirs' } });
      expect(own.status).toBe(201);
      expect(own.body.data.id).not.toBe(project.id);
    });

    it('refuses bad input with 400 in the envelope and stores nothing', async () => {
      const before = await count('projects');
      for (const body of [
        { name: 'no id' },
        { projectId: '', name: 'x' },
        { projectId: ' padded ', name: 'x' },
        { projectId: ext('p'), name: '   ' },
        { projectId: ext('p'), name: 'x', status: 5 },
        { projectId: ext('p'), name: 'x', nextCallEligibleAt: '0000-01-01T00:00:00Z' },
        { projectId: ext('p'), name: 'x', properties: { nested: { deep: 1 } } },
        { projectId: ext('p'), name: 'x', unknown: true },
        { projectId: 'x'.repeat(201), name: 'x' },
        { projectId: ext('p'), name: 'x\u0000y' },
      ]) {
        const res = await app.api('POST', '/api/projects', { body });
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.success).toBe(false);
      }
      // Bodies that cannot be read: invalid UTF-8, deep JSON, not JSON, huge.
      let deep: unknown = 'x';
      for (let i = 0; i < 100; i++) deep = { a: deep };
      const raws: { raw: string | Buffer; type?: string; status: number }[] = [
        { raw: Buffer.concat([Buffer.from('{"projectId":"p-utf","name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), status: 400 },
        { raw: JSON.stringify({ projectId: ext('p'), name: 'deep', properties: deep }), status: 400 },
        { raw: '{"projectId":', status: 400 },
        { raw: JSON.stringify({ projectId: ext('p'), name: 'x'.repeat(2 * 1024 * 1024) }), status: 413 },
        { raw: 'projectId=x', type: 'application/x-www-form-urlencoded', status: 415 },
      ];
      for (const { raw, type, status } of raws) {
        const res = await app.api('POST', '/api/projects', { raw, headers: { 'content-type': type ?? 'application/json' } });
        expect(res.status).toBe(status);
        expect(res.body).toMatchObject({ success: false });
      }
      expect(await count('projects')).toBe(before);
    });
  });

  describe('contact upsert', () => {
    it('creates, then matches by external id, then by normalised phone, then by lower-cased email', async () => {
      const contactId = ext('c');
      const phone = uniquePhone();
      const created = await app.api('POST', '/api/contacts/upsert', { body: { contactId, firstName: 'Ann', phonePrimary: phone, email: 'Ann@Example.com' } });
      expect(created.status).toBe(201);
      expect(created.body.data).toMatchObject({ created: true, matchedBy: null, contact: { externalId: contactId, phonePrimary: phone, email: 'ann@example.com' } });
      const id = created.body.data.contact.id;

      const byId = await app.api('POST', '/api/contacts/upsert', { body: { contactId, firstName: 'Anne' } });
      expect(byId.status).toBe(200);
      expect(byId.body.data).toMatchObject({ created: false, matchedBy: 'externalId', contact: { id, firstName: 'Anne' } });

      const national = `(${phone.slice(2, 5)}) ${phone.slice(5, 8)}-${phone.slice(8)}`;
      const byPhone = await app.api('POST', '/api/contacts/upsert', { body: { firstName: 'Anne', phonePrimary: national, company: 'Acme' } });
      expect(byPhone.body.data).toMatchObject({ created: false, matchedBy: 'phone', contact: { id, company: 'Acme' } });

      const byEmail = await app.api('POST', '/api/contacts/upsert', { body: { firstName: 'Anne', email: 'ANN@example.COM', notes: 'by email' } });
      expect(byEmail.body.data).toMatchObject({ created: false, matchedBy: 'email', contact: { id, notes: 'by email' } });
    });

    it('refuses a contact without phone or email, an invalid phone, and stores nothing', async () => {
      const before = await count('contacts');
      const none = await app.api('POST', '/api/contacts/upsert', { body: { firstName: 'Nobody' } });
      expect(none.status).toBe(400);
      expect(none.body.details[0].field).toBe('phonePrimary');
      const badPhone = await app.api('POST', '/api/contacts/upsert', { body: { firstName: 'X', phonePrimary: '12' } });
      expect(badPhone.status).toBe(400);
      const unknownField = await app.api('POST', '/api/contacts/upsert', { body: { firstName: 'X', phonePrimary: uniquePhone(), externalId: 'not-here' } });
      expect(unknownField.status).toBe(400);
      expect(await count('contacts')).toBe(before);
    });
  });

  describe('project-contact links', () => {
    it('links a pair once: 201, then 200 with the link updated', async () => {
      const project = await newProject();
      const contact = await newContact();
      const first = await app.api('POST', `/api/projects/${project.projectId}/contacts`, { body: { contactId: contact.id, role: 'owner' } });
      expect(first.status).toBe(201);
      expect(first.body.data).toMatchObject({ projectId: project.projectId, contactId: contact.id, role: 'owner', suppressForProject: false });
      const again = await app.api('POST', `/api/projects/${project.projectId}/contacts`, { body: { contactId: contact.id, suppressForProject: true } });
      expect(again.status).toBe(200);
      expect(again.body.data).toMatchObject({ id: first.body.data.id, role: 'owner', suppressForProject: true });
      const links = await app.api('GET', `/api/projects/${project.projectId}/contacts`);
      expect(links.body.data).toHaveLength(1);
    });

    it('answers 404 for an unknown project or contact, or another tenant’s, and stores nothing', async () => {
      const project = await newProject();
      const contact = await newContact();
      const before = await count('project_contacts');
      expect((await app.api('POST', `/api/projects/${ext('nope')}/contacts`, { body: { contactId: contact.id } })).status).toBe(404);
      expect((await app.api('POST', `/api/projects/${project.projectId}/contacts`, { body: { contactId: randomUUID() } })).status).toBe(404);
      expect((await app.api('POST', `/api/projects/${project.projectId}/contacts`, { key: otherKey, body: { contactId: contact.id } })).status).toBe(404);
      const theirs = await app.api('POST', '/api/projects', { key: otherKey, body: { projectId: ext('p'), name: 'Theirs' } });
      expect((await app.api('POST', `/api/projects/${theirs.body.data.projectId}/contacts`, { key: otherKey, body: { contactId: contact.id } })).status).toBe(404);
      expect((await app.api('POST', `/api/projects/${project.projectId}/contacts`, { body: { contactId: 'not-a-uuid' } })).status).toBe(400);
      expect(await count('project_contacts')).toBe(before);
    });
  });

  describe('call sessions', () => {
    it('appends a call, idempotent on callSessionId, and moves the project’s nextCallEligibleAt by the cooldown', async () => {
      const project = await newProject();
      const contact = await newContact();
      const callSessionId = ext('call');
      const startedAt = new Date(Date.now() - 3600_000).toISOString();
      const body = { callSessionId, projectId: project.projectId, contactId: contact.id, outcome: 'no_answer', startedAt, durationSeconds: 42, notes: 'voicemail' };
      const first = await app.api('POST', '/api/call-sessions', { key: agentKey, body });
      expect(first.status).toBe(201);
      expect(first.body.data).toMatchObject({ callSessionId, projectId: project.projectId, contactId: contact.id, outcome: 'no_answer', durationSeconds: 42, agentCode: 'out-1' });
      const again = await app.api('POST', '/api/call-sessions', { key: agentKey, body: { ...body, outcome: 'connected' } });
      expect(again.status).toBe(200);
      expect(again.body.data).toEqual(first.body.data);
      expect((await app.testDb.db.query('SELECT 1 FROM call_sessions WHERE call_session_id = $1', [callSessionId])).rows).toHaveLength(1);

      const moved = (await app.api('GET', `/api/projects/${project.projectId}`)).body.data;
      expect(Date.parse(moved.nextCallEligibleAt)).toBe(Date.parse(startedAt) + 24 * 3600_000);
      expect(moved.version).toBeGreaterThan(project.version);
      // An older call never moves it back.
      await app.api('POST', '/api/call-sessions', { body: { ...body, callSessionId: undefined, startedAt: new Date(Date.now() - 5 * 3600_000).toISOString() } });
      expect((await app.api('GET', `/api/projects/${project.projectId}`)).body.data.nextCallEligibleAt).toBe(moved.nextCallEligibleAt);
    });

    it('is never updated or deleted: 405 in the envelope', async () => {
      const project = await newProject();
      const contact = await newContact();
      const created = await app.api('POST', '/api/call-sessions', { body: { projectId: project.projectId, contactId: contact.id, outcome: 'connected', startedAt: new Date().toISOString() } });
      for (const method of ['PATCH', 'PUT', 'DELETE']) {
        const res = await app.api(method, `/api/call-sessions/${created.body.data.id}`, method === 'DELETE' ? {} : { body: { outcome: 'x' } });
        expect(res.status, method).toBe(405);
        expect(res.body).toMatchObject({ success: false, error: 'METHOD_NOT_ALLOWED' });
      }
      expect((await app.api('GET', `/api/call-sessions/${created.body.data.id}`)).body.data.outcome).toBe('connected');
    });

    it('refuses unknown projects and contacts (404) and bad fields (400), storing nothing', async () => {
      const project = await newProject();
      const contact = await newContact();
      const before = await count('call_sessions');
      const ok = { projectId: project.projectId, contactId: contact.id, outcome: 'connected', startedAt: new Date().toISOString() };
      expect((await app.api('POST', '/api/call-sessions', { body: { ...ok, projectId: ext('nope') } })).status).toBe(404);
      expect((await app.api('POST', '/api/call-sessions', { body: { ...ok, contactId: randomUUID() } })).status).toBe(404);
      expect((await app.api('POST', '/api/call-sessions', { key: otherKey, body: ok })).status).toBe(404);
      for (const bad of [
        { ...ok, startedAt: 'yesterday' },
        { ...ok, startedAt: '2024-01-01T00:00:00+15:00' },
        { ...ok, durationSeconds: -1 },
        { ...ok, durationSeconds: 1.5 },
        { ...ok, outcome: '' },
        { ...ok, contactId: 'x' },
        { ...ok, id: randomUUID() },
        { ...ok, notes: 'x'.repeat(10_001) },
      ]) {
        const res = await app.api('POST', '/api/call-sessions', { body: bad });
        expect(res.status, JSON.stringify(bad).slice(0, 80)).toBe(400);
      }
      expect(await count('call_sessions')).toBe(before);
    });
  });

  describe('terminal sessions', () => {
    it('records each scope, idempotent on terminalId', async () => {
      const project = await newProject();
      const contact = await newContact();
      const terminalId = ext('t');
      const first = await app.api('POST', '/api/terminal-sessions', { body: { terminalId, scope: 'project', projectId: project.projectId, contactId: contact.id, reason: 'sold' } });
      expect(first.status).toBe(201);
      expect(first.body.data).toMatchObject({ terminalId, scope: 'project', projectId: project.projectId, contactId: contact.id, reason: 'sold', expiresAt: null, active: true });
      const again = await app.api('POST', '/api/terminal-sessions', { body: { terminalId, scope: 'global', reason: 'other' } });
      expect(again.status).toBe(200);
      expect(again.body.data.id).toBe(first.body.data.id);
      expect((await app.api('POST', '/api/terminal-sessions', { body: { scope: 'contact', contactId: contact.id, reason: 'moved' } })).status).toBe(201);
      const past = new Date(Date.now() - 1000).toISOString();
      const expired = await app.api('POST', '/api/terminal-sessions', { body: { scope: 'project', projectId: project.projectId, reason: 'paused', expiresAt: past } });
      expect(expired.body.data.active).toBe(false);
      const active = await app.api('GET', `/api/terminal-sessions?active=true&projectId=${project.projectId}`);
      expect(active.body.data.map((t: { id: string }) => t.id)).toEqual([first.body.data.id]);
      expect((await app.api('DELETE', `/api/terminal-sessions/${first.body.data.id}`)).status).toBe(405);
    });

    it('refuses scopes without their ids or with ids they do not take (400), unknown ids (404), storing nothing', async () => {
      const project = await newProject();
      const contact = await newContact();
      const before = await count('terminal_sessions');
      for (const bad of [
        { scope: 'project', reason: 'x' },
        { scope: 'project', contactId: contact.id, reason: 'x' },
        { scope: 'contact', reason: 'x' },
        { scope: 'contact', projectId: project.projectId, contactId: contact.id, reason: 'x' },
        { scope: 'global', projectId: project.projectId, reason: 'x' },
        { scope: 'global', contactId: contact.id, reason: 'x' },
        { scope: 'universe', reason: 'x' },
        { scope: 'global' },
      ]) {
        const res = await app.api('POST', '/api/terminal-sessions', { body: bad });
        expect(res.status, JSON.stringify(bad)).toBe(400);
        expect(res.body.success).toBe(false);
      }
      expect((await app.api('POST', '/api/terminal-sessions', { body: { scope: 'project', projectId: ext('nope'), reason: 'x' } })).status).toBe(404);
      expect((await app.api('POST', '/api/terminal-sessions', { body: { scope: 'contact', contactId: randomUUID(), reason: 'x' } })).status).toBe(404);
      expect(await count('terminal_sessions')).toBe(before);
    });
  });

  describe('settings', () => {
    it('defaults to 3 / 10 / 24; admins change them, agents may not; bad values are 400', async () => {
      const other = await app.api('GET', '/api/settings', { key: otherKey });
      expect(other.body.data).toEqual({ callDailyLimit: 3, callWeeklyLimit: 10, callCooldownHours: 24, rateLimitPerMinute: null });
      expect((await app.api('PATCH', '/api/settings', { key: agentKey, body: { callDailyLimit: 5 } })).status).toBe(403);
      const changed = await app.api('PATCH', '/api/settings', { key: otherKey, body: { callDailyLimit: 5 } });
      expect(changed.body.data).toEqual({ callDailyLimit: 5, callWeeklyLimit: 10, callCooldownHours: 24, rateLimitPerMinute: null });
      for (const body of [{}, { callDailyLimit: 0 }, { callCooldownHours: -1 }, { callWeeklyLimit: '10' }, { other: 1 }]) {
        expect((await app.api('PATCH', '/api/settings', { key: otherKey, body })).status, JSON.stringify(body)).toBe(400);
      }
      expect((await app.api('GET', '/api/settings', { key: otherKey })).body.data.callDailyLimit).toBe(5);
    });
  });

  describe('sync', () => {
    it('delivers projects, links, call and terminal sessions to every device of the tenant, and none to another', async () => {
      const from = (await app.api('GET', '/api/sync/delta?version=0&limit=1')).body.data.latestVersion;
      const project = await newProject();
      const contact = await newContact();
      await app.api('POST', `/api/projects/${project.projectId}/contacts`, { body: { contactId: contact.id } });
      await app.api('POST', '/api/call-sessions', { body: { projectId: project.projectId, contactId: contact.id, outcome: 'connected', startedAt: new Date().toISOString() } });
      await app.api('POST', '/api/terminal-sessions', { body: { scope: 'contact', contactId: contact.id, reason: 'moved away' } });
      const delta = await app.api('GET', `/api/sync/delta?version=${from}&collections=projects,projectContacts,callSessions,terminalSessions`, {
        key: agentKey,
        headers: { 'x-device-id': 'phone-sync-1' },
      });
      expect(delta.status).toBe(200);
      const byCollection = (name: string) => delta.body.data.changes.filter((c: { collection: string }) => c.collection === name);
      // The project twice over: created, then moved by the call's cooldown (the pull has its latest state).
      expect(byCollection('projects').map((c: { id: string }) => c.id)).toEqual([project.id]);
      expect(byCollection('projects')[0].data.nextCallEligibleAt).not.toBeNull();
      expect(byCollection('projectContacts')).toHaveLength(1);
      expect(byCollection('callSessions')[0].data).toMatchObject({ projectId: project.projectId, contactId: contact.id });
      expect(byCollection('terminalSessions')[0].data).toMatchObject({ scope: 'contact', reason: 'moved away' });
      const theirs = await app.api('GET', `/api/sync/delta?version=0&collections=projects,callSessions`, { key: otherKey });
      expect(theirs.body.data.changes.some((c: { id: string }) => c.id === project.id)).toBe(false);
    });

    it('takes call and terminal sessions pushed offline (a contact created in the same batch by local id), create only', async () => {
      const project = await newProject();
      const deviceId = `phone-${randomUUID().slice(0, 8)}`;
      const at = Date.now();
      const push = (changes: unknown[]) => app.api('POST', '/api/sync', { key: agentKey, body: { deviceId, changes } });
      const res = await push([
        { localId: 'c1', entityType: 'contacts', operation: 'create', timestamp: at, data: { firstName: 'Walk-in', phonePrimary: uniquePhone() } },
        {
          localId: 'call1',
          entityType: 'callSessions',
          operation: 'create',
          timestamp: at,
          data: { callSessionId: ext('offline'), projectId: project.projectId, contactLocalId: 'c1', outcome: 'connected', startedAt: new Date(at).toISOString() },
        },
        { localId: 't1', entityType: 'terminalSession', operation: 'create', timestamp: at, data: { scope: 'project', projectId: project.projectId, contactLocalId: 'c1', reason: 'signed' } },
      ]);
      expect(res.status).toBe(200);
      const acks = res.body.data.acknowledged;
      expect(acks.map((a: { success: boolean }) => a.success)).toEqual([true, true, true]);
      const contactId = acks[0].serverId;
      const call = await app.api('GET', `/api/call-sessions/${acks[1].serverId}`);
      expect(call.body.data).toMatchObject({ contactId, projectId: project.projectId, agentCode: 'out-1' });
      expect((await app.api('GET', `/api/terminal-sessions/${acks[2].serverId}`)).body.data).toMatchObject({ contactId, scope: 'project' });

      // Updates and deletes of call and terminal sessions are each that change's error; the rest applies.
      const before = await count('call_sessions');
      const edits = await push([
        { changeId: randomUUID(), id: acks[1].serverId, entityType: 'callSessions', operation: 'update', timestamp: at + 1, data: { outcome: 'x' } },
        { changeId: randomUUID(), id: acks[1].serverId, entityType: 'callSessions', operation: 'delete', timestamp: at + 1 },
        { changeId: randomUUID(), id: acks[2].serverId, entityType: 'terminalSessions', operation: 'delete', timestamp: at + 1 },
        { changeId: randomUUID(), entityType: 'callSessions', operation: 'create', timestamp: at + 1, data: { projectId: ext('nope'), contactId, outcome: 'x', startedAt: new Date(at).toISOString() } },
        { changeId: randomUUID(), entityType: 'callSessions', operation: 'create', timestamp: at + 1, data: { projectId: project.projectId, contactId: randomUUID(), outcome: 'x', startedAt: new Date(at).toISOString() } },
        { changeId: randomUUID(), entityType: 'terminalSessions', operation: 'create', timestamp: at + 1, data: { scope: 'global', projectId: project.projectId, reason: 'x' } },
        { changeId: randomUUID(), entityType: 'callSessions', operation: 'create', timestamp: at + 1, data: { projectId: project.projectId, contactId, outcome: 'busy', startedAt: new Date(at).toISOString() } },
      ]);
      const results = edits.body.data.acknowledged.map((a: { success: boolean; code?: string }) => (a.success ? 'ok' : a.code));
      expect(results).toEqual(['VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'NOT_FOUND', 'VALIDATION_FAILED', 'ok']);
      expect(await count('call_sessions')).toBe(before + 1);
      expect((await app.api('GET', `/api/call-sessions/${acks[1].serverId}`)).body.data.outcome).toBe('connected');
    });

    it('delivers a call pushed by one phone live to the tenant’s other phones (the call and its project’s cooldown), not to the pusher or another tenant', async () => {
      const project = await newProject();
      const contact = await newContact();
      const other = await app.api('POST', '/api/tenants', { body: { name: 'Quiet org', slug: `quiet-${randomUUID().slice(0, 8)}` } });
      const deviceId = `live-w-${randomUUID().slice(0, 6)}`;
      const [writer, colleague, stranger] = await Promise.all([
        authedProbe(app.url, { apiKey: agentKey, deviceId }),
        authedProbe(app.url, { apiKey: app.adminKey, deviceId: `live-c-${randomUUID().slice(0, 6)}` }),
        authedProbe(app.url, { apiKey: other.body.data.apiKey, deviceId: `live-s-${randomUUID().slice(0, 6)}` }),
      ]);
      try {
        const pushed = await app.api('POST', '/api/sync', {
          key: agentKey,
          body: {
            deviceId,
            changes: [{ changeId: randomUUID(), entityType: 'callSessions', operation: 'create', timestamp: Date.now(), data: { projectId: project.projectId, contactId: contact.id, outcome: 'connected', startedAt: new Date().toISOString() } }],
          },
        });
        const callId = pushed.body.data.acknowledged[0].serverId;
        const about = (p: any) => Array.isArray(p?.changes) && p.changes.some((c: { id: string }) => c.id === callId);
        const event = await colleague.waitFor('changes', about);
        expect(event.changes.map((c: { collection: string; id: string }) => [c.collection, c.id])).toEqual(
          expect.arrayContaining([['callSessions', callId], ['projects', project.id]]),
        );
        await quiet();
        expect(writer.dataEvents().filter((r) => about(r.payload))).toEqual([]);
        expect(stranger.dataEvents().filter((r) => about(r.payload))).toEqual([]);
      } finally {
        closeAll(writer, colleague, stranger);
      }
    });

    it('answers a pushed call session whose callSessionId exists with that session, not a second one', async () => {
      const project = await newProject();
      const contact = await newContact();
      const callSessionId = ext('dup');
      const body = { callSessionId, projectId: project.projectId, contactId: contact.id, outcome: 'connected', startedAt: new Date().toISOString() };
      const rest = await app.api('POST', '/api/call-sessions', { body });
      const pushed = await app.api('POST', '/api/sync', {
        key: agentKey,
        body: { deviceId: 'phone-dup', changes: [{ changeId: randomUUID(), entityType: 'callSessions', operation: 'create', timestamp: Date.now(), data: body }] },
      });
      expect(pushed.body.data.acknowledged[0]).toMatchObject({ success: true, status: 'duplicate', serverId: rest.body.data.id });
      expect((await app.testDb.db.query('SELECT 1 FROM call_sessions WHERE call_session_id = $1', [callSessionId])).rows).toHaveLength(1);
    });
  });
});
