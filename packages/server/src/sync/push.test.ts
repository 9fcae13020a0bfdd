import { randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, openTestDb, type TestDb } from '../../test/helpers/test-db.js';
import type { Db } from '../db/db.js';
import { AppError } from '../errors.js';
import { CollectionRegistry, type CollectionDef } from './collections.js';
import { ChangeFeed, type CommitEvent } from './feed.js';
import { createPolicyStore } from './policies.js';
import { pullChanges } from './pull.js';
import { createPushEngine, type PushEngine } from './push.js';

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
});
