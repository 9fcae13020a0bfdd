import { randomBytes, randomInt } from 'node:crypto';
import argon2 from 'argon2';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, type ApiResponse, type TestApp } from './helpers/test-app.js';

/**
 * Issue 9 item 4, SPEC §2 "Login throttling": failures counted per account and per client
 * address, 429 with a growing Retry-After after 5 in 15 minutes whatever else the request
 * carries, one password check per attempt, unknown logins as slow as wrong passwords, and no
 * answer that tells a password was right (docs/security.md "Logins").
 */

// Every login is an argon2 verification: tens of milliseconds on an idle machine, over a second
// on a loaded one. These suites make dozens.
vi.setConfig({ testTimeout: 180_000, hookTimeout: 120_000 });

const MINUTE = 60_000;
const PASSWORD = 'the-right-password-1';

/** Headers that must not buy a fresh budget: a made-up key and token, and a forged client address. */
const junkHeaders = () => ({
  'x-api-key': `fsk_${randomBytes(20).toString('hex')}`,
  authorization: `Bearer ${randomBytes(16).toString('hex')}`,
  'x-forwarded-for': `203.0.113.${Math.floor(Math.random() * 250) + 1}`,
  'x-device-id': `device-${randomBytes(4).toString('hex')}`,
});

function expectThrottled(res: ApiResponse) {
  expect(res.status, res.text).toBe(429);
  expect(res.body).toMatchObject({ success: false, error: 'RATE_LIMITED', message: expect.any(String) });
  expect(res.body.data).toBeUndefined();
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThan(0);
  return retryAfter;
}

function expectRefused(res: ApiResponse) {
  expect(res.status, res.text).toBe(401);
  expect(res.body).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
}

/** Runs `fn` with Date moved `ms` ahead (timers stay real). */
async function later<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const now = Date.now();
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(now + ms);
  try {
    return await fn();
  } finally {
    vi.useRealTimers();
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

describe.each(backends)('login throttling on %s', (backend) => {
  describe('by the socket address (TRUST_PROXY off, the default)', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp(backend);
    });
    afterAll(async () => {
      await app?.close();
    });
    const login = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
      app.api('POST', '/api/auth/login', { key: null, body, headers });

    it('locks an address after 5 failures whatever logins and headers follow, and each lock lasts longer than the one before', async () => {
      await createAgent(app, 'ADDR1', { password: PASSWORD });
      // Five failures, each with another login and fresh credential and proxy headers.
      for (let i = 0; i < 5; i++) expectRefused(await login({ login: `nobody-${i}`, password: 'wrong-password' }, junkHeaders()));

      const first = expectThrottled(await login({ login: 'ADDR1', password: PASSWORD }, junkHeaders()));
      expectThrottled(await login({ login: 'ADDR1', password: PASSWORD }));
      expect(first).toBeGreaterThan(10 * 60);
      expect(first).toBeLessThanOrEqual(15 * 60);

      // The lock ends; five more failures lock the address again, for longer.
      const second = await later(15 * MINUTE + 1000, async () => {
        const res = await login({ login: 'ADDR1', password: PASSWORD });
        expect(res.status, res.text).toBe(200);
        for (let i = 0; i < 5; i++) expectRefused(await login({ login: `nobody-again-${i}`, password: 'wrong-password' }, junkHeaders()));
        return expectThrottled(await login({ login: 'ADDR1', password: PASSWORD }));
      });
      expect(second).toBeGreaterThan(first);
      expect(second).toBeGreaterThan(25 * 60);
    });
  });

  describe('behind a trusted proxy (TRUST_PROXY=loopback)', () => {
    let app: TestApp;
    let seq = 0;
    beforeAll(async () => {
      app = await startTestApp(backend, { TRUST_PROXY: 'loopback' });
    });
    afterAll(async () => {
      vi.restoreAllMocks();
      await app?.close();
    });
    afterEach(() => vi.restoreAllMocks());
    /** A client address of its own for each call: only the account's count can lock. */
    const fresh = () => `198.51.${Math.floor(++seq / 250)}.${(seq % 250) + 1}`;
    const login = (body: Record<string, unknown>, address = fresh()) =>
      app.api('POST', '/api/auth/login', { key: null, body, headers: { 'x-forwarded-for': address } });

    it('locks an account after 5 failures from 5 addresses: the 6th attempt gets 429 even with the right password, its neighbours do not', async () => {
      await createAgent(app, 'ACC1', { password: PASSWORD, email: 'acc1@example.com' });
      await createAgent(app, 'ACC2', { password: PASSWORD });
      // The agent code, the email and login@tenant name one account: one budget.
      for (const name of ['ACC1', 'acc1@example.com', 'ACC1@default', 'ACC1', 'ACC1@EXAMPLE.COM']) {
        expectRefused(await login({ login: name, password: 'wrong-password' }));
      }
      expectThrottled(await login({ login: 'ACC1', password: PASSWORD }));
      expectThrottled(await login({ login: 'ACC1', tenant: 'default', password: PASSWORD }));
      expect((await login({ login: 'ACC2', password: PASSWORD })).status).toBe(200);
      // The lock ends with time, and the right password opens the account again.
      const res = await later(15 * MINUTE + 1000, () => login({ login: 'ACC1', password: PASSWORD }));
      expect(res.status).toBe(200);
    });

    it('locks an unknown login exactly as a known one, so the lock tells nothing', async () => {
      for (let i = 0; i < 5; i++) expectRefused(await login({ login: 'ghost-of-nobody', password: 'wrong-password' }));
      expectThrottled(await login({ login: 'ghost-of-nobody', password: 'wrong-password' }));
    });

    it('reads the client address from X-Forwarded-For: one address locked, the next one free', async () => {
      const locked = fresh();
      for (let i = 0; i < 5; i++) expectRefused(await login({ login: `stranger-${i}`, password: 'wrong-password' }, locked));
      expectThrottled(await login({ login: 'stranger-x', password: 'wrong-password' }, locked));
      expectRefused(await login({ login: 'stranger-y', password: 'wrong-password' }, fresh()));
    });

    it('counts an IPv6 client once across its /64', async () => {
      for (let i = 1; i <= 5; i++) expectRefused(await login({ login: `v6-${i}`, password: 'wrong-password' }, `2001:db8:aa:bb::${i}`));
      expectThrottled(await login({ login: 'v6-x', password: 'wrong-password' }, '2001:db8:aa:bb:ffff:1:2:3'));
      expectRefused(await login({ login: 'v6-y', password: 'wrong-password' }, '2001:db8:aa:cc::1'));
    });

    it("forgets an account's failures when it signs in, but not an address's", async () => {
      await createAgent(app, 'SUC1', { password: PASSWORD });
      for (let i = 0; i < 4; i++) expectRefused(await login({ login: 'SUC1', password: 'wrong-password' }));
      expect((await login({ login: 'SUC1', password: PASSWORD })).status).toBe(200);
      // Four more: eight in all, but the success in between started the count again.
      for (let i = 0; i < 4; i++) expectRefused(await login({ login: 'SUC1', password: 'wrong-password' }));
      expect((await login({ login: 'SUC1', password: PASSWORD })).status).toBe(200);

      // An address: four failures, a success of a real account, one more failure: locked.
      const address = fresh();
      for (let i = 0; i < 4; i++) expectRefused(await login({ login: `probe-${i}`, password: 'wrong-password' }, address));
      expect((await login({ login: 'SUC1', password: PASSWORD }, address)).status).toBe(200);
      expectRefused(await login({ login: 'probe-5', password: 'wrong-password' }, address));
      expectThrottled(await login({ login: 'SUC1', password: PASSWORD }, address));
    });

    it('lets at most 5 of 20 simultaneous wrong attempts on one account reach a password check', async () => {
      await createAgent(app, 'PAR1', { password: PASSWORD });
      const verify = vi.spyOn(argon2, 'verify');
      const results = await Promise.all(Array.from({ length: 20 }, () => login({ login: 'PAR1', password: 'wrong-password' })));
      const statuses = results.map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 401)).toHaveLength(5);
      expect(statuses.filter((s) => s === 429)).toHaveLength(15);
      expect(verify).toHaveBeenCalledTimes(5);
    });
  });

  describe('answers and timing (throttling off)', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp(backend, { LOGIN_MAX_FAILURES: '0' });
    });
    afterAll(async () => {
      await app?.close();
    });
    afterEach(() => vi.restoreAllMocks());
    const login = (body: Record<string, unknown>) => app.api('POST', '/api/auth/login', { key: null, body });

    it('checks exactly one password per attempt, also for a login used in six tenants', async () => {
      for (let i = 0; i < 6; i++) {
        const tenant = await app.api('POST', '/api/tenants', { body: { name: `Many ${i}`, slug: `many-${backend}-${i}` } });
        expect(tenant.status).toBe(201);
        await createAgent(app, 'MANY', { password: PASSWORD }, tenant.body.data.apiKey);
      }
      await createAgent(app, 'NOPASS');
      const verify = vi.spyOn(argon2, 'verify');
      const attempts: [Record<string, unknown>, number][] = [
        [{ login: 'MANY', password: PASSWORD }, 401], // six candidates, no tenant named: no account
        [{ login: 'MANY', password: 'wrong-password' }, 401],
        [{ login: `MANY@many-${backend}-3`, password: PASSWORD }, 200],
        [{ login: 'MANY', tenant: `many-${backend}-5`, password: 'wrong-password' }, 401],
        [{ login: 'nobody-at-all', password: PASSWORD }, 401],
        [{ login: 'NOPASS', password: PASSWORD }, 401],
      ];
      for (const [body, status] of attempts) {
        verify.mockClear();
        const res = await login(body);
        expect(res.status, JSON.stringify(body)).toBe(status);
        expect(verify, JSON.stringify(body)).toHaveBeenCalledTimes(1);
      }
    });

    it('answers the right password of an inactive or ambiguous account exactly as a wrong one', async () => {
      await createAgent(app, 'GONE', { password: PASSWORD });
      expect((await app.api('PATCH', '/api/agents/GONE', { body: { isActive: false } })).status).toBe(200);
      const wrong = await login({ login: 'GONE', password: 'wrong-password' });
      expectRefused(wrong);
      for (const body of [{ login: 'GONE', password: PASSWORD }, { login: 'MANY', password: PASSWORD }, { login: 'nobody-at-all', password: PASSWORD }]) {
        const res = await login(body);
        expect({ status: res.status, body: res.body }, JSON.stringify(body)).toEqual({ status: wrong.status, body: wrong.body });
      }
    });

    it('takes as long for an unknown login as for a wrong password', async () => {
      await createAgent(app, 'TIME1', { password: PASSWORD });
      const timed = async (body: Record<string, unknown>) => {
        const start = performance.now();
        expectRefused(await login(body));
        return performance.now() - start;
      };
      await timed({ login: 'TIME1', password: 'warm-up-password' });
      const wrong: number[] = [];
      const unknown: number[] = [];
      for (let i = 0; i < 7; i++) {
        wrong.push(await timed({ login: 'TIME1', password: `wrong-password-${i}` }));
        unknown.push(await timed({ login: `unknown-login-${i}`, password: `wrong-password-${i}` }));
      }
      // Loose on purpose (a shared machine): without the dummy check an unknown login costs a
      // query, a few percent of an argon2 verification.
      expect(median(unknown)).toBeGreaterThanOrEqual(0.5 * median(wrong));
    });
  });

  describe('the request rate limit on public routes', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp(backend, { RATE_LIMIT_PER_MINUTE: '3', LOGIN_MAX_FAILURES: '0', TRUST_PROXY: '1' });
    });
    afterAll(async () => {
      await app?.close();
    });

    it('keys login requests by client address only: a made-up X-API-Key per request buys no fresh budget', async () => {
      const from = (address: string) => ({ ...junkHeaders(), 'x-forwarded-for': address });
      for (let i = 0; i < 3; i++) {
        expectRefused(await app.api('POST', '/api/auth/login', { key: null, body: { login: 'x', password: 'wrong-password' }, headers: from('192.0.2.10') }));
      }
      const limited = await app.api('POST', '/api/auth/login', { key: null, body: { login: 'x', password: 'wrong-password' }, headers: from('192.0.2.10') });
      expect(limited.status).toBe(429);
      expect(limited.headers.get('retry-after')).toBeTruthy();
      // TRUST_PROXY=1: the hop in front of the server names the client; another client has its own budget.
      expectRefused(await app.api('POST', '/api/auth/login', { key: null, body: { login: 'x', password: 'wrong-password' }, headers: from('192.0.2.11') }));
    });
  });
});

// Two instances of one deployment share their counts through Redis.
const shared = process.env.TEST_DATABASE_URL && process.env.TEST_REDIS_URL ? [process.env.TEST_REDIS_URL] : [];

describe.each(shared)('login throttling across two instances on PostgreSQL and Redis (%s)', (redisUrl) => {
  let one: TestApp;
  let two: TestApp;
  // Redis outlives a run: addresses and logins unique to this run, or an earlier run's lock answers.
  const run = randomInt(0, 2 ** 16);
  let seq = 0;
  const fresh = () => `198.18.${run % 256}.${(Math.floor(run / 256) + ++seq) % 256}`;
  beforeAll(async () => {
    const env = { REDIS_URL: redisUrl, TRUST_PROXY: 'loopback' };
    one = await startTestApp('postgres', env);
    two = await startTestApp('postgres', env, { sharedDb: one.testDb });
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await two?.close();
    await one?.close();
  });
  const login = (app: TestApp, body: Record<string, unknown>, address = fresh()) =>
    app.api('POST', '/api/auth/login', { key: null, body, headers: { 'x-forwarded-for': address } });

  it('locks an account on both instances after 3 failures on one and 2 on the other', async () => {
    await createAgent(one, 'RED1', { password: PASSWORD });
    for (let i = 0; i < 3; i++) expectRefused(await login(one, { login: 'RED1', password: 'wrong-password' }));
    for (let i = 0; i < 2; i++) expectRefused(await login(two, { login: 'RED1', password: 'wrong-password' }));
    expectThrottled(await login(one, { login: 'RED1', password: PASSWORD }));
    expectThrottled(await login(two, { login: 'RED1', password: PASSWORD }));
  });

  it('locks an address on both instances', async () => {
    const address = fresh();
    for (let i = 0; i < 5; i++) expectRefused(await login(i % 2 ? one : two, { login: `red-nobody-${run}-${i}`, password: 'wrong-password' }, address));
    expectThrottled(await login(one, { login: `red-nobody-${run}-x`, password: 'wrong-password' }, address));
    expectThrottled(await login(two, { login: `red-nobody-${run}-y`, password: 'wrong-password' }, address));
  });

  it('lets at most 5 of 20 simultaneous wrong attempts spread over both instances reach a password check', async () => {
    await createAgent(one, 'RED2', { password: PASSWORD });
    const verify = vi.spyOn(argon2, 'verify');
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => login(i % 2 ? one : two, { login: 'RED2', password: 'wrong-password' })));
    expect(results.filter((r) => r.status === 401)).toHaveLength(5);
    expect(results.filter((r) => r.status === 429)).toHaveLength(15);
    // Both instances run in this process: one spy sees every check.
    expect(verify).toHaveBeenCalledTimes(5);
  });
});
