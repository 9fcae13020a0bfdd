import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, openTestDb, type TestDb } from '../../test/helpers/test-db.js';
import type { Db } from '../db/db.js';
import { AppError } from '../errors.js';
import { CollectionRegistry, type CollectionDef } from './collections.js';
import type { Queryable } from '../db/db.js';
import { collectionsAbove, deltaEnvelopeJson, pullChanges, pullPage, resolveCollections, toDelta, type CollectionMarks } from './pull.js';
import { withTenantWrite } from './versions.js';

/** Two synced collections of the test's own, so the merge in version order is exercised without any domain module. */
const collectionOf = (name: string, table: string): CollectionDef => ({
  name,
  aliases: [name.replace(/s$/, '')],
  table,
  wireSql: `json_build_object('id', r.id, 'version', r.version, 'body', r.body, 'isDeleted', r.is_deleted)`,
  scope: { kind: 'tenant' },
});
const cards = collectionOf('testCards', 'test_cards');
const notes = collectionOf('testNotes', 'test_notes');

describe.each(backends)('pullChanges on %s', (backend) => {
  let testDb: TestDb;
  let db: Db;
  const registry = new CollectionRegistry();
  registry.register(cards);
  registry.register(notes);
  const both = [cards, notes];

  beforeAll(async () => {
    testDb = await openTestDb(backend);
    db = testDb.db;
    for (const table of ['test_cards', 'test_notes']) {
      await db.exec(`CREATE TABLE ${table} (
        tenant_id uuid NOT NULL, id uuid PRIMARY KEY DEFAULT gen_random_uuid(), version bigint NOT NULL,
        is_deleted boolean NOT NULL DEFAULT false, body text NOT NULL, UNIQUE (tenant_id, version))`);
    }
  });
  afterAll(async () => {
    await testDb?.drop();
  });

  let seq = 0;
  const newTenant = async () => {
    const { rows } = await db.query<{ id: string }>('INSERT INTO tenants (slug, name) VALUES ($1, $1) RETURNING id', [`p-${backend}-${++seq}`]);
    await db.query('INSERT INTO tenant_versions (tenant_id) VALUES ($1)', [rows[0].id]);
    return rows[0].id;
  };

  /** Writes `kinds` in one transaction, one version each: 'c' a card, 'n' a note. Returns the ids in version order. */
  const write = async (tenantId: string, kinds: string) => {
    const committed = await withTenantWrite(db, tenantId, async (tx) => {
      const ids: string[] = [];
      for (const kind of kinds) {
        const version = tx.nextVersion(kind === 'c' ? 'testCards' : 'testNotes');
        const { rows } = await tx.query<{ id: string }>(
          `INSERT INTO ${kind === 'c' ? 'test_cards' : 'test_notes'} (tenant_id, version, body) VALUES ($1, $2, $3) RETURNING id`,
          [tenantId, version, `${kind} ${version}`],
        );
        ids.push(rows[0].id);
      }
      return ids;
    });
    return committed.result;
  };

  it('merges several collections in version order and pages across them, each change exactly once', async () => {
    const tenantId = await newTenant();
    const kinds = 'cnnc' + 'ncc' + 'n';
    const ids = [...(await write(tenantId, 'cnnc')), ...(await write(tenantId, 'ncc')), ...(await write(tenantId, 'n'))];
    const all = await pullChanges(db, both, { tenantId, since: 0, limit: 100 });
    expect(all.changes.map((c) => [c.version, c.collection, c.id, c.op])).toEqual(
      ids.map((id, i) => [i + 1, kinds[i] === 'c' ? 'testCards' : 'testNotes', id, 'upsert']),
    );
    expect(all).toMatchObject({ latestVersion: 8, nextVersion: 8, hasMore: false });
    expect(all.changes[1].data).toEqual({ id: ids[1], version: 2, body: 'n 2', isDeleted: false });

    for (const limit of [1, 2, 3, 4, 7, 8]) {
      const seen: number[] = [];
      let since = 0;
      let pages = 0;
      for (;;) {
        const page = await pullChanges(db, both, { tenantId, since, limit });
        pages++;
        expect(page.changes.length).toBeLessThanOrEqual(limit);
        seen.push(...page.changes.map((c) => c.version));
        if (page.hasMore) expect(page.nextVersion).toBe(page.changes[limit - 1].version);
        since = page.nextVersion;
        if (!page.hasMore) break;
      }
      expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(pages).toBe(Math.ceil(8 / limit));
      expect(since).toBe(8);
    }
  });

  it('returns only the requested collections and moves the checkpoint past the others', async () => {
    const tenantId = await newTenant();
    await write(tenantId, 'cncnnc');
    const first = await pullChanges(db, [notes], { tenantId, since: 0, limit: 2 });
    expect(first.changes.map((c) => [c.collection, c.version])).toEqual([
      ['testNotes', 2],
      ['testNotes', 4],
    ]);
    expect(first).toMatchObject({ hasMore: true, nextVersion: 4 });
    const rest = await pullChanges(db, [notes], { tenantId, since: 4, limit: 2 });
    expect(rest.changes.map((c) => c.version)).toEqual([5]);
    expect(rest).toMatchObject({ hasMore: false, nextVersion: 6, latestVersion: 6 });
  });

  it('reports a tombstone as op "delete" at its new version, once', async () => {
    const tenantId = await newTenant();
    const [id] = await write(tenantId, 'c');
    await withTenantWrite(db, tenantId, (tx) =>
      tx.query('UPDATE test_cards SET is_deleted = true, version = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, id, tx.nextVersion('testCards')]),
    );
    const delta = await pullChanges(db, both, { tenantId, since: 0, limit: 10 });
    expect(delta.changes).toEqual([{ collection: 'testCards', op: 'delete', id, version: 2, data: { id, version: 2, body: 'c 1', isDeleted: true } }]);
  });

  it('splices the records into the answer as PostgreSQL wrote them: the JSON text equals the object form', async () => {
    const tenantId = await newTenant();
    const [id] = await write(tenantId, 'c');
    const tricky = 'quote " backslash \\ newline \n tab \t emoji 😀 nul-free </script>';
    await withTenantWrite(db, tenantId, (tx) =>
      tx.query('UPDATE test_cards SET body = $3, version = $4 WHERE tenant_id = $1 AND id = $2', [tenantId, id, tricky, tx.nextVersion('testCards')]),
    );
    const page = await pullPage(db, both, { tenantId, since: 0, limit: 10 });
    expect(page.count).toBe(1);
    const parsed = JSON.parse(deltaEnvelopeJson(page));
    expect(parsed).toEqual({ success: true, data: toDelta(page) });
    expect(parsed.data).toEqual({
      changes: [{ collection: 'testCards', op: 'upsert', id, version: 2, data: { id, version: 2, body: tricky, isDeleted: false } }],
      latestVersion: 2,
      nextVersion: 2,
      hasMore: false,
    });
  });

  /** `db` with the statements it ran recorded: which collections' tables each pull read. */
  const recording = () => {
    const tables: string[][] = [];
    const q: Queryable = {
      query: (sql, params, opts) => {
        tables.push(['test_cards', 'test_notes'].filter((t) => sql.includes(`FROM ${t} `)));
        return db.query(sql, params, opts);
      },
      exec: (sql) => db.exec(sql),
    };
    return { q, tables };
  };
  const marksOf = async (tenantId: string) =>
    (await db.query<{ marks_from: number; collection_marks: Record<string, number> }>('SELECT marks_from, collection_marks FROM tenant_versions WHERE tenant_id = $1', [tenantId]))
      .rows[0];

  it('marks each collection a write gave versions with that write\'s last version, in the commit', async () => {
    const tenantId = await newTenant();
    await write(tenantId, 'cnc');
    expect(await marksOf(tenantId)).toEqual({ marks_from: 0, collection_marks: { testCards: 3, testNotes: 3 } });
    await write(tenantId, 'cc');
    expect((await marksOf(tenantId)).collection_marks).toEqual({ testCards: 5, testNotes: 3 });
    // A write rolled back leaves the marks as they were.
    await expect(
      withTenantWrite(db, tenantId, async (tx) => {
        tx.nextVersion('testNotes');
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect((await marksOf(tenantId)).collection_marks).toEqual({ testCards: 5, testNotes: 3 });
  });

  it('runs the branches of the collections marked above the checkpoint only, and answers the same page as the full union', async () => {
    const tenantId = await newTenant();
    const ids = await write(tenantId, 'nncc');
    const marks = new Map<string, CollectionMarks>();
    const { q, tables } = recording();
    // The first pull knows no marks: every collection.
    const first = await pullPage(q, both, { tenantId, since: 0, limit: 10 }, marks);
    expect(tables.at(-1)).toEqual(['test_cards', 'test_notes']);
    expect(marks.get(tenantId)).toEqual({ from: 0, marks: { testCards: 4, testNotes: 4 } });
    // Notes last changed at 4 (a mark is a write's last version): above 4 only cards may hold changes.
    await write(tenantId, 'cc');
    const above = await pullPage(q, both, { tenantId, since: 4, limit: 10 }, marks);
    expect(tables.at(-1)).toEqual(['test_cards']);
    expect(above).toEqual(await pullPage(db, both, { tenantId, since: 4, limit: 10 }));
    expect(toDelta(above).changes.map((c) => c.version)).toEqual([5, 6]);
    // Nothing marked above the checkpoint: no branch at all, and the latest version still comes.
    const none = await pullPage(q, both, { tenantId, since: 6, limit: 10 }, marks);
    expect(tables.at(-1)).toEqual([]);
    expect(none).toMatchObject({ count: 0, latestVersion: 6, nextVersion: 6, hasMore: false, changesJson: '[]' });
    expect(toDelta(first).changes.map((c) => c.id)).toEqual(ids);
  });

  it('runs again with a collection its marks left out when the statement\'s own snapshot marks it above the checkpoint', async () => {
    const tenantId = await newTenant();
    await write(tenantId, 'cc');
    const marks = new Map<string, CollectionMarks>();
    const { q, tables } = recording();
    await pullPage(q, both, { tenantId, since: 0, limit: 10 }, marks);
    // Another instance writes a note and a card: these marks, read before, say nothing is above 2.
    const [noteId] = await write(tenantId, 'n');
    await write(tenantId, 'c');
    tables.length = 0;
    const page = toDelta(await pullPage(q, both, { tenantId, since: 2, limit: 10 }, marks));
    expect(tables).toEqual([[], ['test_cards', 'test_notes']]);
    expect(page.changes.map((c) => [c.collection, c.version])).toEqual([
      ['testNotes', 3],
      ['testCards', 4],
    ]);
    expect(page.changes[0].id).toBe(noteId);
    expect(marks.get(tenantId)?.marks).toEqual({ testCards: 4, testNotes: 3 });
  });

  it('reads every collection from a checkpoint below marks_from, whose history predates the marks', async () => {
    const tenantId = await newTenant();
    await write(tenantId, 'cn');
    // As migration 0013 leaves a tenant that existed before it: history without marks.
    await db.query(`UPDATE tenant_versions SET collection_marks = '{}', marks_from = 2 WHERE tenant_id = $1`, [tenantId]);
    await write(tenantId, 'c');
    const marks = new Map<string, CollectionMarks>();
    const old = toDelta(await pullPage(db, both, { tenantId, since: 0, limit: 10 }, marks));
    expect(old.changes.map((c) => [c.collection, c.version])).toEqual([
      ['testCards', 1],
      ['testNotes', 2],
      ['testCards', 3],
    ]);
    expect(collectionsAbove(both, 1, marks.get(tenantId))).toEqual(both);
    expect(collectionsAbove(both, 2, marks.get(tenantId))).toEqual([cards]);
    expect(collectionsAbove(both, 3, marks.get(tenantId))).toEqual([]);
    expect(collectionsAbove(both, 3, undefined)).toEqual(both);
  });

  it('answers NOT_FOUND for a tenant without a version row', async () => {
    await expect(pullChanges(db, both, { tenantId: '00000000-0000-4000-8000-000000000000', since: 0, limit: 1 })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('resolves plural and singular names once each, every collection when none are named, and rejects unknown ones', () => {
    expect(resolveCollections(registry, undefined)).toEqual(both);
    expect(resolveCollections(registry, [])).toEqual(both);
    expect(resolveCollections(registry, ['testCard', 'testCards', 'testNote'])).toEqual(both);
    let error: unknown;
    try {
      resolveCollections(registry, ['testCards', 'gadgets']);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ code: 'VALIDATION_FAILED', status: 400, details: [{ field: 'collections' }] });
    expect((error as Error).message).toContain('gadgets');
  });

  it('refuses a collection name registered twice and leaves none of the refused names behind', () => {
    const local = new CollectionRegistry();
    local.register(cards);
    expect(() => local.register({ ...notes, name: 'other', aliases: ['testCard'] })).toThrow(/twice/);
    expect(local.resolve('other')).toBeUndefined();
    expect(local.all()).toEqual([cards]);
    expect(() => local.register({ ...notes, name: 'same', aliases: ['same'] })).toThrow(/twice/);
    expect(local.resolve('same')).toBeUndefined();
    // Names are spliced into SQL literals and JSON text: anything but an identifier is refused.
    for (const name of [`o'brien`, 'a"b', 'has space', '', '9lives']) {
      expect(() => local.register({ ...notes, name, aliases: [] })).toThrow(/not an identifier/);
    }
    expect(() => local.register({ ...notes, name: 'fine', aliases: ['bad alias'] })).toThrow(/not an identifier/);
    expect(local.resolve('fine')).toBeUndefined();
  });
});
