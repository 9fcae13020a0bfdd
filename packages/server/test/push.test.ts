import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, quiet } from './helpers/sockets.js';

const ts = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();

describe.each(backends)('POST /api/sync on %s', (backend) => {
  let app: TestApp;
  let agent: { apiKey: string; agent: { id: string } };
  beforeAll(async () => {
    app = await startTestApp(backend);
    agent = await createAgent(app, `P-${backend}`);
  });
  afterAll(async () => {
    await app?.close();
  });

  const push = (body: unknown, opts: { key?: string; headers?: Record<string, string> } = {}) =>
    app.api('POST', '/api/sync', { body, key: opts.key ?? agent.apiKey, headers: opts.headers });

  it('creates by localId, maps it to a server id, and acknowledges each change', async () => {
    const phone = uniquePhone();
    const res = await push({
      deviceId: 'dev-1',
      changes: [
        { localId: 'c-1', entityType: 'contact', operation: 'create', timestamp: ts(), data: { firstName: 'Lu', phonePrimary: phone } },
        { localId: 'c-1', entityType: 'contacts', operation: 'update', timestamp: ts(1), data: { company: 'Acme' } },
        { localId: 'c-2', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Bad', phonePrimary: '1' } },
        { localId: 'x', entityType: 'rockets', operation: 'create', timestamp: ts(), data: {} },
      ],
    });
    expect(res.status).toBe(200);
    const acks = res.body.data.acknowledged;
    expect(acks.map((a: { success: boolean }) => a.success)).toEqual([true, true, false, false]);
    expect(acks[0].serverId).toBe(acks[1].serverId);
    expect(acks[2].code).toBe('VALIDATION_FAILED');
    const got = await app.api('GET', `/api/contacts/${acks[0].serverId}`);
    expect(got.body.data).toMatchObject({ firstName: 'Lu', company: 'Acme', phonePrimary: phone, createdByAgent: `P-${backend}` });
    expect(got.body.data.version).toBe(acks[1].version);
  });

  it('answers a re-sent change with its original result and applies it once', async () => {
    const change = { changeId: randomUUID(), localId: 'r-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Re', phonePrimary: uniquePhone() } };
    const first = await push({ deviceId: 'dev-2', changes: [change] });
    const before = (await app.api('GET', '/api/sync/delta?version=0&limit=1')).body.data.latestVersion;
    const again = await push({ deviceId: 'dev-2', changes: [change] });
    expect(again.body.data.acknowledged[0]).toMatchObject({ serverId: first.body.data.acknowledged[0].serverId, status: 'duplicate', success: true });
    const after = (await app.api('GET', '/api/sync/delta?version=0&limit=1')).body.data.latestVersion;
    expect(after).toBe(before);
  });

  it('replays a whole answer for the same Idempotency-Key and refuses another body with 422', async () => {
    const key = randomUUID();
    const body = { deviceId: 'dev-3', changes: [{ localId: 'i-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Id', phonePrimary: uniquePhone() } }] };
    const first = await push(body, { headers: { 'idempotency-key': key } });
    const second = await push(body, { headers: { 'idempotency-key': key } });
    expect(second.status).toBe(200);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(second.body).toEqual(first.body);
    const other = await push({ ...body, deviceId: 'dev-3b' }, { headers: { 'idempotency-key': key } });
    expect(other.status).toBe(422);
    expect(other.body.error).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('merges non-overlapping offline edits and reports overlapping ones by policy', async () => {
    const created = (await app.api('POST', '/api/contacts', { body: { firstName: 'Mo', phonePrimary: uniquePhone() } })).body.data;
    // The server (REST) edits notes after the device's base version.
    await app.api('PATCH', `/api/contacts/${created.id}`, { body: { notes: 'server note' } });
    const res = await push({
      deviceId: 'dev-4',
      changes: [
        { id: created.id, entityType: 'contacts', operation: 'update', timestamp: ts(-60_000), baseVersion: created.version, data: { company: 'NewCo' } },
        { id: created.id, entityType: 'contacts', operation: 'update', timestamp: ts(-59_000), baseVersion: created.version, data: { notes: 'old device note' } },
      ],
    });
    const [noConflict, conflict] = res.body.data.acknowledged;
    expect(noConflict.status).toBe('applied');
    expect(conflict.status).toBe('conflict');
    expect(res.body.data.conflicts[0]).toMatchObject({ id: created.id, strategy: 'most_recent_wins', outcome: 'server_kept' });
    const now = (await app.api('GET', `/api/contacts/${created.id}`)).body.data;
    expect(now).toMatchObject({ company: 'NewCo', notes: 'server note' });
  });

  it('queues a manual conflict for review and syncs the resolution as a new version', async () => {
    expect((await app.api('PUT', '/api/conflict-policies/contacts', { body: { strategy: 'manual' } })).status).toBe(200);
    try {
      const created = (await app.api('POST', '/api/contacts', { body: { firstName: 'Qu', phonePrimary: uniquePhone() } })).body.data;
      await app.api('PATCH', `/api/contacts/${created.id}`, { body: { notes: 'server' } });
      const res = await push({ deviceId: 'dev-5', changes: [{ id: created.id, entityType: 'contacts', operation: 'update', timestamp: ts(), baseVersion: created.version, data: { notes: 'client' } }] });
      expect(res.body.data.conflicts[0].outcome).toBe('pending_review');
      const queue = await app.api('GET', '/api/conflicts?status=pending');
      const pending = queue.body.data.find((c: { recordId: string }) => c.recordId === created.id);
      expect(pending).toBeDefined();
      expect((await app.api('POST', `/api/conflicts/${pending.id}/resolve`, { body: { choose: 'client' }, key: agent.apiKey })).status).toBe(403);
      const before = (await app.api('GET', `/api/contacts/${created.id}`)).body.data;
      const resolved = await app.api('POST', `/api/conflicts/${pending.id}/resolve`, { body: { choose: 'client' } });
      expect(resolved.status).toBe(200);
      expect(resolved.body.data.status).toBe('resolved');
      const after = (await app.api('GET', `/api/contacts/${created.id}`)).body.data;
      expect(after.notes).toBe('client');
      expect(after.version).toBeGreaterThan(before.version);
      expect((await app.api('POST', `/api/conflicts/${pending.id}/resolve`, { body: { choose: 'server' } })).status).toBe(409);
    } finally {
      await app.api('PUT', '/api/conflict-policies/contacts', { body: { strategy: 'most_recent_wins' } });
    }
  });

  it('creates a space, a category and items by local id in one batch, visible only to members', async () => {
    const other = await createAgent(app, `O-${backend}`);
    const res = await push({
      deviceId: 'dev-6',
      changes: [
        { localId: 's1', entityType: 'space', operation: 'create', timestamp: ts(), data: { name: 'Leads' } },
        { localId: 'k1', entityType: 'category', operation: 'create', timestamp: ts(), data: { spaceLocalId: 's1', name: 'Hot' } },
        { localId: 'i1', entityType: 'item', operation: 'create', timestamp: ts(), data: { spaceLocalId: 's1', categoryLocalId: 'k1', title: 'Call Bo', tags: ['a'] } },
      ],
    });
    expect(res.body.data.acknowledged.map((a: { success: boolean; error?: string }) => a.error ?? a.success)).toEqual([true, true, true]);
    const [space, , item] = res.body.data.acknowledged.map((a: { serverId: string }) => a.serverId);
    const mine = await app.api('GET', '/api/sync/delta?version=0&collections=spaces,categories,items', { key: agent.apiKey });
    expect(mine.body.data.changes.map((c: { collection: string }) => c.collection)).toEqual(['spaces', 'categories', 'items']);
    const theirs = await app.api('GET', '/api/sync/delta?version=0&collections=spaces,categories,items', { key: other.apiKey });
    expect(theirs.body.data.changes).toEqual([]);
    expect((await app.api('GET', `/api/items/${item}`, { key: other.apiKey })).status).toBe(404);
    const checkpoint = theirs.body.data.nextVersion;

    // Sharing delivers the whole space to the new member, though it is older than their checkpoint.
    const share = await app.api('PATCH', `/api/spaces/${space}`, { key: agent.apiKey, body: { collaborators: [{ userId: other.agent.id, role: 'viewer' }] } });
    expect(share.status).toBe(200);
    const gained = await app.api('GET', `/api/sync/delta?version=${checkpoint}&collections=spaces,categories,items`, { key: other.apiKey });
    expect(gained.body.data.changes.map((c: { collection: string; op: string }) => `${c.collection}:${c.op}`).sort()).toEqual(['categories:upsert', 'items:upsert', 'spaces:upsert']);
    // A viewer cannot write.
    const denied = await push({ deviceId: 'dev-7', changes: [{ id: item, entityType: 'items', operation: 'update', timestamp: ts(), data: { title: 'x' } }] }, { key: other.apiKey });
    expect(denied.body.data.acknowledged[0]).toMatchObject({ success: false, code: 'FORBIDDEN' });

    // Unsharing delivers deletes for all of it.
    const next = gained.body.data.nextVersion;
    await app.api('PATCH', `/api/spaces/${space}`, { key: agent.apiKey, body: { collaborators: [] } });
    const lost = await app.api('GET', `/api/sync/delta?version=${next}&collections=spaces,categories,items`, { key: other.apiKey });
    expect(lost.body.data.changes.map((c: { op: string }) => c.op)).toEqual(['delete', 'delete', 'delete']);
  });

  it('emits contact_created and contact_updated with stored timestamps for pushed contacts, not to the pushing device', async () => {
    const other = await createAgent(app, `E-${backend}`);
    const watcher = await authedProbe(app.url, { apiKey: other.apiKey, deviceId: 'watcher' });
    const writer = await authedProbe(app.url, { apiKey: agent.apiKey, deviceId: 'dev-8' });
    try {
      const res = await push({
        deviceId: 'dev-8',
        changes: [
          { localId: 'e-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Ev', phonePrimary: uniquePhone() } },
          { localId: 'e-1', entityType: 'contacts', operation: 'update', timestamp: ts(1), data: { notes: 'met' } },
        ],
      });
      const id = res.body.data.acknowledged[0].serverId;
      const created = await watcher.waitFor('contact_created', (p) => p.contact.id === id);
      expect(created).toMatchObject({ createdBy: `P-${backend}`, contact: { firstName: 'Ev' } });
      expect(Date.parse(created.contact.createdAt)).toBeGreaterThan(0);
      const updated = await watcher.waitFor('contact_updated', (p) => p.contact.id === id);
      expect(updated).toMatchObject({ updatedBy: `P-${backend}`, contact: { notes: 'met' } });
      const stored = (await app.api('GET', `/api/contacts/${id}`)).body.data;
      const changes = await watcher.waitFor('changes', (p) => p.changes.some((c: { id: string }) => c.id === id));
      expect(changes.changes.find((c: { id: string }) => c.id === id).data).toEqual(stored);
      await quiet();
      expect(writer.all('contact_created')).toEqual([]);
      expect(writer.all('changes').flatMap((p) => p.changes)).toEqual([]);
    } finally {
      closeAll(watcher, writer);
    }
  });

  it("does not count a device's own earlier edits as conflicts, even under server_wins", async () => {
    expect((await app.api('PUT', '/api/conflict-policies/contacts', { body: { strategy: 'server_wins' } })).status).toBe(200);
    try {
      const c = (await app.api('POST', '/api/contacts', { body: { firstName: 'Ow', phonePrimary: uniquePhone() } })).body.data;
      const first = await push({ deviceId: 'own-1', changes: [{ id: c.id, entityType: 'contacts', operation: 'update', timestamp: ts(), baseVersion: c.version, data: { notes: 'first' } }] });
      const second = await push({ deviceId: 'own-1', changes: [{ id: c.id, entityType: 'contacts', operation: 'update', timestamp: ts(1), baseVersion: c.version, data: { notes: 'second' } }] });
      expect([first.body.data.acknowledged[0].status, second.body.data.acknowledged[0].status]).toEqual(['applied', 'applied']);
      expect(second.body.data.conflicts).toEqual([]);
      expect((await app.api('GET', `/api/contacts/${c.id}`)).body.data.notes).toBe('second');
      // Another device with the same old base does conflict, and server_wins keeps 'second'.
      const other = await push({ deviceId: 'own-2', changes: [{ id: c.id, entityType: 'contacts', operation: 'update', timestamp: ts(2), baseVersion: c.version, data: { notes: 'other' } }] });
      expect(other.body.data.conflicts[0]).toMatchObject({ outcome: 'server_kept' });
      expect((await app.api('GET', `/api/contacts/${c.id}`)).body.data.notes).toBe('second');
    } finally {
      await app.api('PUT', '/api/conflict-policies/contacts', { body: { strategy: 'most_recent_wins' } });
    }
  });

  it('remembers the time of a write that set a field to its current value, without a new version', async () => {
    const c = (await app.api('POST', '/api/contacts', { body: { firstName: 'Tm', company: 'Old', phonePrimary: uniquePhone() } })).body.data;
    const at = Date.now() - 60_000;
    const change = (device: string, company: string, offsetMs: number) =>
      push({ deviceId: device, changes: [{ id: c.id, entityType: 'contacts', operation: 'update', timestamp: new Date(at + offsetMs).toISOString(), baseVersion: c.version, data: { company } }] });
    const x = await change('tm-x', 'New', 1000);
    const same = await change('tm-c', 'New', 5000);
    expect(same.body.data.acknowledged[0].version).toBe(x.body.data.acknowledged[0].version);
    await change('tm-b', 'Mid', 3000);
    expect((await app.api('GET', `/api/contacts/${c.id}`)).body.data.company).toBe('New');
  });

  it('compares a change without a base with every earlier edit by time, silently', async () => {
    const c = (await app.api('POST', '/api/contacts', { body: { firstName: 'Nb', phonePrimary: uniquePhone() } })).body.data;
    await push({ deviceId: 'nb-1', changes: [{ id: c.id, entityType: 'contacts', operation: 'update', timestamp: ts(), baseVersion: c.version, data: { lastName: 'Newer' } }] });
    const stale = await push({ deviceId: 'nb-2', changes: [{ id: c.id, entityType: 'contacts', operation: 'update', timestamp: ts(-120_000), data: { lastName: 'Older' } }] });
    expect(stale.body.data.conflicts).toEqual([]);
    expect((await app.api('GET', `/api/contacts/${c.id}`)).body.data.lastName).toBe('Newer');
  });

  it('writes parents before children whatever order the batch loads them in', async () => {
    const first = await push({
      deviceId: 'ord-1',
      changes: [
        { localId: 'os', entityType: 'spaces', operation: 'create', timestamp: ts(), data: { name: 'Order' } },
        { localId: 'oi', entityType: 'items', operation: 'create', timestamp: ts(), data: { spaceLocalId: 'os', title: 'A' } },
      ],
    });
    const spaceId = first.body.data.acknowledged[0].serverId;
    const second = await push({
      deviceId: 'ord-1',
      changes: [
        { localId: 'oi', entityType: 'items', operation: 'update', timestamp: ts(1), data: { title: 'A2' } },
        { localId: 'ok', entityType: 'categories', operation: 'create', timestamp: ts(1), data: { spaceId, name: 'K' } },
        { localId: 'oj', entityType: 'items', operation: 'create', timestamp: ts(1), data: { spaceId, categoryLocalId: 'ok', title: 'B' } },
      ],
    });
    expect(second.status).toBe(200);
    expect(second.body.data.acknowledged.map((a: { success: boolean }) => a.success)).toEqual([true, true, true]);
  });
});
