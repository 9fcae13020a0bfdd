import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

describe.each(backends)('contacts REST on %s', (backend) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('creates a contact with its phone in E.164 and a first version', async () => {
    const res = await app.api('POST', '/api/contacts', { body: { firstName: 'Ana', phonePrimary: '(415) 555-2671', email: 'Ana@Example.com' } });
    expect(res.status).toBe(201);
    expect(res.body.data).toMatchObject({ firstName: 'Ana', phonePrimary: '+14155552671', email: 'ana@example.com', isDeleted: false });
    expect(res.body.data.version).toBeGreaterThan(0);
    const got = await app.api('GET', `/api/contacts/${res.body.data.id}`);
    expect(got.body.data).toEqual(res.body.data);
  });

  it('answers 409 with the existing id when the normalised primary phone exists', async () => {
    const first = await app.api('POST', '/api/contacts', { body: { firstName: 'Bo', phonePrimary: '+1 415 555 0199' } });
    expect(first.status).toBe(201);
    const dup = await app.api('POST', '/api/contacts', { body: { firstName: 'Bob', phonePrimary: '415-555-0199' } });
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ success: false, error: 'DUPLICATE' });
    expect(dup.body.details[0].existingId).toBe(first.body.data.id);
  });

  it('rejects an invalid phone with a 400 naming the field and writes nothing', async () => {
    const before = await app.api('GET', '/api/sync/delta?version=0');
    const res = await app.api('POST', '/api/contacts', { body: { firstName: 'X', phonePrimary: '12' } });
    expect(res.status).toBe(400);
    expect(res.body.details[0].field).toBe('phonePrimary');
    const after = await app.api('GET', '/api/sync/delta?version=0');
    expect(after.body.data.latestVersion).toBe(before.body.data.latestVersion);
  });

  it('patches with optimistic concurrency and answers 409 on a stale version', async () => {
    const created = (await app.api('POST', '/api/contacts', { body: { firstName: 'Cy', phonePrimary: uniquePhone() } })).body.data;
    const ok = await app.api('PATCH', `/api/contacts/${created.id}`, { body: { company: 'Acme', version: created.version } });
    expect(ok.status).toBe(200);
    expect(ok.body.data.company).toBe('Acme');
    expect(ok.body.data.version).toBeGreaterThan(created.version);
    const stale = await app.api('PATCH', `/api/contacts/${created.id}`, { body: { company: 'Other', version: created.version } });
    expect(stale.status).toBe(409);
    expect((await app.api('GET', `/api/contacts/${created.id}`)).body.data.company).toBe('Acme');
  });

  it('tombstones on delete: 404 afterwards, a delete change in the delta, history of every change', async () => {
    const created = (
      await app.api('POST', '/api/contacts', {
        headers: { 'x-device-id': 'desk-1' },
        body: { firstName: 'Di', phonePrimary: uniquePhone(), company: 'Acme "Quoted" Ltd', doNotCall: true },
      })
    ).body.data;
    await app.api('PATCH', `/api/contacts/${created.id}`, { body: { notes: 'called' } });
    expect((await app.api('DELETE', `/api/contacts/${created.id}`)).status).toBe(204);
    expect((await app.api('GET', `/api/contacts/${created.id}`)).status).toBe(404);
    const delta = await app.api('GET', `/api/sync/delta?version=${created.version}`);
    const change = delta.body.data.changes.find((c: { id: string }) => c.id === created.id);
    expect(change).toMatchObject({ op: 'delete', collection: 'contacts' });
    const history = await app.api('GET', `/api/contacts/${created.id}/history`);
    expect(history.body.data.map((h: { action: string }) => h.action)).toEqual(['create', 'update', 'delete']);
    expect(history.body.data[1].changes).toEqual({ notes: { from: null, to: 'called' } });
    // The create lists every field it gave a value (doNotCall false or true counts), from null.
    expect(history.body.data[0]).toMatchObject({ version: created.version, deviceId: 'desk-1' });
    expect(history.body.data[0].changes).toEqual({
      firstName: { from: null, to: 'Di' },
      phonePrimary: { from: null, to: created.phonePrimary },
      company: { from: null, to: 'Acme "Quoted" Ltd' },
      doNotCall: { from: null, to: true },
    });
    const { rows } = await app.testDb.db.query<{ changed_fields: string[] }>(
      `SELECT changed_fields FROM audit_log WHERE record_id = $1 AND action = 'create'`,
      [created.id],
    );
    expect(rows.map((r) => [...r.changed_fields].sort())).toEqual([['company', 'doNotCall', 'firstName', 'phonePrimary']]);
  });

  it('does not show contacts of another tenant (404, never 403)', async () => {
    const created = (await app.api('POST', '/api/contacts', { body: { firstName: 'Ed', phonePrimary: uniquePhone() } })).body.data;
    const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Other Co', slug: `other-${backend}` } });
    expect(tenant.status).toBe(201);
    const otherKey = tenant.body.data.apiKey;
    expect((await app.api('GET', `/api/contacts/${created.id}`, { key: otherKey })).status).toBe(404);
    expect((await app.api('PATCH', `/api/contacts/${created.id}`, { key: otherKey, body: { notes: 'x' } })).status).toBe(404);
    expect((await app.api('DELETE', `/api/contacts/${created.id}`, { key: otherKey })).status).toBe(404);
    const contacts = await app.api('GET', '/api/sync/delta?version=0&collections=contacts', { key: otherKey });
    expect(contacts.body.data.changes).toEqual([]);
    // A full pull holds only the other tenant's own directory (users are synced, SPEC §8): its admin.
    const { rows: admins } = await app.testDb.db.query<{ id: string }>("SELECT id FROM users WHERE tenant_id = $1 AND agent_code = 'admin'", [
      tenant.body.data.tenant.id,
    ]);
    const delta = await app.api('GET', '/api/sync/delta?version=0', { key: otherKey });
    expect(delta.body.data.changes.map((c: { collection: string; id: string }) => [c.collection, c.id])).toEqual([['users', admins[0].id]]);
  });

  it('finds contacts by name, email, company and phone in any format', async () => {
    const phone = '+14155550123';
    await app.api('POST', '/api/contacts', {
      body: { firstName: 'Zelda', lastName: 'Quartermain', phonePrimary: phone, email: 'zq@findme.io', company: 'Hyrule Ltd' },
    });
    for (const term of ['quarterm', 'ZELDA', 'findme.io', 'hyrule', '(415) 555-0123', '555-0123', '4155550123']) {
      const res = await app.api('GET', `/api/contacts?search=${encodeURIComponent(term)}`);
      expect(res.status, term).toBe(200);
      expect(res.body.data.map((c: { phonePrimary: string }) => c.phonePrimary), term).toContain(phone);
    }
    const none = await app.api('GET', `/api/contacts?search=${encodeURIComponent('nobody-here')}`);
    expect(none.body.data).toEqual([]);
  });

  it('lets an agent work with contacts but not administer agents', async () => {
    const { apiKey } = await createAgent(app, `A-${backend}`);
    expect((await app.api('GET', '/api/contacts', { key: apiKey })).status).toBe(200);
    expect((await app.api('POST', '/api/agents', { key: apiKey, body: { agentCode: 'B1', name: 'B' } })).status).toBe(403);
  });
});
