import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db, DbOptions } from '../src/db/db.js';
import { migrate } from '../src/db/migrate.js';
import { createPgliteDb } from '../src/db/pglite.js';
import { createPostgresDb } from '../src/db/postgres.js';
import { AppError } from '../src/errors.js';
import { createTenantsService } from '../src/modules/tenants/tenants.service.js';
import { withTenantWrite, type TenantTx } from '../src/sync/versions.js';
import { eventually } from './helpers/sockets.js';
import { ADMIN_KEY, createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { backends, createScratchDatabase, type Backend } from './helpers/test-db.js';

const WAIT_MS = 15_000;
const ts = () => new Date().toISOString();

/** A promise and the function that settles it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

/**
 * One database per suite, and as many Dbs over it as a test needs: on PostgreSQL each Db is
 * a pool of its own (an instance of the server); PGlite opens a fresh in-memory database.
 */
async function databaseFor(backend: Backend) {
  const TABLE = `CREATE TABLE test_records (
    tenant_id uuid NOT NULL, id uuid PRIMARY KEY DEFAULT gen_random_uuid(), version bigint NOT NULL, UNIQUE (tenant_id, version))`;
  const opened: Db[] = [];
  if (backend === 'pglite') {
    return {
      url: undefined,
      async open(options: DbOptions = {}) {
        const db = await createPgliteDb(undefined, options);
        await migrate(db);
        await db.exec(TABLE);
        opened.push(db);
        return db;
      },
      async close() {
        await Promise.all(opened.map((db) => db.close()));
      },
    };
  }
  const scratch = await createScratchDatabase();
  const first = createPostgresDb(scratch.url, { max: 2 });
  await migrate(first);
  // Before any tenant of the tests: the apps started on this database find their admin here.
  await createTenantsService({ db: first }).bootstrap(ADMIN_KEY);
  await first.exec(TABLE);
  await first.close();
  return {
    url: scratch.url,
    async open(options: DbOptions = {}) {
      const db = createPostgresDb(scratch.url, options);
      opened.push(db);
      return db;
    },
    async close() {
      await Promise.all(opened.map((db) => db.close()));
      await scratch.drop();
    },
  };
}

describe.each(backends)('writes of a tenant on %s', (backend) => {
  let database: Awaited<ReturnType<typeof databaseFor>>;
  let db: Db;
  /** A session outside the server (PostgreSQL): another instance's writer, and pg_stat_activity. */
  let outside: pg.Client | undefined;

  beforeAll(async () => {
    database = await databaseFor(backend);
    // A small pool, so a tenant that took every connection would show.
    db = await database.open({ max: 3 });
    if (database.url) {
      outside = new pg.Client({ connectionString: database.url });
      await outside.connect();
    }
  });
  afterAll(async () => {
    await outside?.end();
    await database?.close();
  });

  let seq = 0;
  const newTenant = async (on = db) => {
    const { rows } = await on.query<{ id: string }>('INSERT INTO tenants (slug, name) VALUES ($1, $1) RETURNING id', [`w-${++seq}-${randomUUID().slice(0, 8)}`]);
    await on.query('INSERT INTO tenant_versions (tenant_id) VALUES ($1)', [rows[0].id]);
    return rows[0].id;
  };
  /** Writes one record per version taken, as a collection's writer does. */
  const writeRecords = async (tx: TenantTx, n: number) => {
    const { rows } = await tx.query<{ version: number }>(
      'INSERT INTO test_records (tenant_id, version) SELECT $1, v FROM unnest($2::bigint[]) AS v RETURNING version',
      [tx.tenantId, Array.from({ length: n }, () => tx.nextVersion('testRecords'))],
    );
    return rows.map((r) => r.version).sort((x, y) => x - y);
  };
  const versionOf = async (tenantId: string, on = db) =>
    (await on.query<{ v: number }>('SELECT current_version AS v FROM tenant_versions WHERE tenant_id = $1', [tenantId])).rows[0].v;
  const recordsOf = async (tenantId: string, on = db) =>
    (await on.query<{ version: number }>('SELECT version FROM test_records WHERE tenant_id = $1 ORDER BY version', [tenantId])).rows.map((r) => r.version);
  /** Sessions of the test database waiting on a lock, the outside session's own excluded. */
  const lockWaiters = async () =>
    (
      await outside!.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
      )
    ).rows[0].n;
  /** Holds the tenant's version row from outside, as a writer of another instance does, until `release`. */
  const holdTenantRow = async (tenantId: string) => {
    await outside!.query('BEGIN');
    await outside!.query('SELECT 1 FROM tenant_versions WHERE tenant_id = $1 FOR UPDATE', [tenantId]);
    return () => outside!.query('COMMIT');
  };

  describe('a burst of one tenant', () => {
    it.runIf(backend === 'postgres')(
      "waits in the process on one pooled connection, and another tenant's reads and writes go through meanwhile",
      async () => {
        const a = await newTenant();
        const b = await newTenant();
        await withTenantWrite(db, b, (tx) => writeRecords(tx, 1));
        const held = gate();
        const entered: number[] = [];
        const writes = Array.from({ length: 8 }, (_, i) =>
          withTenantWrite(db, a, async (tx) => {
            entered.push(i);
            const versions = await writeRecords(tx, 100);
            await held.opened;
            return versions;
          }),
        );
        let done = 0;
        for (const w of writes) void w.then(() => done++, () => {});
        await eventually(async () => entered.length === 1, WAIT_MS);

        // Seven writers wait in the process: one connection is checked out, none is asked of the pool.
        const stats = db.poolStats();
        expect(stats).toMatchObject({ waiting: 0, queued: 7 });
        expect(stats.total - stats.idle).toBe(1);
        expect(await lockWaiters()).toBe(0);

        // Tenant B: a one-row read and a write complete while every write of A is still open or queued.
        const one = await db.query<{ version: number }>('SELECT version FROM test_records WHERE tenant_id = $1 LIMIT 1', [b]);
        expect(one.rows).toEqual([{ version: 1 }]);
        expect((await withTenantWrite(db, b, (tx) => writeRecords(tx, 1))).result).toEqual([2]);
        expect(done).toBe(0);
        expect(entered).toEqual([0]);

        held.open();
        const committed = await Promise.all(writes);
        // First come, first served: each writer's versions follow the one called before it.
        expect(entered).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
        expect(committed.map((c) => c.fromVersion)).toEqual([0, 100, 200, 300, 400, 500, 600, 700]);
        expect(await recordsOf(a)).toEqual(Array.from({ length: 800 }, (_, i) => i + 1));
        expect(db.poolStats().queued).toBe(0);
      },
    );

    it.runIf(backend === 'postgres')(
      "keeps one connection per instance waiting on a lock another instance holds, and answers another tenant's pull and push over HTTP",
      async () => {
        const appDb = await database.open({ max: 3 });
        let app: TestApp | undefined;
        let release: (() => Promise<unknown>) | undefined;
        try {
          app = await startTestApp('postgres', {}, { sharedDb: { db: appDb, url: database.url, drop: async () => {} } });
          const agent = await createAgent(app, `burst-${randomUUID().slice(0, 6)}`);
          const { rows } = await appDb.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'");
          const tenantA = rows[0].id;
          const created = await app.api('POST', '/api/tenants', { body: { name: 'Elsewhere', slug: `elsewhere-${randomUUID().slice(0, 8)}` } });
          expect(created.status).toBe(201);
          const keyB = created.body.data.apiKey as string;
          expect((await app.api('POST', '/api/contacts', { key: keyB, body: { firstName: 'Bea', phonePrimary: uniquePhone() } })).status).toBe(201);
          const versionA = await versionOf(tenantA);

          release = await holdTenantRow(tenantA);
          const pushes = Array.from({ length: 6 }, (_, i) =>
            app!.api('POST', '/api/sync', {
              key: agent.apiKey,
              body: {
                deviceId: `burst-${i}`,
                changes: [{ localId: `b-${i}`, entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: `Burst${i}`, phonePrimary: uniquePhone() } }],
              },
            }),
          );
          // The first push waits on the row lock; the other five wait in the process.
          await eventually(async () => appDb.poolStats().queued === 5 && (await lockWaiters()) === 1, WAIT_MS);

          const pull = await app.api('GET', '/api/sync/delta?version=0&limit=10', { key: keyB });
          expect(pull.status).toBe(200);
          // Tenant B's whole state: its admin's directory entry (users are synced, SPEC §8) and its contact.
          expect(pull.body.data.changes.map((c: { collection: string; version: number }) => [c.collection, c.version])).toEqual([
            ['users', 1],
            ['contacts', 2],
          ]);
          const pushB = await app.api('POST', '/api/sync', {
            key: keyB,
            body: { deviceId: 'b-dev', changes: [{ localId: 'b-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Bo', phonePrimary: uniquePhone() } }] },
          });
          expect(pushB.status).toBe(200);
          expect(pushB.body.data.acknowledged[0].success).toBe(true);
          expect(await lockWaiters()).toBe(1);
          expect(appDb.poolStats().waiting).toBe(0);

          await release();
          release = undefined;
          const answers = await Promise.all(pushes);
          expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
          const versions = answers.map((r) => r.body.data.acknowledged[0].version as number).sort((x, y) => x - y);
          expect(versions).toEqual(Array.from({ length: 6 }, (_, i) => versionA + i + 1));
        } finally {
          await release?.();
          await app?.close();
        }
      },
    );
  });

  it('hands out gap-free versions in call order under concurrency, and a reader never sees a version before those below it', async () => {
    // On PostgreSQL a second Db stands for a second instance: the row lock orders the two.
    const instances = database.url ? [db, await database.open({ max: 3 })] : [db];
    const tenantId = await newTenant();
    const entered: number[][] = instances.map(() => []);
    let writing = true;
    const violations: string[] = [];
    const reader = (async () => {
      let reads = 0;
      while (writing || reads < 3) {
        reads++;
        const latest = await versionOf(tenantId);
        const seen = (await recordsOf(tenantId)).filter((v) => v <= latest);
        if (seen.length !== latest || seen.some((v, i) => v !== i + 1)) violations.push(`latest ${latest}, saw ${seen.length} records`);
      }
      return reads;
    })();
    const writes = Array.from({ length: 30 }, (_, i) => {
      const at = i % instances.length;
      return withTenantWrite(instances[at], tenantId, async (tx) => {
        entered[at].push(i);
        const versions = await writeRecords(tx, 1 + (i % 4));
        await new Promise((resolve) => setImmediate(resolve));
        return versions;
      });
    });
    const committed = await Promise.all(writes);
    writing = false;
    expect(await reader).toBeGreaterThan(0);
    expect(violations).toEqual([]);

    // Each instance let its writers in the order they called.
    for (const order of entered) expect(order).toEqual([...order].sort((x, y) => x - y));
    // The ranges tile 1..total: every write committed, no version twice, none skipped.
    const ranges = committed.map((c) => [c.fromVersion, c.toVersion]).sort((x, y) => x[0] - y[0]);
    ranges.forEach(([from], i) => expect(from).toBe(i === 0 ? 0 : ranges[i - 1][1]));
    for (const c of committed) expect(c.result).toEqual(Array.from({ length: c.toVersion - c.fromVersion }, (_, k) => c.fromVersion + k + 1));
    const total = ranges.at(-1)![1];
    expect(total).toBe(Array.from({ length: 30 }, (_, i) => 1 + (i % 4)).reduce((x, y) => x + y));
    expect(await recordsOf(tenantId)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(await versionOf(tenantId)).toBe(total);
  });

  it('refuses a write of the tenant started inside its own write, which would wait for itself, and commits the outer one', async () => {
    const tenantId = await newTenant();
    const committed = await withTenantWrite(db, tenantId, async (tx) => {
      const versions = await writeRecords(tx, 1);
      const nested = await withTenantWrite(db, tenantId, (inner) => writeRecords(inner, 1)).catch((error: Error) => error.message);
      return { versions, nested };
    });
    expect(committed.result.nested).toMatch(/inside a write of the same tenant/);
    expect(committed.result.versions).toEqual([1]);
    expect(await recordsOf(tenantId)).toEqual([1]);
    // Work the write left behind may write the tenant once it is done.
    let later!: Promise<unknown>;
    await withTenantWrite(db, tenantId, async () => {
      later = new Promise((resolve) => setTimeout(resolve, 10)).then(() => withTenantWrite(db, tenantId, (tx) => writeRecords(tx, 1)));
    });
    expect(await later).toMatchObject({ result: [2] });
  });

  describe('when a write fails', () => {
    it('hands the turn to the next writer, which reuses the versions the failed one rolled back', async () => {
      const tenantId = await newTenant();
      const held = gate();
      const failing = withTenantWrite(db, tenantId, async (tx) => {
        await writeRecords(tx, 3);
        await held.opened;
        throw new Error('the writer failed');
      });
      const next = [withTenantWrite(db, tenantId, (tx) => writeRecords(tx, 2)), withTenantWrite(db, tenantId, (tx) => writeRecords(tx, 1))];
      await eventually(async () => db.poolStats().queued === 2, WAIT_MS);
      held.open();
      await expect(failing).rejects.toThrow('the writer failed');
      expect((await Promise.all(next)).map((c) => c.result)).toEqual([[1, 2], [3]]);
      expect(await recordsOf(tenantId)).toEqual([1, 2, 3]);
      expect(db.poolStats().queued).toBe(0);
    });

    it('refuses a write with a retryable 503 when the queue of its tenant is full, writing nothing of it', async () => {
      const small = await database.open({ max: 3, queueLimit: 2 });
      const tenantId = await newTenant(small);
      const other = await newTenant(small);
      const held = gate();
      const running = withTenantWrite(small, tenantId, async (tx) => {
        await held.opened;
        return writeRecords(tx, 1);
      });
      const waiting = [withTenantWrite(small, tenantId, (tx) => writeRecords(tx, 1)), withTenantWrite(small, tenantId, (tx) => writeRecords(tx, 1))];
      let ran = false;
      const refused = await withTenantWrite(small, tenantId, async (tx) => {
        ran = true;
        return writeRecords(tx, 1);
      }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(AppError);
      expect(refused).toMatchObject({ code: 'UNAVAILABLE', status: 503, headers: { 'retry-after': '5' } });
      expect(ran).toBe(false);
      // Another tenant has a queue of its own (on PGlite its write still waits for the one connection).
      const elsewhere = withTenantWrite(small, other, (tx) => writeRecords(tx, 1));
      held.open();
      expect((await Promise.all([running, ...waiting])).map((c) => c.result)).toEqual([[1], [2], [3]]);
      expect((await elsewhere).result).toEqual([1]);
      expect(await recordsOf(tenantId, small)).toEqual([1, 2, 3]);
    });

    it.runIf(backend === 'postgres')(
      'rolls back a write stopped by the statement timeout as a retryable 503, and the next writer goes on',
      async () => {
        const bounded = await database.open({ max: 3, statementTimeoutMs: 200 });
        const tenantId = await newTenant(bounded);
        const slow = withTenantWrite(bounded, tenantId, async (tx) => {
          await writeRecords(tx, 5);
          await tx.query('SELECT pg_sleep(5)');
        }).catch((error: unknown) => error);
        const next = withTenantWrite(bounded, tenantId, (tx) => writeRecords(tx, 2));
        const error = await slow;
        expect(error).toBeInstanceOf(AppError);
        expect(error).toMatchObject({ code: 'UNAVAILABLE', status: 503, headers: { 'retry-after': '2' } });
        expect((error as AppError).cause).toMatchObject({ code: '57014' });
        expect((await next).result).toEqual([1, 2]);
        expect(await recordsOf(tenantId)).toEqual([1, 2]);
        expect(await versionOf(tenantId)).toBe(2);
      },
    );

    it.runIf(backend === 'postgres')(
      'answers a push that waited past the lock timeout with 503 and Retry-After, having written nothing; the same push later applies once',
      async () => {
        const appDb = await database.open({ max: 3, lockTimeoutMs: 300 });
        let app: TestApp | undefined;
        let release: (() => Promise<unknown>) | undefined;
        try {
          app = await startTestApp('postgres', {}, { sharedDb: { db: appDb, url: database.url, drop: async () => {} } });
          const agent = await createAgent(app, `lt-${randomUUID().slice(0, 6)}`);
          const { rows } = await appDb.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'");
          const tenantA = rows[0].id;
          const phone = uniquePhone();
          const body = {
            deviceId: 'lock-timeout',
            changes: [{ changeId: randomUUID(), localId: 'lt-1', entityType: 'contacts', operation: 'create', timestamp: ts(), data: { firstName: 'Late', phonePrimary: phone } }],
          };
          const before = await versionOf(tenantA);

          release = await holdTenantRow(tenantA);
          const refused = await app.api('POST', '/api/sync', { key: agent.apiKey, body });
          expect(refused.status).toBe(503);
          expect(refused.headers.get('retry-after')).toBe('2');
          expect(refused.body).toMatchObject({ success: false, error: 'UNAVAILABLE' });
          await release();
          release = undefined;

          expect(await versionOf(tenantA)).toBe(before);
          const stored = async () => (await appDb.query('SELECT id FROM contacts WHERE tenant_id = $1 AND phone_primary = $2', [tenantA, phone])).rows;
          expect(await stored()).toEqual([]);

          const retried = await app.api('POST', '/api/sync', { key: agent.apiKey, body });
          expect(retried.status).toBe(200);
          expect(retried.body.data.acknowledged[0]).toMatchObject({ success: true, status: 'applied', version: before + 1 });
          expect(await stored()).toHaveLength(1);
        } finally {
          await release?.();
          await app?.close();
        }
      },
    );
  });
});
