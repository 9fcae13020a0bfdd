import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';
import { createTenant } from './helpers/files.js';

/*
 * The request budget (SPEC §11) counts every request before anything else looks at it: one the
 * auth hook refuses (a guessed key's 401, a role's 403) spends the budget like any other, so
 * guessing keys or probing admin routes is limited too.
 */
describe('the rate limit counts requests before authentication', () => {
  let app: TestApp;
  const LIMIT = 5;
  beforeAll(async () => {
    app = await startTestApp('pglite', { RATE_LIMIT_PER_MINUTE: String(LIMIT) });
  });
  afterAll(async () => {
    await app?.close();
  });

  const statuses = async (n: number, request: () => Promise<{ status: number }>) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await request()).status);
    return out;
  };

  it('limits a wrong API key: 401 until the budget is spent, then 429 with Retry-After', async () => {
    const wrong = 'fsk_not_a_real_key_0123456789abcdefghijkl';
    const seen = await statuses(LIMIT + 2, () => app.api('GET', '/api/contacts', { key: wrong }));
    expect(seen).toEqual([...Array(LIMIT).fill(401), 429, 429]);
    const last = await app.api('GET', '/api/contacts', { key: wrong });
    expect(last.status).toBe(429);
    expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(last.body).toMatchObject({ success: false, error: 'RATE_LIMITED' });
  });

  it('counts the 403s of a role that may not use a route, then limits the same key everywhere', async () => {
    const agent = await createAgent(app, 'rl-agent');
    const forbidden = await statuses(LIMIT, () => app.api('GET', '/api/devices', { key: agent.apiKey }));
    expect(forbidden).toEqual(Array(LIMIT).fill(403));
    expect((await app.api('GET', '/api/contacts', { key: agent.apiKey })).status).toBe(429);
  });

  it('never limits /health', async () => {
    const seen = await statuses(LIMIT + 3, () => app.api('GET', '/health', { key: null }));
    expect(seen.every((s) => s === 200)).toBe(true);
  });
});

describe("a tenant's own, lower request budget (settings.rateLimitPerMinute)", () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('pglite', { RATE_LIMIT_PER_MINUTE: '50' });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('limits each credential of the tenant to its setting, leaves other tenants at the server\'s, and lifts it when reset', async () => {
    const agent = await createAgent(app, 'tl-agent');
    const other = await createTenant(app, 'tl-other');
    for (const bad of [0, -1, 1.5, '3', 2_000_000]) {
      expect((await app.api('PATCH', '/api/settings', { body: { rateLimitPerMinute: bad } })).status, String(bad)).toBe(400);
    }
    expect((await app.api('PATCH', '/api/settings', { key: agent.apiKey, body: { rateLimitPerMinute: 1000 } })).status).toBe(403);
    // From here every credential of the tenant, the admin's too, has 3 requests a minute.
    const set = await app.api('PATCH', '/api/settings', { body: { rateLimitPerMinute: 3 } });
    expect(set.status, set.text).toBe(200);
    expect(set.body.data.rateLimitPerMinute).toBe(3);
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) seen.push((await app.api('GET', '/api/contacts', { key: agent.apiKey })).status);
    expect(seen).toEqual([200, 200, 200, 429, 429]);
    const refused = await app.api('GET', '/api/contacts', { key: agent.apiKey });
    expect(refused.body).toMatchObject({ success: false, error: 'RATE_LIMITED' });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Another tenant keeps the server's budget.
    const elsewhere: number[] = [];
    for (let i = 0; i < 6; i++) elsewhere.push((await app.api('GET', '/api/contacts', { key: other.apiKey })).status);
    expect(elsewhere.every((s) => s === 200)).toBe(true);
    // Back to the server's limit (null): at once on this instance (others read it within 5 s).
    expect((await app.api('PATCH', '/api/settings', { body: { rateLimitPerMinute: null } })).body.data.rateLimitPerMinute).toBeNull();
    expect((await app.api('GET', '/api/contacts', { key: agent.apiKey })).status).toBe(200);
  }, 30_000);
});
