import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

/**
 * Issue 9 item 6: the review queue shows a conflict only to those who may read its record now:
 * tenant-wide collections to every admin and manager, space-scoped ones to the members of the
 * record's space (docs/security.md "Conflicts").
 */

type Agent = { apiKey: string; agent: { id: string; agentCode: string } };

describe.each(backends)('the review queue respects scopes on %s', (backend) => {
  let app: TestApp;
  let owner: Agent; // an agent with a private space and a shared one
  let outsider: Agent; // a manager of the tenant, member of neither space
  let member: Agent; // a manager, editor of the shared space
  let admin: string; // the tenant's admin key: a member of neither space
  let privateItem: { id: string; conflictId: string };
  let sharedItem: { id: string; conflictId: string };
  let sharedSpaceId: string;
  let contactConflictId: string;

  const ok = async (method: string, path: string, key: string, body?: unknown, status = 200) => {
    const res = await app.api(method, path, { key, body });
    expect(res.status, res.text).toBe(status);
    return res.body.data;
  };
  const queue = async (key: string, query = '') => {
    const res = await app.api('GET', `/api/conflicts${query}`, { key });
    expect(res.status, res.text).toBe(200);
    return { ids: (res.body.data as { id: string }[]).map((c) => c.id).sort(), total: res.body.pagination.total as number, body: res.text };
  };
  /** An item whose title the office changed after the device last saw it: the device's edit waits in the queue. */
  const conflictedItem = async (spaceId: string, title: string) => {
    const item = await ok('POST', '/api/items', owner.apiKey, { spaceId, title }, 201);
    await ok('PATCH', `/api/items/${item.id}`, owner.apiKey, { title: `${title} (office)` });
    const pushed = await ok('POST', '/api/sync', owner.apiKey, {
      deviceId: `phone-${backend}`,
      changes: [{ id: item.id, entityType: 'items', operation: 'update', baseVersion: item.version, timestamp: new Date().toISOString(), data: { title: `${title} (device)` } }],
    });
    expect(pushed.conflicts).toHaveLength(1);
    expect(pushed.conflicts[0]).toMatchObject({ outcome: 'pending_review' });
    return { id: item.id as string, conflictId: pushed.conflicts[0].conflictId as string };
  };

  beforeAll(async () => {
    app = await startTestApp(backend);
    const tenant = await ok('POST', '/api/tenants', app.adminKey, { name: 'Review', slug: `review-${backend}` }, 201);
    admin = tenant.apiKey;
    owner = await createAgent(app, 'OWN', {}, admin);
    outsider = await createAgent(app, 'MGR1', { role: 'manager' }, admin);
    member = await createAgent(app, 'MGR2', { role: 'manager' }, admin);
    for (const collection of ['items', 'contacts']) await ok('PUT', `/api/conflict-policies/${collection}`, admin, { strategy: 'manual' });

    const privateSpace = await ok('POST', '/api/spaces', owner.apiKey, { name: 'Private' }, 201);
    const sharedSpace = await ok('POST', '/api/spaces', owner.apiKey, { name: 'Shared', collaborators: [{ userId: member.agent.id, role: 'editor' }] }, 201);
    sharedSpaceId = sharedSpace.id;
    privateItem = await conflictedItem(privateSpace.id, 'Secret plan');
    sharedItem = await conflictedItem(sharedSpace.id, 'Team plan');

    const contact = await ok('POST', '/api/contacts', admin, { firstName: 'Tenant', phonePrimary: uniquePhone() }, 201);
    await ok('PATCH', `/api/contacts/${contact.id}`, admin, { notes: 'office' });
    const pushed = await ok('POST', '/api/sync', owner.apiKey, {
      deviceId: `phone-${backend}`,
      changes: [{ id: contact.id, entityType: 'contacts', operation: 'update', baseVersion: contact.version, timestamp: new Date().toISOString(), data: { notes: 'device' } }],
    });
    contactConflictId = pushed.conflicts[0].conflictId;
  });
  afterAll(async () => {
    await app?.close();
  });

  it('shows a manager outside a space no conflict of its records, not even in counts, but every tenant-wide one', async () => {
    const seen = await queue(outsider.apiKey);
    expect(seen.ids).toEqual([contactConflictId]);
    expect(seen.total).toBe(1);
    expect(seen.body).not.toContain('Secret plan');
    expect(await queue(outsider.apiKey, '?collection=items')).toMatchObject({ ids: [], total: 0 });
    expect((await queue(outsider.apiKey, '?status=pending')).ids).toEqual([contactConflictId]);
  });

  it('applies to admins too: a space is its members\' whatever the role', async () => {
    expect((await queue(admin)).ids).toEqual([contactConflictId]);
  });

  it('shows a member the conflicts of the spaces they belong to, and only those', async () => {
    const seen = await queue(member.apiKey);
    expect(seen.ids).toEqual([contactConflictId, sharedItem.conflictId].sort());
    expect(seen.body).toContain('Team plan');
    expect(seen.body).not.toContain('Secret plan');
  });

  it('answers 404 to a resolution by someone who may not see the record, and changes nothing', async () => {
    for (const key of [outsider.apiKey, admin]) {
      const res = await app.api('POST', `/api/conflicts/${privateItem.conflictId}/resolve`, { key, body: { choose: 'client' } });
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ success: false, error: 'NOT_FOUND' });
    }
    const item = await ok('GET', `/api/items/${privateItem.id}`, owner.apiKey);
    expect(item.title).toBe('Secret plan (office)');
    // Still pending for whoever may see it once they can.
    const stored = await app.testDb.db.query<{ status: string }>('SELECT status FROM conflicts WHERE id = $1', [privateItem.conflictId]);
    expect(stored.rows[0].status).toBe('pending');
  });

  it('lets a member resolve a conflict of their space; losing membership hides the space\'s conflicts again', async () => {
    const resolved = await ok('POST', `/api/conflicts/${sharedItem.conflictId}/resolve`, member.apiKey, { choose: 'client' });
    expect(resolved).toMatchObject({ id: sharedItem.conflictId, status: 'resolved', resolution: 'client', resolverId: member.agent.id });
    expect((await ok('GET', `/api/items/${sharedItem.id}`, owner.apiKey)).title).toBe('Team plan (device)');

    expect((await queue(member.apiKey, '?status=resolved')).ids).toEqual([sharedItem.conflictId]);
    await ok('PATCH', `/api/spaces/${sharedSpaceId}`, owner.apiKey, { collaborators: [] });
    expect((await queue(member.apiKey)).ids).toEqual([contactConflictId]);
    expect((await queue(member.apiKey, '?status=resolved')).ids).toEqual([]);
  });

  it('still forbids agents the review queue (403), members or not', async () => {
    const res = await app.api('GET', '/api/conflicts', { key: owner.apiKey });
    expect(res.status).toBe(403);
  });
});
