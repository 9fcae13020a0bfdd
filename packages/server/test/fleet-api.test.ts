import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, eventually, type Probe } from './helpers/sockets.js';

/** Fleet operations through the public surface (SPEC §11, issue 13): metrics, device health, sync analytics, alerts. */

const METRIC_NAMES = [
  'http_request_duration_seconds',
  'fieldsync_sync_pulls_total',
  'fieldsync_sync_pushes_total',
  'fieldsync_changes_applied_total',
  'fieldsync_conflicts_total',
  'fieldsync_idempotent_replays_total',
  'fieldsync_socket_connections',
  'fieldsync_fanout_latency_seconds',
  'fieldsync_db_pool_total',
  'fieldsync_db_pool_idle',
  'fieldsync_db_pool_waiting',
  'process_cpu_user_seconds_total',
];

describe.each(backends)('fleet operations on %s', (backend) => {
  let app: TestApp;
  let seq = 0;

  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  /** A fresh tenant: its admin key, a manager, an agent with a device key. */
  const tenant = async () => {
    const slug = `fleet-${backend}-${++seq}-${randomUUID().slice(0, 8)}`;
    const created = await app.api('POST', '/api/tenants', { body: { name: `Fleet ${seq}`, slug } });
    expect(created.status).toBe(201);
    const adminKey: string = created.body.data.apiKey;
    const agent = await createAgent(app, 'AG1', {}, adminKey);
    const manager = await createAgent(app, 'MG1', { role: 'manager' }, adminKey);
    return { slug, adminKey, agentKey: agent.apiKey, managerKey: manager.apiKey };
  };
  const pull = (key: string, deviceId: string, version = 0) =>
    app.api('GET', `/api/sync/delta?version=${version}&limit=1000`, { key, headers: { 'x-device-id': deviceId } });
  const push = (key: string, deviceId: string, changes: unknown[], extra: Record<string, unknown> = {}) =>
    app.api('POST', '/api/sync', { key, body: { deviceId, changes, ...extra } });
  const contactChange = () => ({
    changeId: randomUUID(),
    localId: `l-${randomUUID()}`,
    entityType: 'contacts',
    operation: 'create',
    timestamp: new Date().toISOString(),
    data: { firstName: 'Fleet', phonePrimary: uniquePhone() },
  });

  describe('GET /metrics', () => {
    it('answers 401 without credentials and 403 to an agent or a manager', async () => {
      const t = await tenant();
      const none = await app.api('GET', '/metrics', { key: null });
      expect(none.status).toBe(401);
      expect(none.body).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
      expect((await app.api('GET', '/metrics', { key: t.agentKey })).status).toBe(403);
      expect((await app.api('GET', '/metrics', { key: t.managerKey })).status).toBe(403);
      expect((await app.api('GET', '/metrics', { key: 'fsk_not_a_real_key_0123456789abcdefgh' })).status).toBe(401);
    });

    it("serves every SPEC metric in Prometheus text to an admin, labelled by route template and never by a raw id", async () => {
      const t = await tenant();
      const id = randomUUID();
      expect((await app.api('GET', `/api/contacts/${id}`, { key: t.adminKey })).status).toBe(404);
      await pull(t.agentKey, 'metrics-phone');
      const pushed = await push(t.agentKey, 'metrics-phone', [contactChange()], { lastSyncVersion: 0 });
      expect(pushed.status).toBe(200);
      // An Idempotency-Key replay counts as one.
      const body = { deviceId: 'metrics-phone', changes: [contactChange()] };
      const key = randomUUID();
      expect((await app.api('POST', '/api/sync', { key: t.agentKey, body, headers: { 'idempotency-key': key } })).status).toBe(200);
      const replay = await app.api('POST', '/api/sync', { key: t.agentKey, body, headers: { 'idempotency-key': key } });
      expect(replay.headers.get('idempotent-replayed')).toBe('true');

      const res = await app.api('GET', '/metrics', { key: t.adminKey });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      for (const name of METRIC_NAMES) expect(res.text, name).toContain(`# TYPE ${name} `);
      expect(res.text).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/api\/contacts\/:id",status_code="404"\} [1-9]/);
      expect(res.text).not.toContain(id);
      expect(res.text).toMatch(/fieldsync_sync_pulls_total [1-9]/);
      expect(res.text).toMatch(/fieldsync_sync_pushes_total [1-9]/);
      expect(res.text).toMatch(/fieldsync_changes_applied_total\{collection="contacts"\} [1-9]/);
      expect(res.text).toMatch(/fieldsync_idempotent_replays_total\{kind="request"\} [1-9]/);
      expect(res.text).toMatch(/fieldsync_fanout_latency_seconds_count [1-9]/);
    });

    it('counts conflicts by collection, strategy and outcome', async () => {
      const t = await tenant();
      const created = await app.api('POST', '/api/contacts', { key: t.adminKey, body: { firstName: 'Cf', phonePrimary: uniquePhone() } });
      const contact = created.body.data;
      expect((await app.api('PATCH', `/api/contacts/${contact.id}`, { key: t.adminKey, body: { notes: 'office' } })).status).toBe(200);
      await push(t.agentKey, 'conflict-phone', [
        { changeId: randomUUID(), id: contact.id, entityType: 'contacts', operation: 'update', baseVersion: contact.version, timestamp: new Date(Date.now() - 60_000).toISOString(), data: { notes: 'phone' } },
      ]);
      const res = await app.api('GET', '/metrics', { key: t.adminKey });
      expect(res.text).toMatch(/fieldsync_conflicts_total\{collection="contacts",strategy="most_recent_wins",outcome="server_kept"\} [1-9]/);
    });
  });

  describe('device health', () => {
    it('puts a healthScore from 0 to 100 on every device object: 100 for a current device that syncs cleanly', async () => {
      const t = await tenant();
      expect((await pull(t.agentKey, 'healthy-phone')).status).toBe(200);
      const list = await app.api('GET', '/api/devices', { key: t.managerKey });
      expect(list.status).toBe(200);
      const device = list.body.data.find((d: { deviceId: string }) => d.deviceId === 'healthy-phone');
      expect(device).toMatchObject({ healthScore: 100, versionsBehind: 0, errorCount: 0 });
      const one = await app.api('GET', '/api/devices/healthy-phone', { key: t.adminKey });
      expect(one.body.data.healthScore).toBe(100);
      const outdated = await app.api('GET', '/api/devices/outdated?threshold=0', { key: t.adminKey });
      for (const d of outdated.body.data) expect(d.healthScore).toBeGreaterThanOrEqual(0);
    });

    it('lowers the score of a device whose syncs fail and of one that falls behind', async () => {
      const t = await tenant();
      expect((await pull(t.agentKey, 'failing-phone')).status).toBe(200);
      // A push the server refuses after it reached the sync service: a failed sync of that device.
      for (let i = 0; i < 3; i++) expect((await push(t.agentKey, 'failing-phone', [], { lastSyncVersion: 2 ** 60 })).status).toBe(400);
      const failing = (await app.api('GET', '/api/devices/failing-phone', { key: t.adminKey })).body.data;
      expect(failing).toMatchObject({ syncCount: 4, errorCount: 3, syncStatus: 'error' });
      expect(failing.healthScore).toBe(Math.round(50 * (1 / 4) + 25 + 25));

      expect((await pull(t.agentKey, 'lagging-phone')).status).toBe(200);
      const bulk = await app.api('POST', '/api/contacts/bulk', { key: t.adminKey, body: Array.from({ length: 20 }, () => ({ firstName: 'B', phonePrimary: uniquePhone() })) });
      expect(bulk.status).toBe(200);
      const lagging = (await app.api('GET', '/api/devices/lagging-phone', { key: t.adminKey })).body.data;
      expect(lagging.versionsBehind).toBeGreaterThanOrEqual(20);
      expect(lagging.healthScore).toBeLessThan(100);
      expect(lagging.healthScore).toBeGreaterThan(80);
    });

    it('creates no device row for a failed sync of a device never seen, and counts nothing against another user\'s device', async () => {
      const t = await tenant();
      expect((await push(t.agentKey, 'never-seen-phone', [], { lastSyncVersion: 2 ** 60 })).status).toBe(400);
      expect((await app.api('GET', '/api/devices/never-seen-phone', { key: t.adminKey })).status).toBe(404);
      expect((await pull(t.agentKey, 'owned-phone')).status).toBe(200);
      const other = await createAgent(app, 'AG2', {}, t.adminKey);
      expect((await push(other.apiKey, 'owned-phone', [], { lastSyncVersion: 2 ** 60 })).status).toBe(400);
      expect((await pull(other.apiKey, 'owned-phone')).status).toBe(403);
      expect((await app.api('GET', '/api/devices/owned-phone', { key: t.adminKey })).body.data).toMatchObject({ errorCount: 0, syncStatus: 'ok' });
    });

    it('refuses devices to an agent (403)', async () => {
      const t = await tenant();
      expect((await app.api('GET', '/api/devices', { key: t.agentKey })).status).toBe(403);
    });

    it('tells watching admin and manager sockets when device state changes (fleet_update); an agent may not watch, and a socket that did not ask hears nothing', async () => {
      const t = await tenant();
      let manager: Probe | undefined;
      let agent: Probe | undefined;
      let quietAdmin: Probe | undefined;
      try {
        manager = await authedProbe(app.url, { apiKey: t.managerKey, deviceId: 'manager-console' });
        agent = await authedProbe(app.url, { apiKey: t.agentKey, deviceId: 'agent-other-phone' });
        quietAdmin = await authedProbe(app.url, { apiKey: t.adminKey, deviceId: 'admin-phone' });
        expect(await manager.ack('fleet:watch', {})).toEqual({ success: true, data: { watching: true } });
        expect(await agent.ack('fleet:watch', {})).toMatchObject({ success: false, error: 'FORBIDDEN' });
        expect(await manager.ack('fleet:watch', { extra: 1 })).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
        await pull(t.agentKey, 'live-phone');
        const update = await manager.waitFor('fleet_update', (p) => p.deviceIds.includes('live-phone'));
        expect(typeof update.at).toBe('string');
        await new Promise((resolve) => setTimeout(resolve, 1300));
        expect(agent.all('fleet_update')).toEqual([]);
        expect(quietAdmin.all('fleet_update')).toEqual([]);
      } finally {
        closeAll(manager, agent, quietAdmin);
      }
    });
  });

  describe('GET /api/analytics/sync', () => {
    it('answers the current hour as it happens, then the same counts once flushed (not twice)', async () => {
      const t = await tenant();
      for (let i = 0; i < 3; i++) expect((await pull(t.agentKey, 'stats-phone')).status).toBe(200);
      expect((await push(t.agentKey, 'stats-phone', [contactChange(), contactChange()], { lastSyncVersion: 0 })).status).toBe(200);
      expect((await push(t.agentKey, 'stats-phone', [], { lastSyncVersion: 2 ** 60 })).status).toBe(400);

      const read = async () => {
        const res = await app.api('GET', '/api/analytics/sync', { key: t.managerKey });
        expect(res.status).toBe(200);
        return res.body.data;
      };
      const live = await read();
      expect(live.buckets.length).toBeGreaterThanOrEqual(24);
      const current = live.buckets.at(-1);
      expect(Date.parse(current.start)).toBe(Math.floor(Date.now() / 3_600_000) * 3_600_000);
      expect(current).toMatchObject({ pulls: 3, pushes: 2, failures: 1, changesPushed: 2, conflicts: 0, conflictRate: 0 });
      expect(current.successRate).toBeCloseTo(4 / 5, 4);
      expect(current.itemsSynced).toBeGreaterThanOrEqual(2);
      expect(current.p50Ms).toBeGreaterThan(0);
      expect(current.p95Ms).toBeGreaterThanOrEqual(current.p50Ms);
      expect(current.p99Ms).toBeGreaterThanOrEqual(current.p95Ms);
      expect(live.totals).toMatchObject({ pulls: 3, pushes: 2, failures: 1 });

      await app.built.services.analytics.flush();
      const stored = await app.testDb.db.query<{ pulls: number }>(
        'SELECT a.pulls FROM sync_analytics a JOIN tenants t ON t.id = a.tenant_id WHERE t.slug = $1',
        [t.slug],
      );
      expect(stored.rows.map((r) => Number(r.pulls))).toEqual([3]);
      expect((await read()).totals).toMatchObject({ pulls: 3, pushes: 2, failures: 1 });
    });

    it('keeps hours for ANALYTICS_RETENTION_DAYS (90) and per-minute rows for two hours', async () => {
      const t = await tenant();
      const { rows } = await app.testDb.db.query<{ id: string }>('SELECT id FROM tenants WHERE slug = $1', [t.slug]);
      const tenantId = rows[0].id;
      const hist = `{${new Array(160).fill(0).join(',')}}`;
      const hour = 3_600_000;
      const thisHour = Math.floor(Date.now() / hour) * hour;
      for (const [table, column, ageMs] of [
        ['sync_analytics', 'hour', 91 * 24 * hour],
        ['sync_analytics', 'hour', 89 * 24 * hour],
        ['sync_recent', 'minute', 3 * hour],
        ['sync_recent', 'minute', hour],
      ] as const) {
        await app.testDb.db.query(`INSERT INTO ${table} (tenant_id, ${column}, pulls, latency_hist) VALUES ($1, to_timestamp($2 / 1000.0), 1, $3::bigint[])`, [
          tenantId,
          thisHour - ageMs,
          hist,
        ]);
      }
      await app.built.services.analytics.prune();
      const left = async (table: string) =>
        Number((await app.testDb.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [tenantId])).rows[0].n);
      expect(await left('sync_analytics')).toBe(1);
      expect(await left('sync_recent')).toBe(1);
      const res = await app.api('GET', `/api/analytics/sync?from=${new Date(thisHour - 89 * 24 * hour).toISOString()}`, { key: t.adminKey });
      expect(res.status).toBe(200);
      expect(res.body.data.buckets[0]).toMatchObject({ pulls: 1 });
      expect(res.body.data.totals.pulls).toBe(1);
    });

    it("shows one tenant nothing of another's syncs", async () => {
      const a = await tenant();
      const b = await tenant();
      await pull(a.agentKey, 'tenant-a-phone');
      const res = await app.api('GET', '/api/analytics/sync', { key: b.adminKey });
      expect(res.body.data.totals).toMatchObject({ pulls: 0, pushes: 0, successRate: null, p95Ms: null });
    });

    it('answers bad ranges with a 400 envelope and an agent with 403', async () => {
      const t = await tenant();
      for (const query of ['from=yesterday', 'to=2026-13-45T00:00:00Z', 'from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 'from=2020-01-01T00:00:00Z', 'hours=3']) {
        const res = await app.api('GET', `/api/analytics/sync?${query}`, { key: t.adminKey });
        expect(res.status, query).toBe(400);
        expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
      }
      expect((await app.api('GET', '/api/analytics/sync', { key: t.agentKey })).status).toBe(403);
    });
  });

  describe('alerts', () => {
    const alertsOf = async (key: string, status = 'active') => {
      const res = await app.api('GET', `/api/alerts?status=${status}`, { key });
      expect(res.status).toBe(200);
      return res.body.data as { id: string; type: string; severity: string; deviceId?: string; value: number; threshold: number; resolvedAt: string | null; message: string }[];
    };

    it('raises device_behind for a device more than 100 versions behind, and resolves it once the device catches up', async () => {
      const t = await tenant();
      expect((await pull(t.agentKey, 'behind-phone')).status).toBe(200);
      const bulk = await app.api('POST', '/api/contacts/bulk', { key: t.adminKey, body: Array.from({ length: 120 }, () => ({ firstName: 'B', phonePrimary: uniquePhone() })) });
      expect(bulk.body.data.created).toBe(120);
      await app.built.services.alertsJob.tick();
      const raised = (await alertsOf(t.managerKey)).find((a) => a.type === 'device_behind');
      expect(raised).toMatchObject({ severity: 'warning', deviceId: 'behind-phone', threshold: 100, resolvedAt: null });
      expect(raised!.value).toBeGreaterThan(100);
      // Evaluating again keeps one alert.
      await app.built.services.alertsJob.tick();
      expect((await alertsOf(t.adminKey)).filter((a) => a.type === 'device_behind')).toHaveLength(1);

      let version = 0;
      for (let more = true; more; ) {
        const page = await pull(t.agentKey, 'behind-phone', version);
        version = page.body.data.nextVersion;
        more = page.body.data.hasMore;
      }
      await app.built.services.alertsJob.tick();
      expect((await alertsOf(t.adminKey)).filter((a) => a.type === 'device_behind')).toEqual([]);
      const resolved = (await alertsOf(t.adminKey, 'resolved')).find((a) => a.id === raised!.id);
      expect(resolved?.resolvedAt).toEqual(expect.any(String));
    });

    it('raises failed syncs per minute and the sync success rate from real failed pushes, critical past the seed thresholds', async () => {
      const t = await tenant();
      await pull(t.agentKey, 'flaky-phone');
      const failures = await Promise.all(Array.from({ length: 60 }, () => push(t.agentKey, 'flaky-phone', [], { lastSyncVersion: 2 ** 60 })));
      expect(failures.every((r) => r.status === 400)).toBe(true);
      await app.built.services.alertsJob.tick();
      const active = await alertsOf(t.adminKey);
      const perMinute = active.find((a) => a.type === 'failed_syncs_per_minute');
      expect(perMinute).toMatchObject({ severity: 'critical', threshold: 10, value: 12 });
      const success = active.find((a) => a.type === 'sync_success_rate');
      expect(success).toMatchObject({ severity: 'critical', threshold: 0.95 });
      const health = active.find((a) => a.type === 'device_health' && a.deviceId === 'flaky-phone');
      expect(health).toMatchObject({ severity: 'critical', threshold: 70 });
    });

    it('answers an agent 403 and bad filters 400', async () => {
      const t = await tenant();
      expect((await app.api('GET', '/api/alerts', { key: t.agentKey })).status).toBe(403);
      for (const query of ['status=open', 'limit=0', 'limit=abc', 'other=1']) {
        const res = await app.api('GET', `/api/alerts?${query}`, { key: t.adminKey });
        expect(res.status, query).toBe(400);
        expect(res.body.success).toBe(false);
      }
    });

    it('tells watching admin sockets when an alert is raised', async () => {
      const t = await tenant();
      const admin = await authedProbe(app.url, { apiKey: t.adminKey, deviceId: 'admin-console' });
      try {
        expect((await admin.ack('fleet:watch', {})).success).toBe(true);
        await Promise.all(Array.from({ length: 30 }, () => push(t.agentKey, 'noisy-phone', [], { lastSyncVersion: 2 ** 60 })));
        await app.built.services.alertsJob.tick();
        const event = await admin.waitFor('alert', (p) => p.change === 'raised' && p.alert.type === 'failed_syncs_per_minute');
        expect(event.alert.severity).toBe('warning');
      } finally {
        closeAll(admin);
      }
    });
  });
});

describe('GET /metrics with METRICS_TOKEN, and the rate limit', () => {
  let app: TestApp;
  const token = 'scrape-token-0123456789abcdef';
  beforeAll(async () => {
    app = await startTestApp('pglite', { METRICS_TOKEN: token, RATE_LIMIT_PER_MINUTE: '5' });
  });

  it("serves the dashboard's static files without spending the address's request budget", async () => {
    for (let i = 0; i < 3; i++) {
      for (const path of ['/dashboard/', '/dashboard/app.js', '/dashboard/style.css', '/dashboard/vendor/uplot/uPlot.esm.js']) {
        expect((await fetch(app.url + path)).status, path).toBe(200);
      }
    }
  });
  afterAll(async () => {
    await app?.close();
  });

  it('opens to that bearer token only, not even to an admin key', async () => {
    expect((await app.api('GET', '/metrics', { key: null, headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await app.api('GET', '/metrics', { key: null, headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
    expect((await app.api('GET', '/metrics')).status).toBe(401);
  });
});

// Keeps eventually imported for suites that poll.
void eventually;
