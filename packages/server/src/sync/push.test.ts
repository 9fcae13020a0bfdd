import { randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, openTestDb, type TestDb } from '../../test/helpers/test-db.js';
import type { Db } from '../db/db.js';
import { AppError } from '../errors.js';
import { CollectionRegistry, type CollectionDef } from './collections.js';
import { ChangeFeed, type CommitEvent } from './feed.js';
import { DEFAULT_POLICY } from './conflicts.js';
import { createPolicyStore } from './policies.js';
import { pullChanges } from './pull.js';
import { createPushEngine, type PushEngine } from './push.js';
import { withTenantWrite } from './versions.js';

const ts = () => new Date().toISOString();

/**
 * Two collections of the test's own, each just a migration (the tables below) and a collection
 * definition, as a domain module adds one: tenant-wide notes whose body the database limits
 * (CHECK) beyond what the schema says, and notes visible only to their owner (`user` scope).
 */
const notes: CollectionDef = {
  name: 'testNotes',
  aliases: ['testNote'],
  table: 'test_notes',
  wireSql: `json_build_object('id', r.id, 'version', r.version, 'body', r.body, 'isDeleted', r.is_deleted)`,
  scope: { kind: 'tenant' },
  write: {
    fields: { body: { column: 'body', type: 'text' } },
    createSchema: Type.Object({ body: Type.String({ maxLength: 1000 }) }),
    updateSchema: Type.Object({ body: Type.Optional(Type.String({ maxLength: 1000 })) }),
    operations: ['create', 'update', 'delete'],
    defaults: {},
  },
};
const privateNotes: CollectionDef = {
  name: 'testPrivateNotes',
  aliases: [],
  table: 'test_private_notes',
  wireSql: `json_build_object('id', r.id, 'version', r.version, 'ownerId', r.owner_id, 'body', r.body, 'isDeleted', r.is_deleted)`,
  scope: { kind: 'user', field: 'ownerId', column: 'owner_id' },
  write: {
    fields: { ownerId: { column: 'owner_id', type: 'uuid' }, body: { column: 'body', type: 'text' } },
    createSchema: Type.Object({ body: Type.String() }),
    updateSchema: Type.Object({ body: Type.Optional(Type.String()) }),
    operations: ['create', 'update', 'delete'],
    defaults: {},
    prepare: (op, fields, _before, ctx) => (op === 'create' ? { ...fields, ownerId: ctx.userId } : fields),
  },
};

describe.each(backends)('the push engine on %s (no HTTP)', (backend) => {
  let testDb: TestDb;
  let db: Db;
  let engine: PushEngine;
  const registry = new CollectionRegistry();
  const feed = new ChangeFeed();
  const commits: CommitEvent[] = [];

  beforeAll(async () => {
    testDb = await openTestDb(backend);
    db = testDb.db;
    await db.exec(`
      CREATE TABLE test_notes (
        tenant_id uuid NOT NULL, id uuid PRIMARY KEY, version bigint NOT NULL, is_deleted boolean NOT NULL DEFAULT false,
        body text NOT NULL CHECK (body NOT LIKE '%forbidden%'),
        created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (tenant_id, version));
      CREATE TABLE test_private_notes (
        tenant_id uuid NOT NULL, id uuid PRIMARY KEY, version bigint NOT NULL, is_deleted boolean NOT NULL DEFAULT false,
        owner_id uuid NOT NULL, body text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (tenant_id, version));`);
    registry.register(notes);
    registry.register(privateNotes);
    feed.subscribe((c) => commits.push(c));
    engine = createPushEngine({ db, registry, feed, policies: createPolicyStore() });
  });
  afterAll(async () => {
    await testDb?.drop();
  });

  let seq = 0;
  const newTenant = async () => {
    const { rows } = await db.query<{ id: string }>('INSERT INTO tenants (slug, name) VALUES ($1, $1) RETURNING id', [`p-${++seq}-${randomUUID().slice(0, 8)}`]);
    await db.query('INSERT INTO tenant_versions (tenant_id) VALUES ($1)', [rows[0].id]);
    return rows[0].id;
  };
  const caller = (tenantId: string, userId = randomUUID()) => ({ tenantId, userId, agentCode: 'T1', deviceId: `dev-${userId.slice(0, 8)}` });
  const note = (body: string, localId = randomUUID()) => ({ localId, entityType: 'testNotes', operation: 'create', timestamp: ts(), data: { body } });
  const stored = async (tenantId: string) =>
    (await db.query<{ body: string; version: number }>('SELECT body, version FROM test_notes WHERE tenant_id = $1 ORDER BY version', [tenantId])).rows;

  it('contains a database error to the change that caused it: the others commit at consecutive versions', async () => {
    const tenantId = await newTenant();
    const before = commits.length;
    const out = await engine.apply(caller(tenantId), [note('one'), note('a forbidden word'), note('two'), note('three')]);
    expect(out.results.map((r) => r.ack.success)).toEqual([true, false, true, true]);
    expect(out.results[1].ack).toMatchObject({ status: 'rejected', code: 'VALIDATION_FAILED' });
    expect(out.results[1].ack.error).toContain('23514');
    expect(await stored(tenantId)).toEqual([
      { body: 'one', version: 1 },
      { body: 'two', version: 2 },
      { body: 'three', version: 3 },
    ]);
    expect(out).toMatchObject({ fromVersion: 0, toVersion: 3 });
    // Published once, with exactly the committed changes.
    const published = commits.slice(before);
    expect(published).toHaveLength(1);
    expect(published[0].changes.map((c) => c.data.body)).toEqual(['one', 'two', 'three']);
  });

  it('answers the contained change again from its receipt, and never applies it twice', async () => {
    const tenantId = await newTenant();
    const who = caller(tenantId);
    const batch = [note('first'), note('forbidden'), note('second')];
    const first = await engine.apply(who, batch);
    const again = await engine.apply(who, batch);
    expect(again.results.map((r) => r.ack.status)).toEqual(['duplicate', 'rejected', 'duplicate']);
    expect(again.results[0].ack.serverId).toBe(first.results[0].ack.serverId);
    expect(await stored(tenantId)).toHaveLength(2);
  });

  it('turns such an error into a 400 for an all-or-nothing write and writes nothing', async () => {
    const tenantId = await newTenant();
    const error = await engine.apply(caller(tenantId), [note('ok'), note('forbidden')], { allOrNothing: true, receipts: false }).catch((e) => e);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ code: 'VALIDATION_FAILED', status: 400 });
    expect(await stored(tenantId)).toEqual([]);
  });

  it('serves an owner-scoped collection from its definition alone: the owner sees and writes it, nobody else', async () => {
    const tenantId = await newTenant();
    const owner = caller(tenantId);
    const other = caller(tenantId);
    const created = await engine.apply(owner, [{ localId: 'p1', entityType: 'testPrivateNotes', operation: 'create', timestamp: ts(), data: { body: 'mine' } }]);
    const id = created.results[0].ack.serverId!;
    expect(created.results[0].ack.success).toBe(true);

    const mine = await pullChanges(db, [privateNotes], { tenantId, userId: owner.userId, since: 0, limit: 100 });
    const theirs = await pullChanges(db, [privateNotes], { tenantId, userId: other.userId, since: 0, limit: 100 });
    expect(mine.changes.map((c) => c.id)).toEqual([id]);
    expect(theirs.changes).toEqual([]);
    expect(theirs.latestVersion).toBe(mine.latestVersion);

    const edit = (body: string) => ({ id, entityType: 'testPrivateNotes', operation: 'update', timestamp: ts(), data: { body } });
    const denied = await engine.apply(other, [edit('theirs'), { id, entityType: 'testPrivateNotes', operation: 'delete', timestamp: ts() }]);
    expect(denied.results.map((r) => r.ack.code)).toEqual(['NOT_FOUND', 'NOT_FOUND']);
    const allowed = await engine.apply(owner, [edit('still mine')]);
    expect(allowed.results[0].ack).toMatchObject({ success: true, status: 'applied' });

    // The feed addresses it to its owner's audience only.
    const last = commits[commits.length - 1];
    expect(last.audience).toEqual([`user:${owner.userId}`]);
  });

  it('never lets an owner field be set by the client to reach another user', async () => {
    const tenantId = await newTenant();
    const owner = caller(tenantId);
    const victim = randomUUID();
    const out = await engine.apply(owner, [{ localId: 'x', entityType: 'testPrivateNotes', operation: 'create', timestamp: ts(), data: { body: 'b', ownerId: victim } }]);
    expect(out.results[0].ack).toMatchObject({ success: false, code: 'VALIDATION_FAILED' });
    const theirs = await pullChanges(db, [privateNotes], { tenantId, userId: victim, since: 0, limit: 100 });
    expect(theirs.changes).toEqual([]);
  });

  describe('batches of one tenant that wait together (group commit)', () => {
    // Policies from memory: a batch goes straight to the tenant's queue (on PGlite a policy read
    // would wait for the one connection the held write has).
    let grouped: PushEngine;
    beforeAll(() => {
      grouped = createPushEngine({ db, registry, feed, policies: { ...createPolicyStore(), forTenant: async () => ({ get: () => DEFAULT_POLICY }) } });
    });
    /** Top-level transaction ids of the batches' writes, by tenant. */
    const xids = new Map<string, Set<string>>();
    const apply = (who: ReturnType<typeof caller>, changes: unknown[]) =>
      grouped.apply(who, changes, {
        within: async (tx) => {
          const { rows } = await tx.query<{ x: string }>('SELECT txid_current()::text AS x');
          if (!xids.has(who.tenantId)) xids.set(who.tenantId, new Set());
          xids.get(who.tenantId)!.add(rows[0].x);
        },
      });
    /** Holds the tenant's write queue until `open`, so the batches pushed meanwhile wait together. */
    const holdTenant = (tenantId: string) => {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      const held = withTenantWrite(db, tenantId, () => opened);
      return { open, held };
    };
    const waitQueued = async (n: number) => {
      for (let i = 0; i < 500 && db.poolStats().queued < n; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(db.poolStats().queued).toBeGreaterThanOrEqual(n);
    };

    /** Each batch's versions are consecutive and the batches' ranges tile 1..total (they entered the queue in any order). */
    const expectTiled = (outs: { fromVersion: number; toVersion: number; results: { ack: { version?: number } }[] }[], total: number) => {
      for (const o of outs) {
        expect(o.results.map((r) => r.ack.version).filter((v) => v !== undefined)).toEqual(Array.from({ length: o.toVersion - o.fromVersion }, (_, k) => o.fromVersion + k + 1));
      }
      const ranges = outs.map((o) => [o.fromVersion, o.toVersion]).sort((x, y) => x[0] - y[0]);
      ranges.forEach(([from], i) => expect(from).toBe(i === 0 ? 0 : ranges[i - 1][1]));
      expect(ranges.at(-1)![1]).toBe(total);
    };

    it('commits them in one transaction, each batch on its own consecutive versions, published in version order', async () => {
      const tenantId = await newTenant();
      const hold = holdTenant(tenantId);
      const before = commits.length;
      const devices = [caller(tenantId), caller(tenantId), caller(tenantId)];
      const pushes = devices.map((who, d) => apply(who, [note(`d${d}-a`), note(`d${d}-b`)]));
      await waitQueued(3);
      hold.open();
      await hold.held;
      const outs = await Promise.all(pushes);
      expectTiled(outs, 6);
      // Each batch's records carry its own versions.
      const rows = await stored(tenantId);
      outs.forEach((o, d) => expect(rows.filter((r) => r.body.startsWith(`d${d}-`)).map((r) => r.version)).toEqual([o.fromVersion + 1, o.fromVersion + 2]));
      expect(xids.get(tenantId)?.size).toBe(1);
      // Published once per batch, in version order.
      const published = commits.slice(before).filter((c) => c.tenantId === tenantId);
      expect(published.map((c) => [c.fromVersion, c.toVersion])).toEqual([
        [0, 2],
        [2, 4],
        [4, 6],
      ]);
    });

    it('rolls back only the batch whose change the database refuses: its neighbours commit, and it is applied change by change after them', async () => {
      const tenantId = await newTenant();
      const hold = holdTenant(tenantId);
      const [one, bad, three] = [caller(tenantId), caller(tenantId), caller(tenantId)];
      const pushes = [
        apply(one, [note('one-a'), note('one-b')]),
        apply(bad, [note('bad-a'), note('a forbidden word'), note('bad-c')]),
        apply(three, [note('three-a')]),
      ];
      await waitQueued(3);
      hold.open();
      const [first, failing, third] = await Promise.all(pushes);
      // The neighbours took 1..3 (the one behind the refused batch reused the versions it rolled back).
      expectTiled([first, third], 3);
      expect(failing.results.map((r) => r.ack.status)).toEqual(['applied', 'rejected', 'applied']);
      expect(failing.results[1].ack.error).toContain('23514');
      expect(failing.results.map((r) => r.ack.version)).toEqual([4, undefined, 5]);
      const rows = await stored(tenantId);
      expect(rows.map((r) => r.version)).toEqual([1, 2, 3, 4, 5]);
      expect(rows.slice(3).map((r) => r.body)).toEqual(['bad-a', 'bad-c']);
      expect(await db.query('SELECT current_version FROM tenant_versions WHERE tenant_id = $1', [tenantId])).toMatchObject({ rows: [{ current_version: 5 }] });
    });

    it('answers a grouped batch sent again from its receipts, applying nothing twice', async () => {
      const tenantId = await newTenant();
      const hold = holdTenant(tenantId);
      const devices = [caller(tenantId), caller(tenantId)];
      const batches = devices.map((_, d) => [note(`r${d}-a`), note(`r${d}-b`)]);
      const pushes = devices.map((who, d) => apply(who, batches[d]));
      await waitQueued(2);
      hold.open();
      const firsts = await Promise.all(pushes);
      // Sent again, both together (grouped once more) and each alone.
      const hold2 = holdTenant(tenantId);
      const again = devices.map((who, d) => apply(who, batches[d]));
      await waitQueued(2);
      hold2.open();
      const seconds = [...(await Promise.all(again)), await apply(devices[0], batches[0])];
      for (const [i, out] of seconds.entries()) {
        const first = firsts[i % 2];
        expect(out.results.map((r) => r.ack.status)).toEqual(['duplicate', 'duplicate']);
        expect(out.results.map((r) => [r.ack.serverId, r.ack.version])).toEqual(first.results.map((r) => [r.ack.serverId, r.ack.version]));
      }
      expect(await stored(tenantId)).toHaveLength(4);
    });
  });
});
