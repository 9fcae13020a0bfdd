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
    return {
      key,
      tenantId,
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
    const state = new Map<string, Applied>();
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
        state.set(change.id, { op: change.op, version: change.version, data: change.data });
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
        const versions = Array.from({ length: n }, () => tx.nextVersion());
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
            tx.nextVersion(),
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
      let version = 0;
      const seen: WireChange[] = [];
      const pages: { hasMore: boolean; nextVersion: number; latestVersion: number; size: number }[] = [];
      for (;;) {
        const d = await t.pull(`version=${version}&limit=${k}`);
        pages.push({ hasMore: d.hasMore, nextVersion: d.nextVersion, latestVersion: d.latestVersion, size: d.changes.length });
        expect(d.latestVersion).toBe(N);
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
      expect(seen.map((c) => c.version)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
      expect(seen.every((c) => c.collection === 'contacts' && c.op === 'upsert')).toBe(true);
    }
  });

  it('answers version=0 with a full sync of every record, tombstones included, in version order', async () => {
    const t = await newTenant();
    const ids = await createContacts(t, 6);
    expect((await t.api('DELETE', `/api/contacts/${ids[2]}`)).status).toBe(204);
    const full = await t.pull('version=0');
    expect(full.hasMore).toBe(false);
    expect(full.latestVersion).toBe(7);
    expect(full.nextVersion).toBe(7);
    expect(full.changes.map((c) => c.id).sort()).toEqual([...ids].sort());
    expect(full.changes.map((c) => c.version)).toEqual([1, 2, 4, 5, 6, 7]);
    expect(full.changes.at(-1)).toMatchObject({ id: ids[2], op: 'delete', version: 7, data: { isDeleted: true, id: ids[2] } });
    const server = await serverState(t.tenantId);
    expect(Object.fromEntries(full.changes.map((c) => [c.id, { op: c.op, version: c.version, data: c.data }]))).toEqual(
      Object.fromEntries(server.state),
    );
    // Omitting version is the same full sync.
    expect(await t.pull('')).toEqual(full);
  });

  it('answers an empty tenant with no changes, latestVersion 0 and nextVersion 0', async () => {
    const t = await newTenant();
    expect(await t.pull('version=0')).toEqual({ changes: [], latestVersion: 0, nextVersion: 0, hasMore: false });
  });

  it('returns nothing when pulled again after applying a delta (no echo of what the device has)', async () => {
    const t = await newTenant();
    await createContacts(t, 4);
    const first = await t.pull('version=0');
    expect(first.changes).toHaveLength(4);
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
    expect(d.latestVersion).toBe(3);
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
    const all = await t.pull('version=0');
    expect(all.changes).toHaveLength(2);
    for (const collections of ['contacts', 'contact', 'contacts,contact', 'contact,%20contacts', '']) {
      expect(await t.pull(`version=0&collections=${collections}`), collections).toEqual(all);
    }
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
    expect(pa.changes.map((c) => c.id).sort()).toEqual([...aIds].sort());
    expect(pb.changes.map((c) => c.id).sort()).toEqual([...bIds].sort());
    // Versions are per tenant.
    expect(pa.latestVersion).toBe(3);
    expect(pb.latestVersion).toBe(2);
  });

  it('delivers a record updated after it was pulled once more, at its new version with its new data', async () => {
    const t = await newTenant();
    const [a, b, c] = await createContacts(t, 3);
    const first = await t.pull('version=0');
    const patched = await t.api('PATCH', `/api/contacts/${b}`, { company: 'Acme' });
    expect(patched.status).toBe(200);
    const second = await t.pull(`version=${first.nextVersion}`);
    expect(second.changes).toEqual([{ collection: 'contacts', op: 'upsert', id: b, version: 4, data: patched.body.data }]);
    expect(second.changes[0].data).toMatchObject({ company: 'Acme', version: 4, isDeleted: false });
    expect(second).toMatchObject({ latestVersion: 4, nextVersion: 4, hasMore: false });
    // Several edits between pulls: the record comes once, at its latest state.
    await t.api('PATCH', `/api/contacts/${a}`, { notes: 'one' });
    await t.api('PATCH', `/api/contacts/${a}`, { notes: 'two' });
    await t.api('PATCH', `/api/contacts/${c}`, { notes: 'three' });
    await t.api('PATCH', `/api/contacts/${a}`, { notes: 'four' });
    const third = await t.pull(`version=${second.nextVersion}`);
    expect(third.changes.map((ch) => [ch.id, ch.version, ch.data.notes])).toEqual([
      [c, 7, 'three'],
      [a, 8, 'four'],
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
    expect(second.changes[0]).toMatchObject({ collection: 'contacts', op: 'delete', id: a, version: 3, data: { id: a, isDeleted: true, version: 3 } });
    // A device syncing from scratch learns of the tombstone too (deletes reach every device).
    const full = await t.pull('version=0');
    expect(full.changes.map((c) => [c.id, c.op])).toEqual([
      [b, 'upsert'],
      [a, 'delete'],
    ]);
    expect((await t.pull(`version=${second.nextVersion}`)).changes).toEqual([]);
  });

  it('serves devices at one checkpoint a shared page only while no commit followed it, whichever instance wrote', async () => {
    const other = await startTestApp(backend, {}, { sharedDb: app.testDb });
    const uncached = await startTestApp(backend, { PULL_CACHE_MB: '0' }, { sharedDb: app.testDb });
    try {
      const t = await newTenant();
      const ids = await createContacts(t, 5);
      const first = await t.pull('version=2');
      expect(first.changes.map((c) => c.id)).toEqual(ids.slice(2));
      // A write behind the server's back, taking no version: only a page read before it shows the old value.
      await app.testDb.db.query(`UPDATE contacts SET notes = 'unversioned' WHERE id = $1`, [ids[4]]);
      const again = await t.pull('version=2');
      expect(again).toEqual(first);
      expect(again.changes[2].data.notes).toBeNull();
      const direct = await uncached.api('GET', '/api/sync/delta?version=2', { key: t.key });
      expect(direct.body.data.changes[2].data.notes).toBe('unversioned');
      // Another instance commits: this instance's next pull reads past its cached page.
      const patched = await other.api('PATCH', `/api/contacts/${ids[2]}`, { key: t.key, body: { company: 'Elsewhere' } });
      expect(patched.status).toBe(200);
      const after = await t.pull('version=2');
      expect(after.latestVersion).toBe(6);
      expect(after.changes.map((c) => [c.id, c.version])).toEqual([
        [ids[3], 4],
        [ids[4], 5],
        [ids[2], 6],
      ]);
      expect(after.changes[1].data.notes).toBe('unversioned');
      expect(after.changes[2].data.company).toBe('Elsewhere');
      // A device that is up to date gets an empty page with its own checkpoint kept.
      expect(await t.pull('version=6')).toEqual({ changes: [], latestVersion: 6, nextVersion: 6, hasMore: false });
    } finally {
      await other.close();
      await uncached.close();
    }
  });

  it('picks up a record that changes while a device is paging, without losing or repeating others', async () => {
    const t = await newTenant();
    const ids = await createContacts(t, 9);
    const page1 = await t.pull('version=0&limit=4');
    expect(page1.changes.map((c) => c.id)).toEqual(ids.slice(0, 4));
    // A record already delivered changes, and one not yet delivered is deleted.
    await t.api('PATCH', `/api/contacts/${ids[1]}`, { notes: 'changed mid-sync' });
    await t.api('DELETE', `/api/contacts/${ids[6]}`);
    const state = new Map(page1.changes.map((c) => [c.id, c]));
    let version = page1.nextVersion;
    let pages = 1;
    for (;;) {
      const d = await t.pull(`version=${version}&limit=4`);
      pages++;
      for (const c of d.changes) state.set(c.id, c);
      version = d.nextVersion;
      if (!d.hasMore) break;
    }
    expect(pages).toBe(3);
    expect(state.get(ids[1])).toMatchObject({ op: 'upsert', version: 10, data: { notes: 'changed mid-sync' } });
    expect(state.get(ids[6])).toMatchObject({ op: 'delete', version: 11 });
    expect(version).toBe(11);
    const server = await serverState(t.tenantId);
    expect(Object.fromEntries([...state].map(([id, c]) => [id, { op: c.op, version: c.version, data: c.data }]))).toEqual(
      Object.fromEntries(server.state),
    );
  });
});
