import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, openTestDb, type TestDb } from '../../test/helpers/test-db.js';
import type { Db } from '../db/db.js';
import type { CollectionDef } from './collections.js';
import { pullChanges } from './pull.js';
import { withTenantWrite, type TenantTx } from './versions.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A versioned table of the test's own, so these tests depend on no domain module. */
const recordsCollection: CollectionDef = {
  name: 'testRecords',
  aliases: [],
  table: 'test_records',
  wireSql: `json_build_object('id', r.id, 'version', r.version)`,
  scope: { kind: 'tenant' },
};

describe.each(backends)('withTenantWrite on %s', (backend) => {
  let testDb: TestDb;
  let db: Db;
  beforeAll(async () => {
    testDb = await openTestDb(backend);
    db = testDb.db;
    await db.exec(`CREATE TABLE test_records (
      tenant_id uuid NOT NULL, id uuid PRIMARY KEY DEFAULT gen_random_uuid(), version bigint NOT NULL,
      is_deleted boolean NOT NULL DEFAULT false, UNIQUE (tenant_id, version))`);
  });
  afterAll(async () => {
    await testDb?.drop();
  });

  let seq = 0;
  const newTenant = async () => {
    const { rows } = await db.query<{ id: string }>('INSERT INTO tenants (slug, name) VALUES ($1, $1) RETURNING id', [`v-${++seq}`]);
    await db.query('INSERT INTO tenant_versions (tenant_id) VALUES ($1)', [rows[0].id]);
    return rows[0].id;
  };
  const currentVersion = async (tenantId: string) =>
    (await db.query<{ current_version: number }>('SELECT current_version FROM tenant_versions WHERE tenant_id = $1', [tenantId])).rows[0]
      .current_version;
  /** Writes one record per version taken, as a collection's writer does. */
  const writeRecords = async (tx: TenantTx, n: number) => {
    const { rows } = await tx.query<{ id: string; version: number }>(
      'INSERT INTO test_records (tenant_id, version) SELECT $1, v FROM unnest($2::bigint[]) AS v RETURNING id, version',
      [tx.tenantId, Array.from({ length: n }, () => tx.nextVersion('testRecords'))],
    );
    return rows.sort((a, b) => a.version - b.version);
  };

  it('hands out consecutive versions after the current one and records the last one handed out', async () => {
    const tenantId = await newTenant();
    const first = await withTenantWrite(db, tenantId, async (tx) => {
      expect(tx.baseVersion).toBe(0);
      expect(tx.currentVersion()).toBe(0);
      const taken = [tx.nextVersion('testRecords'), tx.nextVersion('testRecords'), tx.nextVersion('testRecords')];
      expect(tx.currentVersion()).toBe(3);
      return taken;
    });
    expect(first).toEqual({ result: [1, 2, 3], fromVersion: 0, toVersion: 3 });
    expect(await currentVersion(tenantId)).toBe(3);
    // A write that changes nothing takes no version.
    expect(await withTenantWrite(db, tenantId, async (tx) => tx.baseVersion)).toEqual({ result: 3, fromVersion: 3, toVersion: 3 });
    expect(await currentVersion(tenantId)).toBe(3);
  });

  it('rolls back a failed write with its versions: the next writer reuses them and no row is left', async () => {
    const tenantId = await newTenant();
    await expect(
      withTenantWrite(db, tenantId, async (tx) => {
        await writeRecords(tx, 2);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await currentVersion(tenantId)).toBe(0);
    expect((await db.query('SELECT 1 FROM test_records WHERE tenant_id = $1', [tenantId])).rows).toEqual([]);
    const next = await withTenantWrite(db, tenantId, (tx) => writeRecords(tx, 1));
    expect(next.result.map((c) => c.version)).toEqual([1]);
  });

  it('throws for a tenant without a version row', async () => {
    await expect(withTenantWrite(db, '00000000-0000-4000-8000-000000000000', async () => 1)).rejects.toThrow(/no version row/);
  });

  it('makes a second writer of the tenant wait until the first commits, so a reader never sees a later version first', async () => {
    const tenantId = await newTenant();
    const events: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const aHasVersion = new Promise<void>((resolve) => (started = resolve));

    const a = withTenantWrite(db, tenantId, async (tx) => {
      const [c] = await writeRecords(tx, 1);
      events.push(`A took ${c.version}`);
      started();
      await gate;
      events.push('A commits');
      return c.version;
    });
    await aHasVersion;
    const b = withTenantWrite(db, tenantId, async (tx) => {
      const [c] = await writeRecords(tx, 1);
      events.push(`B took ${c.version}`);
      return c.version;
    });
    const pulled = pullChanges(db, [recordsCollection], { tenantId, since: 0, limit: 10 });
    await sleep(150);
    // B cannot even learn its version while A is open.
    expect(events).toEqual(['A took 1']);
    if (db.kind === 'postgres') {
      // A concurrent reader sees neither A's uncommitted version nor a latestVersion that covers it.
      expect(await pulled).toEqual({ changes: [], latestVersion: 0, nextVersion: 0, hasMore: false });
    }
    release();
    expect((await a).result).toBe(1);
    expect((await b).result).toBe(2);
    expect(events).toEqual(['A took 1', 'A commits', 'B took 2']);
    // Whenever the reader ran, it saw a prefix of the version sequence up to its latestVersion.
    const seen = await pulled;
    expect(seen.changes.map((c) => c.version)).toEqual(Array.from({ length: seen.latestVersion }, (_, i) => i + 1));
  });

  it('tiles the versions of many concurrent writers into one sequence without gaps or repeats', async () => {
    const tenantId = await newTenant();
    const committed = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        withTenantWrite(db, tenantId, async (tx) => {
          const rows = await writeRecords(tx, 1 + (i % 3));
          await sleep(Math.random() * 3);
          return rows.map((r) => r.version);
        }),
      ),
    );
    const ranges = committed.map((c) => [c.fromVersion, c.toVersion]).sort((x, y) => x[0] - y[0]);
    const total = committed.reduce((n, c) => n + c.result.length, 0);
    // Each writer's range starts where the previous one ended.
    ranges.forEach(([from], i) => expect(from).toBe(i === 0 ? 0 : ranges[i - 1][1]));
    expect(ranges.at(-1)?.[1]).toBe(total);
    for (const c of committed) {
      expect(c.result).toEqual(Array.from({ length: c.toVersion - c.fromVersion }, (_, k) => c.fromVersion + k + 1));
    }
    expect(await currentVersion(tenantId)).toBe(total);
  });

  it('numbers each tenant on its own; on PostgreSQL writers of different tenants do not wait for each other', async () => {
    const t1 = await newTenant();
    const t2 = await newTenant();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const opened = new Promise<void>((resolve) => (started = resolve));
    const slow = withTenantWrite(db, t1, async (tx) => {
      await writeRecords(tx, 2);
      started();
      await gate;
    });
    await opened;
    const other = withTenantWrite(db, t2, (tx) => writeRecords(tx, 1));
    if (db.kind === 'postgres') {
      // Completes while t1's write is still open.
      expect((await other).result.map((c) => c.version)).toEqual([1]);
      release();
    } else {
      // PGlite runs one transaction at a time: t2's write runs once t1's has committed.
      release();
      expect((await other).result.map((c) => c.version)).toEqual([1]);
    }
    await slow;
    expect(await currentVersion(t1)).toBe(2);
    expect(await currentVersion(t2)).toBe(1);
  });
});
