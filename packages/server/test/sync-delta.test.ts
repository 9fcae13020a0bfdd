import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTACT_WIRE_SQL } from '../src/modules/contacts/contacts.collection.js';
import { withTenantWrite } from '../src/sync/versions.js';
import { backends } from './helpers/test-db.js';
import { startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

interface WireChange {
  collection: string;
  op: 'upsert' | 'delete';
  id: string;
  version: number;
  data: Record<string, unknown>;
}

interface Applied {
  op: 'upsert' | 'delete';
  version: number;
  data: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)];

describe.each(backends)('delta pull on %s', (backend) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  let tenantSeq = 0;
  /** A fresh tenant, so each test owns its whole version sequence. */
  const newTenant = async () => {
    const slug = `sync-${backend}-${++tenantSeq}`;
    const res = await app.api('POST', '/api/tenants', { body: { name: `Sync ${slug}`, slug } });
    expect(res.status).toBe(201);
    const key = res.body.data.apiKey as string;
    const tenantId = res.body.data.tenant.id as string;
    // The team directory is a synced collection (SPEC §8): a new tenant's admin user takes its
    // first version. Tests of contacts pull `collections=contacts` and count from `base`.
    const { rows: admin } = await app.testDb.db.query<{ id: string; version: number }>(
      "SELECT id, version FROM users WHERE tenant_id = $1 AND agent_code = 'admin'",
      [tenantId],
    );
    const { rows: tv } = await app.testDb.db.query<{ current_version: number }>('SELECT current_version FROM tenant_versions WHERE tenant_id = $1', [
      tenantId,
    ]);
    return {
      key,
      tenantId,
      /** The admin's directory entry. */
      adminId: admin[0].id,
      adminVersion: Number(admin[0].version),
      /** The tenant's version once created (its directory), before the test writes anything. */
      base: Number(tv[0].current_version),
      api: (method: string, path: string, body?: unknown) => app.api(method, path, { key, body }),
      pull: async (query: string) => {
        const res = await app.api('GET', `/api/sync/delta?${query}`, { key });
        expect(res.status, res.text).toBe(200);
        return res.body.data as { changes: WireChange[]; latestVersion: number; nextVersion: number; hasMore: boolean };
      },
    };
  };
  type Tenant = Awaited<ReturnType<typeof newTenant>>;

  const createContacts = async (t: Tenant, n: number) => {
    const res = await t.api(
      'POST',
      '/api/contacts/bulk',
      Array.from({ length: n }, (_, i) => ({ firstName: `Bulk${i}`, phonePrimary: uniquePhone() })),
    );
    expect(res.status).toBe(200);
    expect(res.body.data.created).toBe(n);
    return res.body.data.results.map((r: { id: string }) => r.id) as string[];
  };

  /** Every record of the tenant as the database holds it now, tombstones included. */
  const serverState = async (tenantId: string) => {
    const { rows } = await app.testDb.db.query<{ id: string; version: number; is_deleted: boolean; data: Record<string, unknown> }>(
      `SELECT r.id, r.version, r.is_deleted, ${CONTACT_WIRE_SQL} AS data FROM contacts r WHERE r.tenant_id = $1`,
      [tenantId],
    );
    const state = new Map<string, Applied>();
    for (const r of rows) state.set(r.id, { op: r.is_deleted ? 'delete' : 'upsert', version: r.version, data: r.data });
    const { rows: tv } = await app.testDb.db.query<{ current_version: number }>(
      'SELECT current_version FROM tenant_versions WHERE tenant_id = $1',
      [tenantId],
    );
    return { state, currentVersion: tv[0].current_version };
  };

  const sorted = (state: Map<string, Applied>) => Object.fromEntries([...state.entries()].sort(([a], [b]) => a.localeCompare(b)));

  /**
   * A device's pull loop: pulls from its checkpoint, checks every page against the protocol and
   * applies it. Violations are collected rather than thrown so that concurrent writers finish.
   */
  const createReader = (t: Tenant, opts: { limit: number; collections?: string }) => {
    /** The contacts the reader applied (what `serverState` holds). */
    const state = new Map<string, Applied>();
    /** Records of other collections (the directory, SPEC §8), by `collection:id`. */
    const others = new Map<string, Applied>();
    const violations: string[] = [];
    let checkpoint = 0;
    let lastSeen = 0;
    let pulls = 0;
    let changesSeen = 0;
    const pullOnce = async (): Promise<boolean> => {
      const query = `version=${checkpoint}&limit=${opts.limit}${opts.collections ? `&collections=${opts.collections}` : ''}`;
      const res = await app.api('GET', `/api/sync/delta?${query}`, { key: t.key });
      if (res.status !== 200) {
        violations.push(`pull ${query} answered ${res.status} ${res.text}`);
        return false;
      }
      const delta = res.body.data as { changes: WireChange[]; latestVersion: number; nextVersion: number; hasMore: boolean };
      pulls++;
      if (delta.changes.length > opts.limit) violations.push(`page of ${delta.changes.length} > limit ${opts.limit}`);
      for (const change of delta.changes) {
        if (change.version <= checkpoint) violations.push(`version ${change.version} <= checkpoint ${checkpoint}`);
        if (change.version <= lastSeen) violations.push(`version ${change.version} after ${lastSeen}: not strictly increasing`);
        if (change.version > delta.latestVersion) violations.push(`version ${change.version} > latestVersion ${delta.latestVersion}`);
        if (change.data.version !== change.version) violations.push(`data.version ${String(change.data.version)} != ${change.version}`);
        lastSeen = change.version;
        changesSeen++;
        if (change.collection === 'contacts') state.set(change.id, { op: change.op, version: change.version, data: change.data });
        else others.set(`${change.collection}:${change.id}`, { op: change.op, version: change.version, data: change.data });
      }
      const last = delta.changes.at(-1)?.version;
      const expectedNext = delta.hasMore ? last : Math.max(delta.latestVersion, checkpoint);
      if (delta.nextVersion !== expectedNext) {
        violations.push(`nextVersion ${delta.nextVersion}, expected ${String(expectedNext)} (hasMore ${delta.hasMore})`);
      }
      if (delta.hasMore && delta.nextVersion <= checkpoint) violations.push(`hasMore without progress past ${checkpoint}`);
      if (delta.nextVersion < checkpoint) violations.push(`nextVersion ${delta.nextVersion} went back from ${checkpoint}`);
      checkpoint = Math.max(delta.nextVersion, checkpoint);
      return delta.hasMore;
    };
    return {
      state,
      others,
      violations,
      stats: () => ({ checkpoint, pulls, changesSeen }),
      /** Pulls while `busy()` says writers are running, then until hasMore is false. */
      async run(busy: () => boolean) {
        while (busy()) {
          await pullOnce();
          if (violations.length > 0) return;
        }
        for (let guard = 0; guard < 10_000 && (await pullOnce()); guard++);
      },
    };
  };

  it('never lets a reader skip a change while concurrent writers commit (gap-free visibility)', async () => {
    const t = await newTenant();
    const db = app.testDb.db;
    const contacts = app.built.services.contacts;
    const actor = { tenantId: t.tenantId };
    // Some records exist before the readers start.
    const seeded = await createContacts(t, 10);

    const WRITERS = 12;
    const ROUNDS = 10;
    let running = WRITERS;
    const failures: string[] = [];
    const expectStatus = (what: string, res: { status: number; text: string }, status: number) => {
      if (res.status !== status) failures.push(`${what}: ${res.status} ${res.text}`);
    };

    /** A transaction that holds the tenant's write open a while, as a slow push batch would. */
    const slowWrite = (live: string[]) =>
      withTenantWrite(db, t.tenantId, async (tx) => {
        // Raw rows, as a writer of another collection would write them under the same lock.
        const n = 1 + Math.floor(Math.random() * 3);
        const versions = Array.from({ length: n }, () => tx.nextVersion('contacts'));
        const phones = Array.from({ length: n }, () => uniquePhone());
        const { rows: created } = await tx.query<{ id: string }>(
          `INSERT INTO contacts (tenant_id, version, first_name, phone_primary)
           SELECT $1, v, 'Slow', p FROM unnest($2::bigint[], $3::text[]) AS n(v, p) RETURNING id`,
          [t.tenantId, versions, phones],
        );
        await sleep(Math.random() * 6);
        if (live.length > 0) {
          await tx.query('UPDATE contacts SET notes = $3, version = $4, updated_at = now() WHERE tenant_id = $1 AND id = $2', [
            t.tenantId,
            pick(live),
            `slow ${tx.currentVersion()}`,
            tx.nextVersion('contacts'),
          ]);
        }
        return created.map((c) => c.id);
      });

    const writer = async (w: number) => {
      const live: string[] = [];
      try {
        for (let round = 0; round < ROUNDS; round++) {
          const op = (w + round) % 6;
          if (op === 0 || live.length === 0) {
            const res = await t.api('POST', '/api/contacts', { firstName: `W${w}`, lastName: `R${round}`, phonePrimary: uniquePhone() });
            expectStatus('create', res, 201);
            if (res.status === 201) live.push(res.body.data.id);
          } else if (op === 1) {
            const res = await t.api('PATCH', `/api/contacts/${pick(live)}`, { company: `Co ${w}.${round}` });
            expectStatus('patch', res, 200);
          } else if (op === 2) {
            const id = live.splice(Math.floor(Math.random() * live.length), 1)[0];
            expectStatus('delete', await t.api('DELETE', `/api/contacts/${id}`), 204);
          } else if (op === 3) {
            const n = 5 + Math.floor(Math.random() * 11);
            const res = await t.api(
              'POST',
              '/api/contacts/bulk',
              Array.from({ length: n }, (_, i) => ({ firstName: `B${w}.${round}.${i}`, phonePrimary: uniquePhone() })),
            );
            expectStatus('bulk', res, 200);
            if (res.status === 200) {
              if (res.body.data.created !== n) failures.push(`bulk created ${res.body.data.created} of ${n}`);
              live.push(...res.body.data.results.filter((r: { success: boolean }) => r.success).map((r: { id: string }) => r.id));
            }
          } else if (op === 4) {
            const created = await contacts.create(actor, { firstName: `S${w}`, phonePrimary: uniquePhone() });
            live.push(created.id);
            await contacts.update(actor, pick(live), { notes: `service ${w}.${round}` });
          } else {
            live.push(...(await slowWrite(live)).result);
          }
        }
        // Touch a record every writer shares, so records also move while readers page over them.
        await contacts.update(actor, seeded[w % seeded.length], { notes: `last by ${w}` });
      } catch (error) {
        failures.push(`writer ${w}: ${(error as Error).stack ?? String(error)}`);
      } finally {
        running--;
      }
    };

    // Watch for writers waiting for the tenant's turn (its write queue, in the process): proof they overlap.
    let queuedSeen = 0;
    const watchQueue = async () => {
      while (running > 0) {
        queuedSeen = Math.max(queuedSeen, db.poolStats().queued);
        await sleep(2);
      }
    };

    const readers = [createReader(t, { limit: 3 }), createReader(t, { limit: 7, collections: 'contact' }), createReader(t, { limit: 50 })];
    await Promise.all([
      ...Array.from({ length: WRITERS }, (_, w) => writer(w)),
      ...readers.map((r) => r.run(() => running > 0)),
      watchQueue(),
    ]);

    expect(failures).toEqual([]);
    const server = await serverState(t.tenantId);
    expect(server.state.size).toBeGreaterThan(WRITERS * ROUNDS);
    expect([...server.state.values()].some((r) => r.op === 'delete')).toBe(true);
    for (const reader of readers) {
      expect(reader.violations).toEqual([]);
      // Every record, every tombstone, each at its latest version and data: nothing skipped.
      expect(sorted(reader.state)).toEqual(sorted(server.state));
      // Besides contacts, an unfiltered pull holds the directory (SPEC §8): here only the admin's
      // entry, from the tenant's creation; the reader asking for contacts gets nothing else.
      const directory = reader === readers[1] ? [] : [`users:${t.adminId}`];
      expect([...reader.others.keys()]).toEqual(directory);
      if (directory.length > 0) expect(reader.others.get(directory[0])).toMatchObject({ op: 'upsert', version: t.adminVersion });
      expect(reader.stats().checkpoint).toBe(server.currentVersion);
      // The reader really raced the writers rather than reading once at the end.
      expect(reader.stats().pulls).toBeGreaterThan(3);
    }
    expect(queuedSeen).toBeGreaterThan(0);
  }, 60_000);

  it('pages with limit k: every change exactly once, hasMore until the last page, nextVersion per the protocol', async () => {
    const t = await newTenant();
    const ids = await createContacts(t, 17);
    for (let i = 0; i < 3; i++) {
      const res = await t.api('POST', '/api/contacts', { firstName: `Single${i}`, phonePrimary: uniquePhone() });
      expect(res.status).toBe(201);
      ids.push(res.body.data.id);
    }
    const N = ids.length; // 20
    for (const k of [1, 3, 5, 7, 20, 21]) {
      // The contacts' pages (the directory, SPEC §8, took the versions up to `base`).
      let version = 0;
      const seen: WireChange[] = [];
      const pages: { hasMore: boolean; nextVersion: number; latestVersion: number; size: number }[] = [];
      for (;;) {
        const d = await t.pull(`version=${version}&limit=${k}&collections=contacts`);
        pages.push({ hasMore: d.hasMore, nextVersion: d.nextVersion, latestVersion: d.latestVersion, size: d.changes.length });
        expect(d.latestVersion).toBe(t.base + N);
        for (const c of d.changes) expect(c.version).toBeGreaterThan(version);
        seen.push(...d.changes);
        if (d.hasMore) {
          expect(d.changes).toHaveLength(k);
          expect(d.nextVersion).toBe(d.changes[k - 1].version);
        } else {
          expect(d.nextVersion).toBe(d.latestVersion);
        }
        version = d.nextVersion;
        if (!d.hasMore) break;
        expect(pages.length).toBeLessThanOrEqual(N);
      }
      // Exactly ceil(N/k) pages: a page that ends exactly on the last change says hasMore=false.
      expect(pages).toHaveLength(Math.ceil(N / k));
      expect(pages.slice(0, -1).every((p) => p.hasMore)).toBe(true);
      expect(seen.map((c) => c.id).sort()).toEqual([...ids].sort());
      expect(seen.map((c) => c.version)).toEqual(Array.from({ length: N }, (_, i) => t.base + i + 1));
      expect(seen.every((c) => c.collection === 'contacts' && c.op === 'upsert')).toBe(true);
    }
  });

  it('answers version=0 with a full sync of every record, tombstones included, in version order', async () => {
    const t = await newTenant();
    const ids = await createContacts(t, 6);
    expect((await t.api('DELETE', `/api/contacts/${ids[2]}`)).status).toBe(204);
    // Every contact (the directory, SPEC §8, took the versions up to `base`).
    const full = await t.pull('version=0&collections=contacts');
    const b = t.base;
    expect(full.hasMore).toBe(false);
    expect(full.latestVersion).toBe(b + 7);
    expect(full.nextVersion).toBe(b + 7);
    expect(full.changes.map((c) => c.id).sort()).toEqual([...ids].sort());
    expect(full.changes.map((c) => c.version)).toEqual([1, 2, 4, 5, 6, 7].map((v) => b + v));
    expect(full.changes.at(-1)).toMatchObject({ id: ids[2], op: 'delete', version: b + 7, data: { isDeleted: true, id: ids[2] } });
    const server = await serverState(t.tenantId);
    expect(Object.fromEntries(full.changes.map((c) => [c.id, { op: c.op, version: c.version, data: c.data }]))).toEqual(
      Object.fromEntries(server.state),
    );
    // Omitting version is the same full sync.
    expect(await t.pull('collections=contacts')).toEqual(full);
    // Without `collections`, every collection: the admin's directory entry first, then the same contacts.
    const everything = await t.pull('version=0');
    expect(everything.changes.map((c) => [c.collection, c.id, c.version])).toEqual([
      ['users', t.adminId, t.adminVersion],
      ...full.changes.map((c) => [c.collection, c.id, c.version]),
    ]);
    expect(everything).toMatchObject({ latestVersion: b + 7, nextVersion: b + 7, hasMore: false });
    expect(await t.pull('')).toEqual(everything);
  });

  it('answers a tenant without contacts with no contacts, latestVersion and nextVersion at its directory', async () => {
    const t = await newTenant();
    // The team directory is synced (SPEC §8): creating the tenant gave its admin user version 1,
    // so a fresh tenant is not at version 0; its contacts pull is empty at that version.
    expect(t.base).toBe(1);
    expect(t.adminVersion).toBe(1);
    expect(await t.pull('version=0&collections=contacts')).toEqual({ changes: [], latestVersion: 1, nextVersion: 1, hasMore: false });
    // A full pull holds exactly the admin's directory entry.
    const full = await t.pull('version=0');
    expect(full).toMatchObject({ latestVersion: 1, nextVersion: 1, hasMore: false });
    expect(full.changes).toEqual([
      {
        collection: 'users',
        op: 'upsert',
        id: t.adminId,
        version: 1,
        data: expect.objectContaining({ id: t.adminId, version: 1, agentCode: 'admin', role: 'admin', isDeleted: false }),
      },
    ]);
    expect(await t.pull('version=1')).toEqual({ changes: [], latestVersion: 1, nextVersion: 1, hasMore: false });
  });

  it('returns nothing when pulled again after applying a delta (no echo of what the device has)', async () => {
    const t = await newTenant();
    const ids = await createContacts(t, 4);
    const first = await t.pull('version=0');
    // The contacts and the admin's directory entry (SPEC §8).
    expect(first.changes.map((c) => c.id).sort()).toEqual([...ids, t.adminId].sort());
    const again = await t.pull(`version=${first.nextVersion}`);
    expect(again).toEqual({ changes: [], latestVersion: first.latestVersion, nextVersion: first.nextVersion, hasMore: false });
    // And it stays empty until something changes.
    expect(await t.pull(`version=${again.nextVersion}&limit=1`)).toEqual(again);
  });

  it('answers a version beyond the latest with no changes and keeps the given version as nextVersion', async () => {
    const t = await newTenant();
    await createContacts(t, 3);
    const d = await t.pull('version=1000');
    expect(d.changes).toEqual([]);
    expect(d.hasMore).toBe(false);
    expect(d.latestVersion).toBe(t.base + 3);
    expect(d.nextVersion).toBeGreaterThanOrEqual(1000);
    const big = await t.pull(`version=${Number.MAX_SAFE_INTEGER}`);
    expect(big.changes).toEqual([]);
    expect(big.nextVersion).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('rejects a version or limit out of bounds with a 400 envelope naming the field', async () => {
    const t = await newTenant();
    const cases: [string, string][] = [
      ['limit=0', 'limit'],
      ['limit=5001', 'limit'],
      ['limit=2.5', 'limit'],
      ['limit=abc', 'limit'],
      ['limit=-1', 'limit'],
      ['version=-1', 'version'],
      ['version=1.5', 'version'],
      ['version=abc', 'version'],
      ['version=1e400', 'version'],
      ['version=99999999999999999999', 'version'],
      ['version=9007199254740993', 'version'],
      ['deviceId=has%20space', 'deviceId'],
      ['collections=con%3Btacts', 'collections'],
      ['since=3', 'since'],
      ['version=1&version=2', 'version'],
      ['limit=5&limit=6', 'limit'],
    ];
    for (const [query, field] of cases) {
      const res = await app.api('GET', `/api/sync/delta?${query}`, { key: t.key });
      expect(res.status, `${query}: ${res.text}`).toBe(400);
      expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
      expect(typeof res.body.message).toBe('string');
      expect(res.body.details.map((d: { field: string }) => d.field), query).toContain(field);
    }
    // The bounds themselves are fine.
    expect((await t.pull('limit=1')).hasMore).toBe(false);
    expect((await t.pull('limit=5000')).hasMore).toBe(false);
  });

  it('rejects an unknown collection with a 400 naming it, and accepts plural and singular names', async () => {
    const t = await newTenant();
    await createContacts(t, 2);
    const unknown = await app.api('GET', '/api/sync/delta?collections=contacts,widgets', { key: t.key });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
    expect(unknown.body.message).toContain('widgets');
    expect(unknown.body.details[0].field).toBe('collections');
    const all = await t.pull('version=0&collections=contacts');
    expect(all.changes).toHaveLength(2);
    for (const collections of ['contact', 'contacts,contact', 'contact,%20contacts']) {
      expect(await t.pull(`version=0&collections=${collections}`), collections).toEqual(all);
    }
    // An empty list is every collection: the same contacts plus the directory (SPEC §8).
    const everything = await t.pull('version=0');
    expect(everything.changes.filter((c) => c.collection === 'contacts')).toEqual(all.changes);
    expect(everything.changes.filter((c) => c.collection !== 'contacts').map((c) => [c.collection, c.id])).toEqual([['users', t.adminId]]);
    expect(await t.pull('version=0&collections='), 'empty').toEqual(everything);
    // Singular and plural names of the directory too.
    expect(await t.pull('version=0&collections=user')).toEqual(await t.pull('version=0&collections=users'));
  });

  it('requires credentials', async () => {
    const res = await app.api('GET', '/api/sync/delta?version=0', { key: null });
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
  });

  it('does not deliver changes of another tenant', async () => {
    const a = await newTenant();
    const b = await newTenant();
    const aIds = await createContacts(a, 3);
    const bIds = await createContacts(b, 2);
    const pa = await a.pull('version=0');
    const pb = await b.pull('version=0');
    // Each tenant's contacts and its own directory (SPEC §8: its admin), nothing of the other.
    expect(pa.changes.map((c) => c.id).sort()).toEqual([...aIds, a.adminId].sort());
    expect(pb.changes.map((c) => c.id).sort()).toEqual([...bIds, b.adminId].sort());
    // Versions are per tenant.
    expect(pa.latestVersion).toBe(a.base + 3);
    expect(pb.latestVersion).toBe(b.base + 2);
  });

  it('delivers a record updated after it was pulled once more, at its new version with its new data', async () => {
    const t = await newTenant();
    const [a, b, c] = await createContacts(t, 3);
    // Versions after the directory's (SPEC §8).
    const v = (n: number) => t.base + n;
    const first = await t.pull('version=0');
    const patched = await t.api('PATCH', `/api/contacts/${b}`, { company: 'Acme' });
    expect(patched.status).toBe(200);
    const second = await t.pull(`version=${first.nextVersion}`);
    expect(second.changes).toEqual([{ collection: 'contacts', op: 'upsert', id: b, version: v(4), data: patched.body.data }]);
    expect(second.changes[0].data).toMatchObject({ company: 'Acme', version: v(4), isDeleted: false });
    expect(second).toMatchObject({ latestVersion: v(4), nextVersion: v(4), hasMore: false });
    // Several edits between pulls: the record comes once, at its latest state.
    await t.api('PATCH', `/api/contacts/${a}`, { notes: 'one' });
    await t.api('PATCH', `/api/contacts/${a}`, { notes: 'two' });
    await t.api('PATCH', `/api/contacts/${c}`, { notes: 'three' });
    await t.api('PATCH', `/api/contacts/${a}`, { notes: 'four' });
    const third = await t.pull(`version=${second.nextVersion}`);
    expect(third.changes.map((ch) => [ch.id, ch.version, ch.data.notes])).toEqual([
      [c, v(7), 'three'],
      [a, v(8), 'four'],
    ]);
    // A no-op edit takes no version and is not delivered again.
    expect((await t.api('PATCH', `/api/contacts/${a}`, { notes: 'four' })).status).toBe(200);
    expect((await t.pull(`version=${third.nextVersion}`)).changes).toEqual([]);
  });

  it('delivers a delete as op "delete" carrying the tombstone, to a device that had the record', async () => {
    const t = await newTenant();
    const [a, b] = await createContacts(t, 2);
    const first = await t.pull('version=0');
    expect((await t.api('DELETE', `/api/contacts/${a}`)).status).toBe(204);
    const second = await t.pull(`version=${first.nextVersion}`);
    expect(second.changes).toHaveLength(1);
    expect(second.changes[0]).toMatchObject({
      collection: 'contacts',
      op: 'delete',
      id: a,
      version: t.base + 3,
      data: { id: a, isDeleted: true, version: t.base + 3 },
    });
    // A device syncing its contacts from scratch learns of the tombstone too (deletes reach every device).
    const full = await t.pull('version=0&collections=contacts');
    expect(full.changes.map((c) => [c.id, c.op])).toEqual([
      [b, 'upsert'],
      [a, 'delete'],
    ]);
    expect((await t.pull(`version=${second.nextVersion}`)).changes).toEqual([]);
  });

  it('serves devices at one checkpoint a shared page from its second pull on, only while no commit followed it, whichever instance wrote', async () => {
    const other = await startTestApp(backend, {}, { sharedDb: app.testDb });
    const uncached = await startTestApp(backend, { PULL_CACHE_MB: '0' }, { sharedDb: app.testDb });
    try {
      const t = await newTenant();
      const ids = await createContacts(t, 5);
      // The checkpoint after the first two contacts (the directory, SPEC §8, holds the versions up to `base`).
      const b = t.base;
      const first = await t.pull(`version=${b + 2}`);
      expect(first.changes.map((c) => c.id)).toEqual(ids.slice(2));
      // A page is kept from the second time it is read: one asked for once is not.
      await app.testDb.db.query(`UPDATE contacts SET notes = 'unversioned once' WHERE id = $1`, [ids[3]]);
      const second = await t.pull(`version=${b + 2}`);
      expect(second.changes[1].data.notes).toBe('unversioned once');
      // A write behind the server's back, taking no version: only a page read before it shows the old value.
      await app.testDb.db.query(`UPDATE contacts SET notes = 'unversioned' WHERE id = $1`, [ids[4]]);
      const again = await t.pull(`version=${b + 2}`);
      expect(again).toEqual(second);
      expect(again.changes[2].data.notes).toBeNull();
      const direct = await uncached.api('GET', `/api/sync/delta?version=${b + 2}`, { key: t.key });
      expect(direct.body.data.changes[2].data.notes).toBe('unversioned');
      // Another instance commits: this instance's next pull reads past its cached page.
      const patched = await other.api('PATCH', `/api/contacts/${ids[2]}`, { key: t.key, body: { company: 'Elsewhere' } });
      expect(patched.status).toBe(200);
      const after = await t.pull(`version=${b + 2}`);
      expect(after.latestVersion).toBe(b + 6);
      expect(after.changes.map((c) => [c.id, c.version])).toEqual([
        [ids[3], b + 4],
        [ids[4], b + 5],
        [ids[2], b + 6],
      ]);
      expect(after.changes[1].data.notes).toBe('unversioned');
      expect(after.changes[2].data.company).toBe('Elsewhere');
      // A device that is up to date gets an empty page with its own checkpoint kept.
      expect(await t.pull(`version=${b + 6}`)).toEqual({ changes: [], latestVersion: b + 6, nextVersion: b + 6, hasMore: false });
    } finally {
      await other.close();
      await uncached.close();
    }
  });

  it('picks up a record that changes while a device is paging, without losing or repeating others', async () => {
    const t = await newTenant();
    const ids = await createContacts(t, 9);
    // The device pages through contacts (the directory, SPEC §8, took the versions up to `base`).
    const page1 = await t.pull('version=0&limit=4&collections=contacts');
    expect(page1.changes.map((c) => c.id)).toEqual(ids.slice(0, 4));
    // A record already delivered changes, and one not yet delivered is deleted.
    await t.api('PATCH', `/api/contacts/${ids[1]}`, { notes: 'changed mid-sync' });
    await t.api('DELETE', `/api/contacts/${ids[6]}`);
    const state = new Map(page1.changes.map((c) => [c.id, c]));
    let version = page1.nextVersion;
    let pages = 1;
    for (;;) {
      const d = await t.pull(`version=${version}&limit=4&collections=contacts`);
      pages++;
      for (const c of d.changes) state.set(c.id, c);
      version = d.nextVersion;
      if (!d.hasMore) break;
    }
    expect(pages).toBe(3);
    expect(state.get(ids[1])).toMatchObject({ op: 'upsert', version: t.base + 10, data: { notes: 'changed mid-sync' } });
    expect(state.get(ids[6])).toMatchObject({ op: 'delete', version: t.base + 11 });
    expect(version).toBe(t.base + 11);
    const server = await serverState(t.tenantId);
    expect(Object.fromEntries([...state].map(([id, c]) => [id, { op: c.op, version: c.version, data: c.data }]))).toEqual(
      Object.fromEntries(server.state),
    );
  });
});
