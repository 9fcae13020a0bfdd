import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { createHubspotExporter } from '../src/modules/outreach/hubspot/hubspot.export.js';
import { backends } from './helpers/test-db.js';
import { startHubspotMock, type HubspotMock } from './helpers/hubspot-mock.js';
import { startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

const TOKEN = 'pat-na1-test-token-0123456789';
const SERVER_TOKEN = 'pat-na1-server-token-0123456789';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns something truthy, or fails after `ms`. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    const value = await fn();
    if (value) return value;
    last = value;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** The export settings of these tests: fast polls and retries, a short lease and timeout. */
const hubspotEnv = (mock: HubspotMock, extra: Record<string, string> = {}) => ({
  HUBSPOT_BASE_URL: mock.url,
  HUBSPOT_POLL_MS: '50',
  HUBSPOT_RETRY_BASE_MS: '50',
  HUBSPOT_MAX_ATTEMPTS: '3',
  HUBSPOT_TIMEOUT_MS: '800',
  HUBSPOT_LEASE_MS: '1500',
  HUBSPOT_REQUESTS_PER_SECOND: '0',
  ...extra,
});

describe.each(backends)('HubSpot export on %s', (backend) => {
  let mock: HubspotMock;
  let app: TestApp;

  /** A new organisation with the export enabled with TOKEN: its admin key. */
  const org = async (enable = true) => {
    const res = await app.api('POST', '/api/tenants', { body: { name: 'Org', slug: `hs-${randomUUID().slice(0, 8)}` } });
    const key = res.body.data.apiKey as string;
    if (enable) expect((await app.api('PUT', '/api/integrations/hubspot', { key, body: { accessToken: TOKEN, enabled: true } })).status).toBe(200);
    return { key, tenantId: res.body.data.tenant.id as string };
  };
  const status = async (key: string) => (await app.api('GET', '/api/integrations/hubspot', { key })).body.data;
  const drained = (key: string) => waitFor('the outbox to drain', async () => {
    const s = await status(key);
    return s.pending === 0 && s.exported > 0 && s;
  });
  const contacts = async (key: string, n: number) => {
    const res = await app.api('POST', '/api/contacts/bulk', {
      key,
      body: Array.from({ length: n }, (_, i) => ({ firstName: `Lead ${i}`, lastName: 'Bulk', phonePrimary: uniquePhone(), email: `lead${i}-${randomUUID().slice(0, 6)}@example.com` })),
    });
    expect(res.body.data.created).toBe(n);
    return res.body.data.results.map((r: { id: string }) => r.id) as string[];
  };
  const sendsOf = (type: string, ids: string[]) => ids.map((id) => mock.sends.get(`${type}:${id}`) ?? 0);

  beforeAll(async () => {
    mock = await startHubspotMock({ token: [TOKEN, SERVER_TOKEN] });
    app = await startTestApp(backend, hubspotEnv(mock));
  });
  afterEach(() => mock.reset());
  afterAll(async () => {
    await app?.close();
    await mock?.close();
  });

  it('is off until an admin enables it: nothing queued, nothing sent; the token is stored sealed and never returned', async () => {
    const { key, tenantId } = await org(false);
    expect(await status(key)).toMatchObject({ enabled: false, status: 'idle', exported: 0, pending: 0, failed: 0, hasToken: false, tokenSource: null });
    await contacts(key, 3);
    const { rows } = await app.testDb.db.query('SELECT 1 FROM hubspot_outbox WHERE tenant_id = $1', [tenantId]);
    expect(rows).toHaveLength(0);

    const agent = await app.api('POST', '/api/agents', { key, body: { agentCode: 'hs-agent', name: 'Agent' } });
    const agentKey = agent.body.data.apiKey;
    expect((await app.api('PUT', '/api/integrations/hubspot', { key: agentKey, body: { accessToken: TOKEN, enabled: true } })).status).toBe(403);
    expect((await app.api('GET', '/api/integrations/hubspot', { key: agentKey })).status).toBe(403);
    for (const body of [{ accessToken: TOKEN }, { enabled: 'yes' }, { enabled: true, accessToken: 'has spaces in it' }, { enabled: true, token: TOKEN }]) {
      expect((await app.api('PUT', '/api/integrations/hubspot', { key, body })).status, JSON.stringify(body)).toBe(400);
    }

    const put = await app.api('PUT', '/api/integrations/hubspot', { key, body: { accessToken: TOKEN, enabled: true } });
    expect(put.status).toBe(200);
    expect(put.text).not.toContain(TOKEN);
    expect(put.body.data).toMatchObject({ enabled: true, hasToken: true, tokenSource: 'tenant' });
    expect((await app.api('GET', '/api/integrations/hubspot', { key })).text).not.toContain(TOKEN);
    const stored = await app.testDb.db.query<{ token_sealed: string }>('SELECT token_sealed FROM hubspot_integrations WHERE tenant_id = $1', [tenantId]);
    expect(stored.rows[0].token_sealed).not.toContain(TOKEN);
    // Enabling exported what was there before.
    const done = await drained(key);
    expect(done.exported).toBe(3);
  });

  it('exports contacts, projects as deals, links as associations, calls as notes and terminal states as properties, each once, in batches of at most 100', async () => {
    const { key, tenantId } = await org();
    const ids = await contacts(key, 150);
    const projectId = `hs-p-${randomUUID().slice(0, 8)}`;
    const project = (await app.api('POST', '/api/projects', { key, body: { projectId, name: 'Solar roof', properties: { city: 'Austin' } } })).body.data;
    await app.api('POST', `/api/projects/${projectId}/contacts`, { key, body: { contactId: ids[0], role: 'owner' } });
    const callRes = await app.api('POST', '/api/call-sessions', { key, body: { projectId, contactId: ids[0], outcome: 'connected', startedAt: new Date().toISOString(), durationSeconds: 90, notes: 'Interested' } });
    const call = callRes.body.data;
    await app.api('POST', '/api/terminal-sessions', { key, body: { scope: 'contact', contactId: ids[1], reason: 'moved away' } });
    await app.api('POST', '/api/terminal-sessions', { key, body: { scope: 'project', projectId, reason: 'sold' } });
    await app.api('POST', '/api/terminal-sessions', { key, body: { scope: 'global', reason: 'holiday', expiresAt: new Date(Date.now() - 1000).toISOString() } });

    const s = await drained(key);
    expect(s).toMatchObject({ enabled: true, status: 'idle', pending: 0, failed: 0, lastError: null });
    // Every object sent counts (the project may go twice: created, then moved by the call's cooldown).
    expect(s.exported).toBeGreaterThanOrEqual(155);
    expect(s.exported).toBeLessThanOrEqual(156);
    expect(s.lastSuccessAt).toEqual(expect.any(String));

    expect(sendsOf('contacts', ids.slice(2))).toEqual(ids.slice(2).map(() => 1));
    const hsContact = mock.objects.get('contacts')!.get(ids[0])!;
    expect(hsContact.properties).toMatchObject({ firstname: 'Lead 0', lastname: 'Bulk', fieldsync_id: ids[0] });
    const deal = mock.objects.get('deals')!.get(project.id)!;
    expect(deal.properties).toMatchObject({ dealname: 'Solar roof', fieldsync_project_id: projectId, fieldsync_terminal_reason: 'sold' });
    expect(JSON.parse(deal.properties.fieldsync_properties)).toEqual({ city: 'Austin' });
    expect(mock.objects.get('contacts')!.get(ids[1])!.properties.fieldsync_terminal_reason).toBe('moved away');
    expect(mock.associations.has(`deals:${deal.id}->contacts:${hsContact.id}:deal_to_contact`)).toBe(true);
    const note = mock.objects.get('notes')!.get(call.id)!;
    expect(note.properties.hs_note_body).toContain('Interested');
    expect(mock.associations.has(`notes:${note.id}->deals:${deal.id}:note_to_deal`)).toBe(true);
    expect(mock.associations.has(`notes:${note.id}->contacts:${hsContact.id}:note_to_contact`)).toBe(true);
    // Batches of at most 100 on the batch endpoints only.
    expect(Math.max(...mock.requests.map((r) => r.inputs))).toBeLessThanOrEqual(100);
    expect(mock.requests.every((r) => r.path.includes('/batch/'))).toBe(true);
    // HubSpot ids kept per object.
    const kept = await app.testDb.db.query<{ kind: string; n: number }>(
      'SELECT kind, count(*)::int AS n FROM hubspot_objects WHERE tenant_id = $1 GROUP BY kind ORDER BY kind',
      [tenantId],
    );
    expect(Object.fromEntries(kept.rows.map((r) => [r.kind, r.n]))).toEqual({ association: 1, contact: 150, deal: 1, note: 1, terminal: 2 });

    // A later change is sent once more (the same HubSpot object); the others are not sent again.
    await app.api('PATCH', `/api/contacts/${ids[5]}`, { key, body: { company: 'Acme' } });
    await waitFor('the update', async () => mock.objects.get('contacts')!.get(ids[5])!.properties.company === 'Acme');
    await sleep(300);
    expect(mock.sends.get(`contacts:${ids[5]}`)).toBe(2);
    expect(sendsOf('contacts', ids.slice(6, 20))).toEqual(ids.slice(6, 20).map(() => 1));
    expect(mock.objects.get('contacts')!.get(ids[5])!.id).toBe(mock.objects.get('contacts')!.get(ids[5])!.id);
  });

  it('backs off on 429, honouring Retry-After, without using up tries', async () => {
    const { key } = await org();
    mock.script({ status: 429, retryAfter: '1' }, { status: 429, retryAfter: '1' }, { status: 429, retryAfter: '1' });
    const started = Date.now();
    const [id] = await contacts(key, 1);
    await waitFor('backing off', async () => (await status(key)).status === 'backing_off');
    const s = await drained(key);
    expect(s).toMatchObject({ failed: 0, pending: 0 });
    expect(s.retries).toBeGreaterThanOrEqual(3);
    const limited = mock.requests.filter((r) => r.status === 429 && r.at >= started);
    const ok = mock.requests.find((r) => r.status === 200 && r.ids.includes(id))!;
    expect(limited).toHaveLength(3); // three tries within a limit of 3: a 429 is not a try
    for (let i = 1; i < limited.length; i++) expect(limited[i].at - limited[i - 1].at).toBeGreaterThanOrEqual(900);
    expect(ok.at - limited[2].at).toBeGreaterThanOrEqual(900);
  });

  it('retries 5xx with backoff and a Retry-After when sent, then exports', async () => {
    const { key } = await org();
    mock.script({ status: 503, retryAfter: '1' }, { status: 502 });
    const [id] = await contacts(key, 1);
    const s = await drained(key);
    expect(s.retries).toBeGreaterThanOrEqual(2);
    expect(s.lastError).toContain('502');
    expect(mock.sends.get(`contacts:${id}`)).toBe(1);
    const tries = mock.requests.filter((r) => r.status >= 500);
    expect(tries[1].at - tries[0].at).toBeGreaterThanOrEqual(900);
  });

  it('times out a slow HubSpot and tries again without creating anything twice', async () => {
    const { key } = await org();
    mock.script({ status: 200, delayMs: 1200 });
    const [id] = await contacts(key, 1);
    const s = await drained(key);
    expect(s.lastError).toContain('did not answer');
    expect(mock.objects.get('contacts')!.get(id)).toBeDefined();
    // The slow send reached HubSpot too: an upsert on fieldsync_id, so one object.
    expect([...mock.objects.get('contacts')!.values()].filter((o) => o.properties.fieldsync_id === id)).toHaveLength(1);
  });

  it('makes dead letters after HUBSPOT_MAX_ATTEMPTS, shows them, and retries them on request', async () => {
    const { key } = await org();
    mock.setDown(500);
    const [id] = await contacts(key, 1);
    const s = await waitFor('a dead letter', async () => {
      const now = await status(key);
      return now.failed === 1 && now;
    });
    expect(s).toMatchObject({ status: 'error', pending: 0, failed: 1 });
    expect(s.lastError).toContain('500');
    const dead = await app.api('GET', '/api/integrations/hubspot/dead-letters', { key });
    expect(dead.body.data).toEqual([expect.objectContaining({ kind: 'contact', recordId: id, attempts: 3 })]);
    mock.setDown(undefined);
    expect((await app.api('POST', '/api/integrations/hubspot/retry', { key })).status).toBe(400);
    expect((await app.api('POST', '/api/integrations/hubspot/retry', { key, body: { ids: [dead.body.data[0].id + 1000] } })).body.data).toEqual({ requeued: 0 });
    const retried = await app.api('POST', '/api/integrations/hubspot/retry', { key, body: { ids: [dead.body.data[0].id] } });
    expect(retried.body.data).toEqual({ requeued: 1 });
    await drained(key);
    expect((await status(key)).failed).toBe(0);
    expect(mock.objects.get('contacts')!.get(id)).toBeDefined();
  });

  it('takes turns between tenants: one tenant’s backlog does not hold another’s export back', async () => {
    const big = await org();
    const small = await org();
    mock.setDelay(200);
    await contacts(big.key, 2000); // 20 batches: at least 7 rounds of the worker's three lanes
    await waitFor('the big export to start', async () => (await status(big.key)).exported > 0);
    const mine = await contacts(small.key, 3);
    await waitFor('the small export', async () => mine.every((id) => mock.objects.get('contacts')?.has(id)));
    // The big tenant is still at it: the small one went between its batches.
    expect((await status(big.key)).pending).toBeGreaterThan(0);
    mock.setDelay(0);
    await drained(big.key);
  });

  it('answers 401 from HubSpot for a wrong token with retries, and another tenant’s export never uses it', async () => {
    const { key } = await org(false);
    await app.api('PUT', '/api/integrations/hubspot', { key, body: { accessToken: 'pat-wrong-token-000000', enabled: true } });
    await contacts(key, 1);
    const s = await waitFor('the refusal', async () => {
      const now = await status(key);
      return now.lastError?.includes('401') && now;
    });
    expect(s.exported).toBe(0);
  });

  it('keeps its outbox across a restart: entries queued while HubSpot was down are exported by the next process', async () => {
    const { key, tenantId } = await org();
    mock.setDown(503);
    const ids = await contacts(key, 5);
    await waitFor('a failed try', async () => (await status(key)).retries > 0);
    // Stop this process's export and open a second instance on the same database.
    await app.built.services.hubspotExport.stop();
    mock.setDown(undefined);
    const second = await startTestApp(backend, hubspotEnv(mock, { HUBSPOT_MAX_ATTEMPTS: '10' }), { sharedDb: app.testDb });
    try {
      // Sent once each, and recorded: the outbox empties.
      await waitFor('the second process to export', async () => {
        const { rows } = await app.testDb.db.query('SELECT 1 FROM hubspot_outbox WHERE tenant_id = $1', [tenantId]);
        return rows.length === 0;
      });
      expect(sendsOf('contacts', ids)).toEqual(ids.map(() => 1));
    } finally {
      await second.close();
      // This suite's app exports again for the tests after this one.
      await app.built.services.hubspotExport.run();
    }
  });

  it('two workers never send the same entry; a worker that dies mid-batch leaves it to another after its lease, and nothing is created twice', async () => {
    const { key, tenantId } = await org();
    await app.built.services.hubspotExport.stop(); // only the workers of this test
    try {
      const config = loadConfig(hubspotEnv(mock)).hubspot;
      const make = (afterSend?: () => Promise<void>) =>
        createHubspotExporter({ db: app.testDb.db, config, tokenKey: app.built.services.hubspotKey, logger: pino({ level: 'silent' }), afterSend });
      const ids = await contacts(key, 450);
      const [a, b] = [make(), make()];
      await Promise.all([a.drain(20_000), b.drain(20_000)]);
      expect(sendsOf('contacts', ids)).toEqual(ids.map(() => 1));

      // A worker dies after HubSpot answered, before recording it (it never comes back).
      const more = await contacts(key, 120);
      let dying!: () => void;
      const dead = make(() => new Promise<void>((resolve) => (dying = resolve)));
      void dead.drain(20_000);
      await waitFor('the dying worker to send', async () => dying !== undefined && mock.sends.size > 0);
      const survivor = make();
      await sleep(1600); // its lease runs out
      await survivor.drain(20_000);
      dying();
      dead.stop();
      await sleep(100);
      const { rows } = await app.testDb.db.query('SELECT 1 FROM hubspot_outbox WHERE tenant_id = $1', [tenantId]);
      expect(rows).toHaveLength(0);
      // The batch the dead worker sent went again (upserts): the same objects, none twice in HubSpot.
      const store = mock.objects.get('contacts')!;
      for (const id of more) expect(store.get(id), id).toBeDefined();
      const hubspotIds = new Set(more.map((id) => store.get(id)!.id));
      expect(hubspotIds.size).toBe(more.length);
      // Only what the dead worker held went twice (it keeps two batches in flight).
      expect(sendsOf('contacts', more).filter((n) => n > 1).length).toBeGreaterThan(0);
      expect(sendsOf('contacts', more).every((n) => n <= 2)).toBe(true);
    } finally {
      await app.built.services.hubspotExport.run();
    }
  });
});

describe.each(backends)('HubSpot export for every tenant by HUBSPOT_ACCESS_TOKEN on %s', (backend) => {
  it('exports what every tenant holds, unless a tenant turned it off', async () => {
    const mock = await startHubspotMock({ token: SERVER_TOKEN });
    const app = await startTestApp(backend, hubspotEnv(mock, { HUBSPOT_ACCESS_TOKEN: SERVER_TOKEN }));
    try {
      const res = await app.api('POST', '/api/contacts', { body: { firstName: 'Server', phonePrimary: uniquePhone() } });
      const off = await app.api('POST', '/api/tenants', { body: { name: 'Off', slug: `off-${randomUUID().slice(0, 8)}` } });
      const offKey = off.body.data.apiKey;
      expect((await app.api('PUT', '/api/integrations/hubspot', { key: offKey, body: { enabled: false } })).status).toBe(200);
      const theirs = await app.api('POST', '/api/contacts', { key: offKey, body: { firstName: 'Private', phonePrimary: uniquePhone() } });
      await waitFor('the export', async () => mock.objects.get('contacts')?.has(res.body.data.id));
      const s = (await app.api('GET', '/api/integrations/hubspot')).body.data;
      expect(s).toMatchObject({ enabled: true, tokenSource: 'server', hasToken: false });
      await sleep(300);
      expect(mock.objects.get('contacts')!.has(theirs.body.data.id)).toBe(false);
      expect((await app.api('GET', '/api/integrations/hubspot', { key: offKey })).body.data).toMatchObject({ enabled: false, pending: 0 });
    } finally {
      await app.close();
      await mock.close();
    }
  });
});
