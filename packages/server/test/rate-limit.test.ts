import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';

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
