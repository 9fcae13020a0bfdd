import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, quiet, type Probe } from './helpers/sockets.js';

type Agent = { apiKey: string; agent: { id: string; agentCode: string } };
type Change = { collection: string; op: 'upsert' | 'delete'; id: string; version: number; data: Record<string, any> };
type Delta = { changes: Change[]; latestVersion: number; nextVersion: number; hasMore: boolean };

const LISTS = 'spaces,categories,items';
const key = (c: { collection: string; id: string }) => `${c.collection}:${c.id}`;

describe.each(backends)('scopes (partial replication) on %s', (backend) => {
  let app: TestApp;
  let seq = 0;
  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  /** Fresh users for each test, so what they see is only what the test shares with them. */
  const agents = (n: number) => Promise.all(Array.from({ length: n }, () => createAgent(app, `SC${backend.slice(0, 2)}${++seq}`))) as Promise<Agent[]>;
  const created = async (path: string, who: Agent, body: Record<string, unknown>) => {
    const res = await app.api('POST', path, { key: who.apiKey, body });
    expect(res.status, res.text).toBe(201);
    return res.body.data;
  };
  const patch = async (path: string, who: Agent, body: Record<string, unknown>) => {
    const res = await app.api('PATCH', path, { key: who.apiKey, body });
    expect(res.status, res.text).toBe(200);
    return res.body.data;
  };
  const share = (space: { id: string }, owner: Agent, collaborators: { userId: string; role: 'viewer' | 'editor' }[]) =>
    patch(`/api/spaces/${space.id}`, owner, { collaborators });
  const contact = async () => {
    const res = await app.api('POST', '/api/contacts', { body: { firstName: 'Tenant', phonePrimary: uniquePhone() } });
    expect(res.status, res.text).toBe(201);
    return res.body.data;
  };
  /** A space with two categories and three items (one of them deleted). */
  const spaceWithContent = async (owner: Agent, name: string, collaborators: { userId: string; role: 'viewer' | 'editor' }[] = []) => {
    const space = await created('/api/spaces', owner, { name, collaborators });
    const categories = [await created('/api/categories', owner, { spaceId: space.id, name: `${name} c1` }), await created('/api/categories', owner, { spaceId: space.id, name: `${name} c2` })];
    const items = [
      await created('/api/items', owner, { spaceId: space.id, categoryId: categories[0].id, title: `${name} i1` }),
      await created('/api/items', owner, { spaceId: space.id, categoryId: categories[1].id, title: `${name} i2` }),
    ];
    const deleted = await created('/api/items', owner, { spaceId: space.id, title: `${name} gone` });
    expect((await app.api('DELETE', `/api/items/${deleted.id}`, { key: owner.apiKey })).status).toBe(204);
    return { space, categories, items, deleted, liveKeys: [`spaces:${space.id}`, ...categories.map((c) => `categories:${c.id}`), ...items.map((i) => `items:${i.id}`)] };
  };

  const pullPage = async (who: Agent, since: number, limit = 5000, collections = LISTS): Promise<Delta> => {
    const res = await app.api('GET', `/api/sync/delta?version=${since}&limit=${limit}${collections ? `&collections=${collections}` : ''}`, { key: who.apiKey });
    expect(res.status, res.text).toBe(200);
    return res.body.data;
  };
  /** Pages from `since` until hasMore is false: every change in order, and the new checkpoint. */
  const pullAll = async (who: Agent, since: number, limit = 5000, collections = LISTS) => {
    const changes: Change[] = [];
    let version = since;
    for (let page = 0; ; page++) {
      expect(page, 'paging must end').toBeLessThan(10_000);
      const delta = await pullPage(who, version, limit, collections);
      expect(delta.changes.length).toBeLessThanOrEqual(limit);
      changes.push(...delta.changes);
      expect(delta.nextVersion).toBeGreaterThanOrEqual(version);
      version = delta.nextVersion;
      if (!delta.hasMore) return { changes, checkpoint: version };
    }
  };
  const checkpointOf = async (who: Agent) => (await pullAll(who, 0)).checkpoint;
  /** A device's local store: applies pulled changes (a delete removes the record). */
  const apply = (store: Map<string, Record<string, any>>, changes: Change[]) => {
    for (const c of changes) {
      if (c.op === 'delete') store.delete(key(c));
      else store.set(key(c), c.data);
    }
    return store;
  };
  /** What a fresh device of `who` holds after a full sync. */
  const fullState = async (who: Agent, collections = LISTS) => apply(new Map(), (await pullAll(who, 0, 5000, collections)).changes);
  const expectOncePerRecord = (changes: Change[]) => {
    const keys = changes.map(key);
    expect(keys.length, `duplicates in ${JSON.stringify(keys)}`).toBe(new Set(keys).size);
  };
  const expectVersionOrder = (changes: Change[]) => {
    for (let i = 1; i < changes.length; i++) expect(changes[i].version, `change ${i} out of order`).toBeGreaterThan(changes[i - 1].version);
  };

  describe('pull visibility', () => {
    it('delivers spaces, categories and items to the owner and collaborators only; contacts to everyone; honours the collections filter', async () => {
      const [owner, collaborator, outsider] = await agents(3);
      const shared = await spaceWithContent(owner, 'Shared', [{ userId: collaborator.agent.id, role: 'viewer' }]);
      const privateSpace = await spaceWithContent(owner, 'Private');
      const c = await contact();

      const ownerView = await pullAll(owner, 0);
      expect(ownerView.changes.filter((ch) => ch.op === 'upsert').map(key).sort()).toEqual([...shared.liveKeys, ...privateSpace.liveKeys].sort());
      // Tombstones of what it could see reach it too.
      expect(ownerView.changes.filter((ch) => ch.op === 'delete').map(key).sort()).toEqual([`items:${shared.deleted.id}`, `items:${privateSpace.deleted.id}`].sort());
      expectOncePerRecord(ownerView.changes);
      expectVersionOrder(ownerView.changes);

      const collaboratorView = await pullAll(collaborator, 0);
      expect(collaboratorView.changes.map(key).sort()).toEqual([...shared.liveKeys, `items:${shared.deleted.id}`].sort());
      expect((await pullAll(outsider, 0)).changes).toEqual([]);

      // The filter: items only, or contacts only (tenant-wide, the same for all three).
      const itemsOnly = await pullAll(collaborator, 0, 5000, 'items');
      expect(itemsOnly.changes.map(key).sort()).toEqual([...shared.items.map((i) => `items:${i.id}`), `items:${shared.deleted.id}`].sort());
      expect(new Set(itemsOnly.changes.map((ch) => ch.collection))).toEqual(new Set(['items']));
      for (const who of [owner, collaborator, outsider]) {
        const contacts = await pullAll(who, 0, 5000, 'contacts');
        expect(contacts.changes.every((ch) => ch.collection === 'contacts')).toBe(true);
        expect(contacts.changes.map((ch) => ch.id)).toContain(c.id);
      }
      // Everything (no filter): lists and contacts together, the lists as above.
      const all = await pullAll(outsider, 0, 5000, '');
      expect(all.changes.map((ch) => ch.id)).toContain(c.id);
      expect(all.changes.filter((ch) => LISTS.split(',').includes(ch.collection))).toEqual([]);
    });
  });

  describe('gaining and losing access', () => {
    it('delivers the whole space on the next pull after being added, though older than the checkpoint, exactly once', async () => {
      const [owner, user] = await agents(2);
      const s = await spaceWithContent(owner, 'Gain');
      const before = await checkpointOf(user);
      // A change after the user's checkpoint but before the grant, and a contact in between.
      const edited = await patch(`/api/items/${s.items[0].id}`, owner, { notes: 'edited before sharing' });
      await contact();
      expect((await pullAll(user, before)).changes).toEqual([]);

      await share(s.space, owner, [{ userId: user.agent.id, role: 'viewer' }]);
      const gained = await pullAll(user, before);
      expect(gained.changes.map(key).sort()).toEqual([...s.liveKeys].sort());
      expect(gained.changes.every((c) => c.op === 'upsert')).toBe(true);
      expectOncePerRecord(gained.changes);
      expectVersionOrder(gained.changes);
      for (const c of gained.changes) expect(c.version).toBeGreaterThan(before);
      // Each record arrives in its current state (the space with its new collaborators).
      expect(gained.changes.find((c) => c.id === s.items[0].id)?.data).toMatchObject({ notes: 'edited before sharing', version: edited.version });
      expect(gained.changes.find((c) => c.id === s.space.id)?.data.collaborators).toEqual([{ userId: user.agent.id, role: 'viewer' }]);
      expect(gained.changes.some((c) => c.id === s.deleted.id)).toBe(false);
      // Exactly once: the next pull brings nothing more, and a new device gets the same state.
      expect((await pullAll(user, gained.checkpoint)).changes).toEqual([]);
      expect(await fullState(user)).toEqual(apply(new Map(), gained.changes));
      // Page by page the same, each record once.
      const paged = await pullAll(user, before, 1);
      expect(paged.changes).toEqual(gained.changes);
    });

    it('delivers deletes for everything on losing access, and the whole space again on regaining it', async () => {
      const [owner, user] = await agents(2);
      const s = await spaceWithContent(owner, 'Lose', [{ userId: user.agent.id, role: 'editor' }]);
      const first = await pullAll(user, 0);
      const store = apply(new Map(), first.changes);
      expect([...store.keys()].sort()).toEqual([...s.liveKeys].sort());

      await share(s.space, owner, []);
      const lost = await pullAll(user, first.checkpoint);
      expect(lost.changes.map((c) => `${c.op}:${key(c)}`).sort()).toEqual(s.liveKeys.map((k) => `delete:${k}`).sort());
      expectOncePerRecord(lost.changes);
      for (const c of lost.changes) expect(c.data).toMatchObject({ id: c.id, isDeleted: true });
      expect(apply(store, lost.changes).size).toBe(0);
      expect((await app.api('GET', `/api/items/${s.items[0].id}`, { key: user.apiKey })).status).toBe(404);
      const push = await app.api('POST', '/api/sync', {
        key: user.apiKey,
        body: { deviceId: 'ex-member', changes: [{ id: s.items[0].id, entityType: 'items', operation: 'update', timestamp: new Date().toISOString(), data: { title: 'x' } }] },
      });
      expect(push.body.data.acknowledged[0]).toMatchObject({ success: false, code: 'NOT_FOUND' });

      // Changes made while the user is out: not theirs to see, but current on regaining.
      const added = await created('/api/items', owner, { spaceId: s.space.id, title: 'while away' });
      await patch(`/api/items/${s.items[1].id}`, owner, { title: 'renamed while away' });
      expect((await app.api('DELETE', `/api/categories/${s.categories[1].id}`, { key: owner.apiKey })).status).toBe(204);
      expect((await pullAll(user, lost.checkpoint)).changes).toEqual([]);

      await share(s.space, owner, [{ userId: user.agent.id, role: 'viewer' }]);
      const regained = await pullAll(user, lost.checkpoint);
      expectOncePerRecord(regained.changes);
      expectVersionOrder(regained.changes);
      apply(store, regained.changes);
      const expectedKeys = [`spaces:${s.space.id}`, `categories:${s.categories[0].id}`, ...s.items.map((i) => `items:${i.id}`), `items:${added.id}`];
      expect([...store.keys()].sort()).toEqual(expectedKeys.sort());
      expect(store.get(`items:${s.items[1].id}`)?.title).toBe('renamed while away');
      expect(store).toEqual(await fullState(user));
      expect((await pullAll(user, regained.checkpoint)).changes).toEqual([]);
    });

    it('re-delivers nothing on a role change from viewer to editor, but then accepts the writes', async () => {
      const [owner, user] = await agents(2);
      const s = await spaceWithContent(owner, 'Role', [{ userId: user.agent.id, role: 'viewer' }]);
      const first = await pullAll(user, 0);
      const write = (title: string) =>
        app.api('POST', '/api/sync', {
          key: user.apiKey,
          body: { deviceId: `role-${backend}`, changes: [{ id: s.items[0].id, entityType: 'items', operation: 'update', timestamp: new Date().toISOString(), data: { title } }] },
        });
      expect((await write('as viewer')).body.data.acknowledged[0]).toMatchObject({ success: false, code: 'FORBIDDEN' });

      await share(s.space, owner, [{ userId: user.agent.id, role: 'editor' }]);
      const after = await pullAll(user, first.checkpoint);
      // Only the space itself changed (its collaborators), so only it comes.
      expect(after.changes.map(key)).toEqual([`spaces:${s.space.id}`]);
      expect(after.changes[0].data.collaborators).toEqual([{ userId: user.agent.id, role: 'editor' }]);

      const ack = (await write('as editor')).body.data.acknowledged[0];
      expect(ack).toMatchObject({ success: true, status: 'applied' });
      const next = await pullAll(user, after.checkpoint);
      expect(next.changes.map((c) => [key(c), c.data.title])).toEqual([[`items:${s.items[0].id}`, 'as editor']]);
    });

    it('delivers records changed after the grant through the ordinary range, once', async () => {
      const [owner, user] = await agents(2);
      const s = await spaceWithContent(owner, 'After');
      const base = await checkpointOf(user);
      await share(s.space, owner, [{ userId: user.agent.id, role: 'editor' }]);
      const gained = await pullAll(user, base);
      const edited = await patch(`/api/items/${s.items[1].id}`, owner, { priority: 'high' });
      const fresh = await created('/api/items', owner, { spaceId: s.space.id, title: 'after the grant' });
      const later = await pullAll(user, gained.checkpoint);
      expect(later.changes.map((c) => [key(c), c.version])).toEqual([
        [`items:${s.items[1].id}`, edited.version],
        [`items:${fresh.id}`, fresh.version],
      ]);
      // A device that missed the grant too gets it all once, in version order.
      const both = await pullAll(user, base);
      expectOncePerRecord(both.changes);
      expectVersionOrder(both.changes);
      expect(apply(new Map(), both.changes)).toEqual(apply(apply(new Map(), gained.changes), later.changes));
    });

    it('pages with small limits across grants and revokes: every change exactly once, in version order', async () => {
      const [owner, user] = await agents(2);
      const a = await spaceWithContent(owner, 'A');
      const b = await spaceWithContent(owner, 'B', [{ userId: user.agent.id, role: 'editor' }]);
      const c = await spaceWithContent(owner, 'C');
      const start = await pullAll(user, 0, 5000, '');
      const device = apply(new Map(), start.changes);

      // History after the device's checkpoint, interleaving every kind of change.
      await patch(`/api/items/${a.items[0].id}`, owner, { notes: 'before grant' });
      await contact();
      await share(a.space, owner, [{ userId: user.agent.id, role: 'viewer' }]);
      await created('/api/items', owner, { spaceId: a.space.id, title: 'A after grant' });
      await patch(`/api/items/${a.items[1].id}`, owner, { notes: 'after grant' });
      await patch(`/api/items/${b.items[0].id}`, user, { notes: 'member edit' });
      await share(b.space, owner, []);
      await patch(`/api/items/${b.items[1].id}`, owner, { notes: 'after revoke' });
      await contact();
      await share(c.space, owner, [{ userId: user.agent.id, role: 'editor' }]);
      await patch(`/api/items/${c.items[0].id}`, owner, { notes: 'between' });
      await share(c.space, owner, []);
      await created('/api/items', owner, { spaceId: c.space.id, title: 'C while out' });
      await share(c.space, owner, [{ userId: user.agent.id, role: 'viewer' }]);
      await share(b.space, owner, [{ userId: user.agent.id, role: 'viewer' }]);
      await share(b.space, owner, []);
      await contact();

      const whole = await pullAll(user, start.checkpoint, 5000, '');
      expectOncePerRecord(whole.changes);
      expectVersionOrder(whole.changes);
      const expected = await fullState(user, '');
      // A: all (old records too), B: gone, C: all including what was added while out.
      expect([...apply(new Map(device), whole.changes).keys()].sort()).toEqual([...expected.keys()].sort());
      expect(apply(new Map(device), whole.changes)).toEqual(expected);
      expect([...expected.keys()].filter((k) => b.liveKeys.includes(k))).toEqual([]);
      for (const k of [...a.liveKeys, ...c.liveKeys]) expect(expected.has(k), k).toBe(true);

      for (const limit of [1, 2, 3, 5, 8]) {
        const paged = await pullAll(user, start.checkpoint, limit, '');
        expect(paged.changes, `limit ${limit}`).toEqual(whole.changes);
        expect(paged.checkpoint).toBe(whole.checkpoint);
      }
    });
  });

  describe('real time', () => {
    const ids = (payload: { changes: Change[] }) => payload.changes.map((c) => c.id);
    let probes: Probe[] = [];
    const connect = async (who: Agent, deviceId: string) => {
      const p = await authedProbe(app.url, { apiKey: who.apiKey, deviceId: `${deviceId}-${backend}-${++seq}` });
      probes.push(p);
      return p;
    };
    const closeProbes = () => {
      closeAll(...probes);
      probes = [];
    };

    it("streams a space's changes to a collaborator while a member, and only tenant-wide ones after removal", async () => {
      try {
        const [owner, user] = await agents(2);
        const socket = await connect(user, 'member');
        const space = await created('/api/spaces', owner, { name: 'Live', collaborators: [{ userId: user.agent.id, role: 'editor' }] });
        expect(ids(await socket.waitFor('changes', (p) => p.toVersion === space.version))).toEqual([space.id]);
        const item = await created('/api/items', owner, { spaceId: space.id, title: 'Live item' });
        const got = await socket.waitFor('changes', (p) => p.toVersion === item.version);
        expect(got.changes).toEqual([expect.objectContaining({ collection: 'items', op: 'upsert', id: item.id, version: item.version })]);

        const unshared = await share(space, owner, []);
        const revoked = await socket.waitFor('changes', (p) => p.fromVersion >= unshared.version - 1 && p.changes.some((c: Change) => c.op === 'delete'));
        expect(revoked.changes.filter((c: Change) => c.op === 'delete').map(key).sort()).toEqual([`items:${item.id}`, `spaces:${space.id}`].sort());

        const hidden = await created('/api/items', owner, { spaceId: space.id, title: 'Not for you' });
        const edited = await patch(`/api/items/${item.id}`, owner, { title: 'Still not for you' });
        const c = await contact();
        const seen = await socket.waitFor('changes', (p) => p.toVersion === c.version);
        expect(ids(seen)).toEqual([c.id]);
        // One event per commit still arrives, empty, for the space's later commits.
        for (const version of [hidden.version, edited.version]) {
          const event = await socket.waitFor('changes', (p) => p.toVersion === version);
          expect(event.changes).toEqual([]);
        }
        await quiet();
        const leaked = socket.all('changes').flatMap((p) => ids(p)).filter((id: string) => id === hidden.id);
        expect(leaked).toEqual([]);
      } finally {
        closeProbes();
      }
    });

    it('streams the later changes of a space to a socket that connected after its user was added', async () => {
      try {
        const [owner, user] = await agents(2);
        const space = await created('/api/spaces', owner, { name: 'Before connect' });
        await share(space, owner, [{ userId: user.agent.id, role: 'viewer' }]);
        const socket = await connect(user, 'late');
        const item = await created('/api/items', owner, { spaceId: space.id, title: 'After connect' });
        expect(ids(await socket.waitFor('changes', (p) => p.toVersion === item.version))).toEqual([item.id]);
        const renamed = await patch(`/api/spaces/${space.id}`, owner, { name: 'Renamed' });
        const event = await socket.waitFor('changes', (p) => p.toVersion === renamed.version);
        expect(event.changes).toEqual([expect.objectContaining({ id: space.id, data: expect.objectContaining({ name: 'Renamed' }) })]);
      } finally {
        closeProbes();
      }
    });

    it("gives each socket exactly one changes event per commit, chained from the previous one, with what it may see", async () => {
      try {
        const [owner, member, outsider] = await agents(3);
        const privateSpace = await created('/api/spaces', owner, { name: 'Owner only' });
        const privateItem = await created('/api/items', owner, { spaceId: privateSpace.id, title: 'mine' });
        const writerDevice = `writer-${backend}-${++seq}`;
        const writer = await authedProbe(app.url, { apiKey: owner.apiKey, deviceId: writerDevice });
        probes.push(writer);
        const memberSocket = await connect(member, 'chain-member');
        const outsiderSocket = await connect(outsider, 'chain-outsider');
        const ownerOther = await connect(owner, 'chain-owner-2');
        const sockets = { memberSocket, outsiderSocket, ownerOther };
        const marks = Object.fromEntries(Object.entries(sockets).map(([name, s]) => [name, s.received.length]));
        const writerMark = writer.received.length;

        const start = (await pullPage(owner, 0, 1, '')).latestVersion;
        const now = Date.now();
        const batches: Record<string, unknown>[][] = [
          [{ localId: 's', entityType: 'space', operation: 'create', data: { name: 'Chain', collaborators: [{ userId: member.agent.id, role: 'editor' }] } }],
          [
            { localId: 'k', entityType: 'category', operation: 'create', data: { spaceLocalId: 's', name: 'k' } },
            { localId: 'i', entityType: 'item', operation: 'create', data: { spaceLocalId: 's', categoryLocalId: 'k', title: 'i' } },
          ],
          [{ localId: 'c', entityType: 'contact', operation: 'create', data: { firstName: 'Chain', phonePrimary: uniquePhone() } }],
          [{ id: privateItem.id, entityType: 'item', operation: 'update', data: { title: 'still mine' } }],
          [
            { localId: 'i', entityType: 'item', operation: 'update', data: { isCompleted: true } },
            { localId: 'c', entityType: 'contact', operation: 'update', data: { company: 'Acme' } },
          ],
        ];
        const ranges: { to: number; ids: string[] }[] = [];
        for (const [n, changes] of batches.entries()) {
          const res = await app.api('POST', '/api/sync', {
            key: owner.apiKey,
            body: { deviceId: writerDevice, changes: changes.map((c, i) => ({ timestamp: now + n * 10 + i, ...c })) },
          });
          expect(res.status, res.text).toBe(200);
          const acks = res.body.data.acknowledged as { success: boolean; serverId: string; version: number }[];
          expect(acks.every((a) => a.success), res.text).toBe(true);
          ranges.push({ to: Math.max(...acks.map((a) => a.version)), ids: acks.map((a) => a.serverId) });
        }
        const [spaceId] = ranges[0].ids;
        const [categoryId, itemId] = ranges[1].ids;
        const [contactId] = ranges[2].ids;

        const expectedIds: Record<string, string[][]> = {
          memberSocket: [[spaceId], [categoryId, itemId], [contactId], [], [itemId, contactId]],
          outsiderSocket: [[], [], [contactId], [], [contactId]],
          ownerOther: [[spaceId], [categoryId, itemId], [contactId], [privateItem.id], [itemId, contactId]],
        };
        for (const [name, socket] of Object.entries(sockets)) {
          await socket.waitForCount('changes', batches.length, () => true, { from: marks[name] });
        }
        await quiet();
        for (const [name, socket] of Object.entries(sockets)) {
          const events = socket.all('changes', marks[name]);
          expect(events, name).toHaveLength(batches.length);
          let from = start;
          events.forEach((event, i) => {
            expect(event.fromVersion, `${name} event ${i}`).toBe(from);
            expect(event.toVersion, `${name} event ${i}`).toBe(ranges[i].to);
            expect(ids(event), `${name} event ${i}`).toEqual(expectedIds[name][i]);
            expectVersionOrder(event.changes);
            from = event.toVersion;
          });
        }
        // The writing device hears no echo of its own commits.
        expect(writer.all('changes', writerMark)).toEqual([]);
      } finally {
        closeProbes();
      }
    });
  });
});
