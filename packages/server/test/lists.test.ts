import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';

type Agent = { apiKey: string; agent: { id: string; agentCode: string } };
type Ack = { localId: string | null; serverId: string | null; success: boolean; status: string; code?: string; error?: string; version?: number };

const ts = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();
const LISTS = 'spaces,categories,items';

describe.each(backends)('lists (spaces, categories, items) on %s', (backend) => {
  let app: TestApp;
  /** The space's owner, an editor, a viewer and a user of the tenant outside the space. */
  let owner: Agent;
  let editor: Agent;
  let viewer: Agent;
  let outsider: Agent;
  /** The admin key of another tenant. */
  let otherTenantKey: string;
  let seq = 0;
  const code = (prefix: string) => `${prefix}${backend.slice(0, 2)}${++seq}`;

  beforeAll(async () => {
    app = await startTestApp(backend);
    [owner, editor, viewer, outsider] = await Promise.all(['LO', 'LE', 'LV', 'LX'].map((p) => createAgent(app, code(p))));
    const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Lists Elsewhere', slug: `lists-elsewhere-${backend}` } });
    expect(tenant.status).toBe(201);
    otherTenantKey = tenant.body.data.apiKey;
  });
  afterAll(async () => {
    await app?.close();
  });

  const api = (method: string, path: string, key: string, body?: unknown, headers?: Record<string, string>) => app.api(method, path, { key, body, headers });
  const created = async (path: string, key: string, body: Record<string, unknown>) => {
    const res = await api('POST', path, key, body);
    expect(res.status, res.text).toBe(201);
    return res.body.data;
  };
  /** A space of `owner` shared with the editor and the viewer, with one category and one item. */
  const sharedSpace = async (name = 'Shared') => {
    const space = await created('/api/spaces', owner.apiKey, {
      name,
      collaborators: [
        { userId: editor.agent.id, role: 'editor' },
        { userId: viewer.agent.id, role: 'viewer' },
      ],
    });
    const category = await created('/api/categories', owner.apiKey, { spaceId: space.id, name: 'Hot' });
    const item = await created('/api/items', owner.apiKey, { spaceId: space.id, categoryId: category.id, title: 'Call Bo' });
    return { space, category, item };
  };
  const push = async (key: string, deviceId: string, changes: Record<string, unknown>[]) => {
    const res = await api('POST', '/api/sync', key, { deviceId, changes: changes.map((c) => ({ timestamp: ts(), ...c })) });
    expect(res.status, res.text).toBe(200);
    return res.body.data.acknowledged as Ack[];
  };
  const delta = async (key: string, since: number) => {
    const res = await api('GET', `/api/sync/delta?version=${since}&limit=5000&collections=${LISTS}`, key);
    expect(res.status, res.text).toBe(200);
    return res.body.data as { changes: { collection: string; op: string; id: string; version: number; data: any }[]; nextVersion: number };
  };
  const checkpoint = async (key: string) => (await delta(key, 0)).nextVersion;

  describe('REST CRUD', () => {
    it('creates, reads, lists and updates a space with every display field and its collaborators', async () => {
      const space = await created('/api/spaces', owner.apiKey, {
        name: 'Leads',
        icon: 'star',
        color: '#ff8800',
        isVisible: false,
        order: 2.5,
        collaborators: [{ userId: editor.agent.id, role: 'editor' }],
      });
      expect(space).toMatchObject({
        name: 'Leads',
        icon: 'star',
        color: '#ff8800',
        isVisible: false,
        order: 2.5,
        collaborators: [{ userId: editor.agent.id, role: 'editor' }],
        ownerId: owner.agent.id,
        isDeleted: false,
      });
      expect(space.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(space.version).toBeGreaterThan(0);
      expect(Date.parse(space.createdAt)).not.toBeNaN();
      expect(Date.parse(space.updatedAt)).not.toBeNaN();

      expect((await api('GET', `/api/spaces/${space.id}`, owner.apiKey)).body.data).toEqual(space);
      expect((await api('GET', `/api/spaces/${space.id}`, editor.apiKey)).body.data).toEqual(space);
      const listed = await api('GET', '/api/spaces', owner.apiKey);
      expect(listed.status).toBe(200);
      expect(listed.body.data.find((s: { id: string }) => s.id === space.id)).toEqual(space);

      const patched = await api('PATCH', `/api/spaces/${space.id}`, owner.apiKey, { name: 'Leads 2', icon: null, color: '#000', isVisible: true, order: -1 });
      expect(patched.status, patched.text).toBe(200);
      expect(patched.body.data).toMatchObject({ name: 'Leads 2', icon: null, color: '#000', isVisible: true, order: -1, collaborators: space.collaborators });
      expect(patched.body.data.version).toBeGreaterThan(space.version);
      // A defaulted space: no icon or colour, visible, order 0, no collaborators.
      const plain = await created('/api/spaces', owner.apiKey, { name: 'Plain' });
      expect(plain).toMatchObject({ icon: null, color: null, isVisible: true, order: 0, collaborators: [] });
    });

    it('creates, lists by space and updates categories with their display fields', async () => {
      const { space } = await sharedSpace();
      const cat = await created('/api/categories', owner.apiKey, { spaceId: space.id, name: 'Warm', icon: 'fire', color: 'red', isVisible: false, order: 3 });
      expect(cat).toMatchObject({ spaceId: space.id, name: 'Warm', icon: 'fire', color: 'red', isVisible: false, order: 3, isDeleted: false });
      expect((await api('GET', `/api/categories/${cat.id}`, viewer.apiKey)).body.data).toEqual(cat);
      const listed = await api('GET', `/api/categories?spaceId=${space.id}`, owner.apiKey);
      expect(listed.body.data.map((c: { name: string }) => c.name)).toEqual(['Hot', 'Warm']);
      const patched = await api('PATCH', `/api/categories/${cat.id}`, editor.apiKey, { name: 'Cold', order: 0.5, isVisible: true });
      expect(patched.status, patched.text).toBe(200);
      expect(patched.body.data).toMatchObject({ name: 'Cold', order: 0.5, isVisible: true, icon: 'fire', spaceId: space.id });
    });

    it('creates and updates items with every field, filtered by space and category', async () => {
      const { space, category } = await sharedSpace();
      const other = await created('/api/categories', owner.apiKey, { spaceId: space.id, name: 'Other' });
      const item = await created('/api/items', editor.apiKey, {
        spaceId: space.id,
        categoryId: category.id,
        title: 'Dune',
        description: 'Novel',
        notes: 'lend to Bo',
        type: 'book',
        refId: 'isbn:9780441013593',
        priority: 'high',
        order: 7,
        tags: ['scifi', 'classic'],
        dueDate: '2031-03-01T10:00:00.000Z',
      });
      expect(item).toMatchObject({
        spaceId: space.id,
        categoryId: category.id,
        title: 'Dune',
        description: 'Novel',
        notes: 'lend to Bo',
        type: 'book',
        refId: 'isbn:9780441013593',
        priority: 'high',
        order: 7,
        tags: ['scifi', 'classic'],
        dueDate: '2031-03-01T10:00:00.000Z',
        isCompleted: false,
        completedAt: null,
        completedBy: null,
        isDeleted: false,
      });
      const bare = await created('/api/items', owner.apiKey, { spaceId: space.id, title: 'Bare' });
      expect(bare).toMatchObject({ categoryId: null, type: 'custom', refId: null, tags: [], order: 0, priority: null, dueDate: null, description: null, notes: null });

      const inCategory = await api('GET', `/api/items?spaceId=${space.id}&categoryId=${category.id}`, viewer.apiKey);
      expect(inCategory.body.data.map((i: { title: string }) => i.title).sort()).toEqual(['Call Bo', 'Dune']);
      const inSpace = await api('GET', `/api/items?spaceId=${space.id}`, viewer.apiKey);
      expect(inSpace.body.data.map((i: { title: string }) => i.title).sort()).toEqual(['Bare', 'Call Bo', 'Dune']);

      const patched = await api('PATCH', `/api/items/${item.id}`, editor.apiKey, {
        categoryId: other.id,
        priority: 'low',
        tags: ['read'],
        dueDate: null,
        type: 'movie',
        refId: null,
        notes: null,
      });
      expect(patched.status, patched.text).toBe(200);
      expect(patched.body.data).toMatchObject({ categoryId: other.id, priority: 'low', tags: ['read'], dueDate: null, type: 'movie', refId: null, notes: null, title: 'Dune' });
      expect(patched.body.data.version).toBeGreaterThan(item.version);
      expect((await api('GET', `/api/items/${item.id}`, owner.apiKey)).body.data).toEqual(patched.body.data);
      const uncategorised = await api('PATCH', `/api/items/${item.id}`, editor.apiKey, { categoryId: null });
      expect(uncategorised.body.data.categoryId).toBeNull();
    });

    it('stamps completedAt and completedBy {userId, deviceId} on completion and clears them on reopening', async () => {
      const { item } = await sharedSpace();
      const before = Date.now();
      const done = await api('PATCH', `/api/items/${item.id}`, editor.apiKey, { isCompleted: true }, { 'x-device-id': 'tablet-7' });
      expect(done.status, done.text).toBe(200);
      expect(done.body.data).toMatchObject({ isCompleted: true, completedBy: { userId: editor.agent.id, deviceId: 'tablet-7' } });
      expect(Date.parse(done.body.data.completedAt)).toBeGreaterThanOrEqual(before - 1000);
      expect(Date.parse(done.body.data.completedAt)).toBeLessThanOrEqual(Date.now() + 1000);

      // Editing another field keeps the stamps; completing again does not re-stamp.
      const edited = await api('PATCH', `/api/items/${item.id}`, owner.apiKey, { priority: 'p1', isCompleted: true });
      expect(edited.body.data).toMatchObject({ priority: 'p1', completedAt: done.body.data.completedAt, completedBy: done.body.data.completedBy });

      const reopened = await api('PATCH', `/api/items/${item.id}`, owner.apiKey, { isCompleted: false });
      expect(reopened.body.data).toMatchObject({ isCompleted: false, completedAt: null, completedBy: null, priority: 'p1' });

      // A completed create keeps the device's completedAt and stamps who.
      const space = item.spaceId;
      const direct = await created('/api/items', owner.apiKey, { spaceId: space, title: 'Done already', isCompleted: true, completedAt: '2030-01-02T03:04:05.000Z' });
      expect(direct).toMatchObject({ isCompleted: true, completedAt: '2030-01-02T03:04:05.000Z', completedBy: { userId: owner.agent.id } });
    });

    it('deletes categories and items: 204, then 404, and listed only with includeDeleted', async () => {
      const { space, category, item } = await sharedSpace();
      expect((await api('DELETE', `/api/items/${item.id}`, editor.apiKey)).status).toBe(204);
      expect((await api('GET', `/api/items/${item.id}`, owner.apiKey)).status).toBe(404);
      const at = await checkpoint(owner.apiKey);
      expect((await api('DELETE', `/api/items/${item.id}`, editor.apiKey)).status).toBe(404);
      expect((await api('PATCH', `/api/items/${item.id}`, owner.apiKey, { title: 'back?' })).status).toBe(404);
      expect((await api('GET', `/api/items?spaceId=${space.id}`, owner.apiKey)).body.data).toEqual([]);
      expect((await delta(owner.apiKey, at)).changes, 'a second delete or an edit of a tombstone writes nothing').toEqual([]);
      const withDeleted = await api('GET', `/api/items?spaceId=${space.id}&includeDeleted=true`, owner.apiKey);
      expect(withDeleted.body.data).toEqual([expect.objectContaining({ id: item.id, isDeleted: true, title: 'Call Bo' })]);
      expect((await api('DELETE', `/api/categories/${category.id}`, owner.apiKey)).status).toBe(204);
      expect((await api('GET', `/api/categories/${category.id}`, owner.apiKey)).status).toBe(404);
      // A deleted category cannot be named by a new item.
      const res = await api('POST', '/api/items', owner.apiKey, { spaceId: space.id, categoryId: category.id, title: 'x' });
      expect(res.status).toBe(404);
    });
  });

  describe('validation', () => {
    it('answers 400 to blank, too long, badly typed, unknown and mis-enumerated fields and changes nothing', async () => {
      const { space, item } = await sharedSpace();
      const before = await checkpoint(owner.apiKey);
      const bad: [string, string, Record<string, unknown>, string][] = [
        ['POST', '/api/spaces', { name: '' }, 'name'],
        ['POST', '/api/spaces', { name: '   ' }, 'name'],
        ['POST', '/api/spaces', { name: 'x'.repeat(201) }, 'name'],
        ['POST', '/api/spaces', { name: 'ok', owner: 'me' }, 'owner'],
        ['POST', '/api/spaces', { name: 'ok', ownerId: outsider.agent.id }, 'ownerId'],
        ['POST', '/api/spaces', { name: 'ok', collaborators: [{ userId: editor.agent.id, role: 'admin' }] }, 'collaborators'],
        ['POST', '/api/spaces', { name: 'ok', collaborators: [{ userId: 'not-a-uuid', role: 'viewer' }] }, 'collaborators'],
        ['POST', '/api/spaces', { name: 'ok', isVisible: 'yes' }, 'isVisible'],
        ['POST', '/api/categories', { spaceId: space.id, name: '' }, 'name'],
        ['POST', '/api/categories', { name: 'no space' }, 'spaceId'],
        ['POST', '/api/items', { spaceId: space.id, title: '' }, 'title'],
        ['POST', '/api/items', { spaceId: space.id, title: 't'.repeat(501) }, 'title'],
        ['POST', '/api/items', { spaceId: space.id, title: 'ok', type: 'video' }, 'type'],
        ['POST', '/api/items', { spaceId: space.id, title: 'ok', tags: [''] }, 'tags'],
        ['POST', '/api/items', { spaceId: space.id, title: 'ok', dueDate: 'tomorrow' }, 'dueDate'],
        ['POST', '/api/items', { spaceId: space.id, title: 'ok', completedBy: { userId: owner.agent.id } }, 'completedBy'],
        ['PATCH', `/api/items/${item.id}`, { title: '   ' }, 'title'],
        ['PATCH', `/api/items/${item.id}`, { type: 'song' }, 'type'],
        ['PATCH', `/api/items/${item.id}`, { spaceId: randomUUID() }, 'spaceId'],
        ['PATCH', `/api/items/${item.id}`, { isDeleted: true }, 'isDeleted'],
        ['PATCH', `/api/categories/${item.categoryId}`, { spaceId: randomUUID() }, 'spaceId'],
        ['PATCH', `/api/spaces/${space.id}`, { name: '' }, 'name'],
        ['PATCH', `/api/spaces/${space.id}`, { version: 'one' }, 'version'],
      ];
      for (const [method, path, body, field] of bad) {
        const res = await api(method, path, owner.apiKey, body);
        expect(res.status, `${method} ${path} ${JSON.stringify(body)}: ${res.text}`).toBe(400);
        expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
        expect(JSON.stringify(res.body), `${method} ${path} names ${field}`).toContain(field);
      }
      expect((await delta(owner.apiKey, before)).changes).toEqual([]);
      expect((await api('GET', `/api/items/${item.id}`, owner.apiKey)).body.data).toEqual(item);
    });

    it('refuses with 400 a categoryId of another space, on create and on update', async () => {
      const a = await sharedSpace('A');
      const b = await sharedSpace('B');
      const create = await api('POST', '/api/items', owner.apiKey, { spaceId: a.space.id, categoryId: b.category.id, title: 'cross' });
      expect(create.status, create.text).toBe(400);
      const update = await api('PATCH', `/api/items/${a.item.id}`, owner.apiKey, { categoryId: b.category.id });
      expect(update.status, update.text).toBe(400);
      expect((await api('GET', `/api/items/${a.item.id}`, owner.apiKey)).body.data.categoryId).toBe(a.category.id);
      expect((await api('GET', `/api/items?spaceId=${a.space.id}`, owner.apiKey)).body.data).toHaveLength(1);
    });

    it('answers 409 to a PATCH whose version is stale and applies one at the current version', async () => {
      const { item } = await sharedSpace();
      const moved = await api('PATCH', `/api/items/${item.id}`, editor.apiKey, { title: 'Moved on' });
      expect(moved.status).toBe(200);
      const stale = await api('PATCH', `/api/items/${item.id}`, owner.apiKey, { title: 'Stale', version: item.version });
      expect(stale.status).toBe(409);
      expect(stale.body).toMatchObject({ success: false, error: 'VERSION_MISMATCH' });
      expect((await api('GET', `/api/items/${item.id}`, owner.apiKey)).body.data.title).toBe('Moved on');
      const current = await api('PATCH', `/api/items/${item.id}`, owner.apiKey, { title: 'Fresh', version: moved.body.data.version });
      expect(current.status, current.text).toBe(200);
      expect(current.body.data.title).toBe('Fresh');
      const staleSpace = await api('PATCH', `/api/spaces/${item.spaceId}`, owner.apiKey, { name: 'x', version: 1 });
      expect(staleSpace.status).toBe(409);
    });
  });

  describe('deleting a space', () => {
    it('tombstones its categories and items: deletes in every member’s delta, 404 over REST', async () => {
      const { space, category, item } = await sharedSpace();
      const second = await created('/api/items', editor.apiKey, { spaceId: space.id, title: 'Second' });
      const gone = await created('/api/items', editor.apiKey, { spaceId: space.id, title: 'Gone before' });
      expect((await api('DELETE', `/api/items/${gone.id}`, editor.apiKey)).status).toBe(204);
      const ownerAt = await checkpoint(owner.apiKey);
      const editorAt = await checkpoint(editor.apiKey);

      expect((await api('DELETE', `/api/spaces/${space.id}`, owner.apiKey)).status).toBe(204);

      for (const [who, since] of [
        [owner, ownerAt],
        [editor, editorAt],
      ] as const) {
        const { changes } = await delta(who.apiKey, since);
        const mine = changes.filter((c) => [space.id, category.id, item.id, second.id, gone.id].includes(c.id));
        expect(mine.map((c) => `${c.collection}:${c.op}:${c.id}`).sort()).toEqual(
          [`spaces:delete:${space.id}`, `categories:delete:${category.id}`, `items:delete:${item.id}`, `items:delete:${second.id}`].sort(),
        );
        // Each tombstone is its own new version, above the checkpoint.
        expect(new Set(mine.map((c) => c.version)).size).toBe(4);
        for (const c of mine) {
          expect(c.version).toBeGreaterThan(since);
          expect(c.data).toMatchObject({ id: c.id, isDeleted: true });
        }
      }
      for (const path of [`/api/spaces/${space.id}`, `/api/categories/${category.id}`, `/api/items/${item.id}`, `/api/items/${second.id}`]) {
        expect((await api('GET', path, owner.apiKey)).status, path).toBe(404);
        expect((await api('PATCH', path, owner.apiKey, path.includes('items') ? { title: 'x' } : { name: 'x' })).status, path).toBe(404);
      }
      expect((await api('POST', '/api/items', owner.apiKey, { spaceId: space.id, title: 'late' })).status).toBe(404);
      expect((await api('POST', '/api/categories', editor.apiKey, { spaceId: space.id, name: 'late' })).status).toBe(404);
      expect((await api('GET', '/api/spaces', owner.apiKey)).body.data.map((s: { id: string }) => s.id)).not.toContain(space.id);
      // Deleting it again is a 404 and changes nothing.
      const after = await checkpoint(owner.apiKey);
      expect((await api('DELETE', `/api/spaces/${space.id}`, owner.apiKey)).status).toBe(404);
      expect((await delta(owner.apiKey, after)).changes).toEqual([]);
    });
  });

  describe('roles and scopes', () => {
    it('lets a viewer read but not write: 403 over REST, FORBIDDEN per change through push', async () => {
      const { space, category, item } = await sharedSpace();
      expect((await api('GET', `/api/items/${item.id}`, viewer.apiKey)).status).toBe(200);
      expect((await api('GET', `/api/spaces/${space.id}`, viewer.apiKey)).status).toBe(200);
      const before = await checkpoint(owner.apiKey);
      const attempts: [string, string, unknown][] = [
        ['POST', '/api/items', { spaceId: space.id, title: 'nope' }],
        ['POST', '/api/categories', { spaceId: space.id, name: 'nope' }],
        ['PATCH', `/api/items/${item.id}`, { title: 'nope' }],
        ['PATCH', `/api/items/${item.id}`, { isCompleted: true }],
        ['PATCH', `/api/categories/${category.id}`, { name: 'nope' }],
        ['PATCH', `/api/spaces/${space.id}`, { name: 'nope' }],
        ['PATCH', `/api/spaces/${space.id}`, { collaborators: [{ userId: viewer.agent.id, role: 'editor' }] }],
        ['DELETE', `/api/items/${item.id}`, undefined],
        ['DELETE', `/api/categories/${category.id}`, undefined],
        ['DELETE', `/api/spaces/${space.id}`, undefined],
      ];
      for (const [method, path, body] of attempts) {
        const res = await api(method, path, viewer.apiKey, body);
        expect(res.status, `${method} ${path}`).toBe(403);
        expect(res.body.error).toBe('FORBIDDEN');
      }
      const acks = await push(viewer.apiKey, 'viewer-phone', [
        { localId: 'v1', entityType: 'item', operation: 'create', data: { spaceId: space.id, title: 'nope' } },
        { id: item.id, entityType: 'items', operation: 'update', data: { title: 'nope' } },
        { id: item.id, entityType: 'items', operation: 'delete' },
        { id: category.id, entityType: 'categories', operation: 'update', data: { name: 'nope' } },
        { id: space.id, entityType: 'spaces', operation: 'update', data: { name: 'nope' } },
        { id: space.id, entityType: 'spaces', operation: 'delete' },
        // The viewer's own space in the same batch is fine: results are per change.
        { localId: 'mine', entityType: 'spaces', operation: 'create', data: { name: 'Viewer own' } },
      ]);
      expect(acks.map((a) => a.code ?? a.status)).toEqual(['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'applied']);
      const { changes } = await delta(owner.apiKey, before);
      expect(changes).toEqual([]);
      expect((await api('GET', `/api/items/${item.id}`, owner.apiKey)).body.data).toEqual(item);
    });

    it('lets an editor write categories, items and the space name, but not share or delete the space', async () => {
      const { space, category, item } = await sharedSpace();
      const mine = await created('/api/items', editor.apiKey, { spaceId: space.id, categoryId: category.id, title: 'By editor' });
      expect((await api('PATCH', `/api/items/${item.id}`, editor.apiKey, { title: 'Edited' })).status).toBe(200);
      expect((await api('PATCH', `/api/categories/${category.id}`, editor.apiKey, { name: 'Renamed' })).status).toBe(200);
      expect((await api('PATCH', `/api/spaces/${space.id}`, editor.apiKey, { name: 'Renamed space', color: 'blue' })).status).toBe(200);
      expect((await api('DELETE', `/api/items/${mine.id}`, editor.apiKey)).status).toBe(204);

      const share = await api('PATCH', `/api/spaces/${space.id}`, editor.apiKey, { collaborators: [{ userId: outsider.agent.id, role: 'editor' }] });
      expect(share.status).toBe(403);
      const unshare = await api('PATCH', `/api/spaces/${space.id}`, editor.apiKey, { collaborators: [] });
      expect(unshare.status).toBe(403);
      expect((await api('DELETE', `/api/spaces/${space.id}`, editor.apiKey)).status).toBe(403);
      const acks = await push(editor.apiKey, 'editor-phone', [
        { id: space.id, entityType: 'space', operation: 'update', data: { collaborators: [] } },
        { id: space.id, entityType: 'space', operation: 'delete' },
        { id: item.id, entityType: 'item', operation: 'update', data: { notes: 'by push' } },
      ]);
      expect(acks.map((a) => a.code ?? a.status)).toEqual(['FORBIDDEN', 'FORBIDDEN', 'applied']);
      const now = (await api('GET', `/api/spaces/${space.id}`, owner.apiKey)).body.data;
      expect(now).toMatchObject({ name: 'Renamed space', collaborators: space.collaborators, isDeleted: false });
      expect((await api('GET', `/api/items/${item.id}`, outsider.apiKey)).status).toBe(404);
    });

    it('answers 404 to a user outside the space for every read and write, by id or into the space', async () => {
      const { space, category, item } = await sharedSpace();
      const before = await checkpoint(owner.apiKey);
      for (const path of [`/api/spaces/${space.id}`, `/api/categories/${category.id}`, `/api/items/${item.id}`]) {
        expect((await api('GET', path, outsider.apiKey)).status, path).toBe(404);
        expect((await api('PATCH', path, outsider.apiKey, path.includes('items') ? { title: 'x' } : { name: 'x' })).status, path).toBe(404);
        expect((await api('DELETE', path, outsider.apiKey)).status, path).toBe(404);
      }
      const shareSelf = await api('PATCH', `/api/spaces/${space.id}`, outsider.apiKey, { collaborators: [{ userId: outsider.agent.id, role: 'editor' }] });
      expect(shareSelf.status).toBe(404);
      expect((await api('POST', '/api/items', outsider.apiKey, { spaceId: space.id, title: 'x' })).status).toBe(404);
      expect((await api('POST', '/api/categories', outsider.apiKey, { spaceId: space.id, name: 'x' })).status).toBe(404);
      // Naming a foreign category from a space of one's own is refused the same way.
      const own = await created('/api/spaces', outsider.apiKey, { name: 'Outsider own' });
      expect((await api('POST', '/api/items', outsider.apiKey, { spaceId: own.id, categoryId: category.id, title: 'x' })).status).toBe(404);
      for (const collection of ['spaces', 'categories', 'items']) {
        const listed = await api('GET', `/api/${collection}?spaceId=${space.id}&includeDeleted=true`, outsider.apiKey);
        expect(listed.status).toBe(200);
        const ids = listed.body.data.map((r: { id: string }) => r.id);
        for (const id of [space.id, category.id, item.id]) expect(ids).not.toContain(id);
      }
      const acks = await push(outsider.apiKey, 'outsider-phone', [
        { localId: 'o1', entityType: 'item', operation: 'create', data: { spaceId: space.id, title: 'x' } },
        { localId: 'o2', entityType: 'category', operation: 'create', data: { spaceId: space.id, name: 'x' } },
        { id: item.id, entityType: 'items', operation: 'update', data: { title: 'x' } },
        { id: item.id, entityType: 'items', operation: 'delete' },
        { id: space.id, entityType: 'spaces', operation: 'update', data: { collaborators: [{ userId: outsider.agent.id, role: 'editor' }] } },
        { id: space.id, entityType: 'spaces', operation: 'delete' },
      ]);
      expect(acks.map((a) => a.code)).toEqual(['NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND']);
      // The outsider's own space is not the owner's business either.
      expect((await delta(owner.apiKey, before)).changes).toEqual([]);
      expect((await api('GET', `/api/items/${item.id}`, owner.apiKey)).body.data).toEqual(item);
    });

    it('answers 404 to another tenant for every read and write of the lists', async () => {
      const { space, category, item } = await sharedSpace();
      const before = await checkpoint(owner.apiKey);
      for (const path of [`/api/spaces/${space.id}`, `/api/categories/${category.id}`, `/api/items/${item.id}`]) {
        expect((await api('GET', path, otherTenantKey)).status, path).toBe(404);
        expect((await api('PATCH', path, otherTenantKey, path.includes('items') ? { title: 'x' } : { name: 'x' })).status, path).toBe(404);
        expect((await api('DELETE', path, otherTenantKey)).status, path).toBe(404);
      }
      expect((await api('POST', '/api/items', otherTenantKey, { spaceId: space.id, title: 'x' })).status).toBe(404);
      expect((await api('POST', '/api/categories', otherTenantKey, { spaceId: space.id, name: 'x' })).status).toBe(404);
      expect((await api('GET', `/api/items?spaceId=${space.id}&includeDeleted=true`, otherTenantKey)).body.data).toEqual([]);
      const acks = await push(otherTenantKey, 'foreign-phone', [
        { localId: 'f1', entityType: 'item', operation: 'create', data: { spaceId: space.id, title: 'x' } },
        { id: item.id, entityType: 'items', operation: 'update', data: { title: 'x' } },
        { id: category.id, entityType: 'categories', operation: 'delete' },
        { id: space.id, entityType: 'spaces', operation: 'delete' },
      ]);
      expect(acks.map((a) => a.code)).toEqual(['NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND']);
      const theirs = await api('GET', `/api/sync/delta?version=0&collections=${LISTS}`, otherTenantKey);
      expect(theirs.body.data.changes).toEqual([]);
      expect((await delta(owner.apiKey, before)).changes).toEqual([]);
    });
  });

  describe('through POST /api/sync', () => {
    it('resolves localIds and spaceLocalId/categoryLocalId within one batch and in later batches', async () => {
      const device = `dev-${backend}-${++seq}`;
      const first = await push(owner.apiKey, device, [
        { localId: 's1', entityType: 'space', operation: 'create', data: { name: 'Offline', collaborators: [{ userId: viewer.agent.id, role: 'viewer' }] } },
        { localId: 'k1', entityType: 'category', operation: 'create', data: { spaceLocalId: 's1', name: 'Todo' } },
        { localId: 'i1', entityType: 'item', operation: 'create', data: { spaceLocalId: 's1', categoryLocalId: 'k1', title: 'First', tags: ['x'] } },
        { localId: 'i1', entityType: 'item', operation: 'update', timestamp: ts(1), data: { isCompleted: true, priority: 'high' } },
      ]);
      expect(first.map((a) => a.error ?? a.status)).toEqual(['applied', 'applied', 'applied', 'applied']);
      const [spaceId, categoryId, itemId] = first.map((a) => a.serverId);
      expect(first[3].serverId).toBe(itemId);
      const item = (await api('GET', `/api/items/${itemId}`, viewer.apiKey)).body.data;
      expect(item).toMatchObject({ spaceId, categoryId, title: 'First', isCompleted: true, priority: 'high', completedBy: { userId: owner.agent.id, deviceId: device } });
      expect(item.version).toBe(first[3].version);

      // A later batch names the earlier local ids. (The new category comes first: see the
      // report on push.ts writing an item before the category it names in the same batch.)
      const second = await push(owner.apiKey, device, [
        { localId: 'k2', entityType: 'categories', operation: 'create', data: { spaceId, name: 'By id' } },
        { localId: 'i2', entityType: 'items', operation: 'create', data: { spaceLocalId: 's1', categoryLocalId: 'k1', title: 'Second' } },
        { localId: 'k1', entityType: 'categories', operation: 'update', data: { name: 'Doing' } },
        { localId: 'i1', entityType: 'items', operation: 'update', data: { isCompleted: false } },
        { localId: 'i3', entityType: 'items', operation: 'create', data: { spaceId, categoryLocalId: 'k2', title: 'Mixed' } },
        { localId: 'i2', entityType: 'items', operation: 'delete' },
      ]);
      expect(second.map((a) => a.error ?? a.status)).toEqual(['applied', 'applied', 'applied', 'applied', 'applied', 'applied']);
      expect(second[2].serverId).toBe(categoryId);
      expect(second[3].serverId).toBe(itemId);
      expect(second[5].serverId).toBe(second[1].serverId);
      expect((await api('GET', `/api/categories/${categoryId}`, owner.apiKey)).body.data.name).toBe('Doing');
      expect((await api('GET', `/api/items/${itemId}`, owner.apiKey)).body.data).toMatchObject({ isCompleted: false, completedAt: null, completedBy: null });
      expect((await api('GET', `/api/items/${second[4].serverId}`, owner.apiKey)).body.data).toMatchObject({ spaceId, categoryId: second[0].serverId });
      expect((await api('GET', `/api/items/${second[1].serverId}`, owner.apiKey)).status).toBe(404);
      const all = await api('GET', `/api/items?spaceId=${spaceId}&includeDeleted=true`, owner.apiKey);
      expect(all.body.data).toHaveLength(3);
    });

    it('answers NOT_FOUND per change for an unknown localId, one of another device, and a foreign space', async () => {
      const device = `dev-${backend}-${++seq}`;
      const base = await push(owner.apiKey, device, [{ localId: 's1', entityType: 'space', operation: 'create', data: { name: 'Mine' } }]);
      expect(base[0].status).toBe('applied');
      const foreign = await created('/api/spaces', outsider.apiKey, { name: 'Foreign' });
      const acks = await push(owner.apiKey, device, [
        { localId: 'i1', entityType: 'item', operation: 'create', data: { spaceLocalId: 'never-made', title: 'x' } },
        { localId: 'i2', entityType: 'item', operation: 'create', data: { spaceLocalId: 's1', categoryLocalId: 'nope', title: 'x' } },
        { localId: 'ghost', entityType: 'item', operation: 'update', data: { title: 'x' } },
        { localId: 'ghost', entityType: 'item', operation: 'delete' },
        { localId: 'i3', entityType: 'item', operation: 'create', data: { spaceId: foreign.id, title: 'x' } },
        { localId: 'i4', entityType: 'item', operation: 'create', data: { spaceId: randomUUID(), title: 'x' } },
        { id: randomUUID(), entityType: 'item', operation: 'update', data: { title: 'x' } },
        { localId: 'ok', entityType: 'item', operation: 'create', data: { spaceLocalId: 's1', title: 'fine' } },
      ]);
      expect(acks.map((a) => a.code ?? a.status)).toEqual(['NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND', 'applied']);
      // Local ids belong to the device that made them.
      const elsewhere = await push(owner.apiKey, `${device}-other`, [
        { localId: 'i9', entityType: 'item', operation: 'create', data: { spaceLocalId: 's1', title: 'x' } },
      ]);
      expect(elsewhere[0]).toMatchObject({ success: false, code: 'NOT_FOUND' });
      const items = await api('GET', `/api/items?spaceId=${base[0].serverId}`, owner.apiKey);
      expect(items.body.data.map((i: { title: string }) => i.title)).toEqual(['fine']);
    });

    it('applies the REST rules to pushed changes: validation, space moves, cross-space categories, editors and owners', async () => {
      const { space, category, item } = await sharedSpace();
      const other = await sharedSpace('Other');
      const device = `dev-${backend}-${++seq}`;
      const acks = await push(editor.apiKey, device, [
        { localId: 'b1', entityType: 'space', operation: 'create', data: { name: '  ' } },
        { localId: 'b2', entityType: 'item', operation: 'create', data: { spaceId: space.id, title: 'x', type: 'video' } },
        { localId: 'b3', entityType: 'item', operation: 'create', data: { spaceId: space.id, title: 'x', colour: 'red' } },
        { id: item.id, entityType: 'item', operation: 'update', data: { spaceId: other.space.id } },
        { id: item.id, entityType: 'item', operation: 'update', data: { categoryId: other.category.id } },
        { localId: 'b4', entityType: 'item', operation: 'create', data: { spaceId: space.id, categoryId: other.category.id, title: 'x' } },
        { localId: 'b5', entityType: 'item', operation: 'create', data: { spaceId: space.id, categoryId: category.id, title: 'good', refId: 'tmdb:1', type: 'movie' } },
        { id: space.id, entityType: 'space', operation: 'update', data: { collaborators: [] } },
      ]);
      expect(acks.map((a) => a.code ?? a.status)).toEqual([
        'VALIDATION_FAILED',
        'VALIDATION_FAILED',
        'VALIDATION_FAILED',
        'VALIDATION_FAILED',
        'VALIDATION_FAILED',
        'VALIDATION_FAILED',
        'applied',
        'FORBIDDEN',
      ]);
      const now = (await api('GET', `/api/items/${item.id}`, owner.apiKey)).body.data;
      expect(now).toEqual(item);
      expect((await api('GET', `/api/items/${acks[6].serverId}`, viewer.apiKey)).body.data).toMatchObject({ title: 'good', refId: 'tmdb:1', type: 'movie' });
    });
  });
});
