import { randomUUID } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, eventually, probe, quiet, refusedWith, type Probe } from './helpers/sockets.js';

/** The test app's JWT secret (helpers/test-app.ts): tokens of any lifetime can be made here. */
const JWT_SECRET = 'test-secret-0123456789-0123456789-0123456789';

/**
 * SPEC §7: a socket lives only as long as its credentials, counts against its caller's rate
 * budget, holds a bounded number of sockets per credential, gets few authentication attempts,
 * and obeys the same input rules as HTTP bodies.
 */
describe.each(backends)('socket hardening on %s', (backend) => {
  let app: TestApp;
  /** Another instance with a small rate limit (the admin's own calls count there too). */
  let limited: TestApp;
  beforeAll(async () => {
    app = await startTestApp(backend, { AUTH_CACHE_MS: '1000', MAX_SOCKETS_PER_CREDENTIAL: '3' });
    limited = await startTestApp(backend, { RATE_LIMIT_PER_MINUTE: '20' });
  });
  afterAll(async () => {
    await limited?.close();
    await app?.close();
  });

  let seq = 0;
  const agent = () => createAgent(app, `SH${backend}${++seq}`);
  const dev = () => `sh-${randomUUID()}`;
  const ended = (p: Probe) => Promise.all([p.waitFor('auth_error', () => true, { timeoutMs: 8000 }), p.waitFor('disconnect', () => true, { timeoutMs: 8000 })]);
  const write = (key: string) => app.api('POST', '/api/contacts', { key, body: { firstName: 'W', phonePrimary: uniquePhone() } });

  it('ends the socket of a revoked key at once and of a deactivated agent, and it receives nothing more', async () => {
    const a = await agent();
    const code = a.agent.agentCode;
    const extra = await app.api('POST', `/api/agents/${code}/keys`);
    const second = extra.body.data.apiKey as string;
    const writer = await agent();
    const revokedSocket = await authedProbe(app.url, { apiKey: second, deviceId: dev() });
    const keptSocket = await authedProbe(app.url, { apiKey: a.apiKey, deviceId: dev() });
    try {
      expect((await app.api('DELETE', `/api/agents/${code}/keys/${extra.body.data.key.id}`)).status).toBe(204);
      const [error] = await ended(revokedSocket);
      expect(error).toMatchObject({ error: 'UNAUTHORIZED' });
      // Reconnecting with the revoked key is refused; the agent's other key works again.
      expect((await refusedWith(app.url, { apiKey: second, deviceId: dev() })).data).toMatchObject({ error: 'UNAUTHORIZED' });
      const again = await authedProbe(app.url, { apiKey: a.apiKey, deviceId: dev() });
      const mark = revokedSocket.received.length;
      await write(writer.apiKey);
      await again.waitFor('changes');
      expect(revokedSocket.received.slice(mark).filter((r) => r.event === 'changes')).toEqual([]);
      closeAll(again);

      // Deactivation ends every socket of the agent.
      const deactivated = await app.api('PATCH', `/api/agents/${code}`, { body: { isActive: false } });
      expect(deactivated.status).toBe(200);
      await eventually(async () => !keptSocket.socket.connected, 8000);
    } finally {
      closeAll(revokedSocket, keptSocket);
    }
  });

  it('ends a socket whose access token expires, within the re-check period', async () => {
    const a = await agent();
    const sign = createSigner({ key: JWT_SECRET, algorithm: 'HS256', expiresIn: 1500 });
    const { rows } = await app.testDb.db.query<{ tenant_id: string; role: string }>('SELECT tenant_id, role FROM users WHERE id = $1', [a.agent.id]);
    const token = sign({ sub: a.agent.id, tid: rows[0].tenant_id, role: rows[0].role, code: a.agent.agentCode });
    const s = await authedProbe(app.url, { token, deviceId: dev() });
    try {
      expect(s.socket.connected).toBe(true);
      const [error] = await ended(s);
      expect(error).toMatchObject({ error: 'UNAUTHORIZED' });
    } finally {
      closeAll(s);
    }
  });

  it('ends a socket and its access token when its session logs out', async () => {
    const a = await createAgent(app, `SHO${backend}`, { password: 'correct horse battery' });
    const login = await app.api('POST', '/api/auth/login', { key: null, body: { login: a.agent.agentCode, password: 'correct horse battery' } });
    expect(login.status, login.text).toBe(200);
    const { accessToken, refreshToken } = login.body.data;
    const s = await authedProbe(app.url, { token: accessToken, deviceId: dev() });
    try {
      expect((await app.api('POST', '/api/auth/logout', { key: null, body: { refreshToken } })).status).toBe(204);
      const [error] = await ended(s);
      expect(error).toMatchObject({ error: 'UNAUTHORIZED' });
      expect((await app.api('GET', '/api/sync/delta?version=0&limit=1', { key: null, token: accessToken })).status).toBe(401);
    } finally {
      closeAll(s);
    }
  });

  it('is in its rooms when the client sees connect: a pull emitted at once is answered', async () => {
    const a = await agent();
    for (let i = 0; i < 5; i++) {
      const s = probe(app.url, { auth: { apiKey: a.apiKey, deviceId: dev() } });
      try {
        await s.waitFor('connect');
        const answer = await s.ack('sync:pull', { version: 0, limit: 1 });
        expect(answer.success, JSON.stringify(answer)).toBe(true);
      } finally {
        closeAll(s);
      }
      await quiet(50);
    }
  });

  it("counts socket events against the credential's budget, shared with HTTP requests", async () => {
    const a = await createAgent(limited, `SHL${backend}`);
    const s = await authedProbe(limited.url, { apiKey: a.apiKey, deviceId: dev() });
    try {
      const answers = [];
      for (let i = 0; i < 25; i++) answers.push(await s.ack('sync:pull', { version: 0, limit: 1 }));
      const refused = answers.filter((r) => !r.success);
      expect(answers.filter((r) => r.success)).toHaveLength(20);
      expect(refused).toHaveLength(5);
      expect(refused[0]).toMatchObject({ success: false, error: 'RATE_LIMITED', retryAfterMs: expect.any(Number) });
      expect(refused[0].retryAfterMs).toBeGreaterThan(0);
      expect(refused[0].retryAfterMs).toBeLessThanOrEqual(60_000);
      // The same budget: an HTTP request with the key is over it too.
      const http = await limited.api('GET', '/api/sync/delta?version=0&limit=1', { key: a.apiKey });
      expect(http.status).toBe(429);
    } finally {
      closeAll(s);
    }
  });

  it('lets one credential hold at most MAX_SOCKETS_PER_CREDENTIAL sockets', async () => {
    const a = await agent();
    const held = [];
    try {
      for (let i = 0; i < 3; i++) held.push(await authedProbe(app.url, { apiKey: a.apiKey, deviceId: dev() }));
      const refused = await refusedWith(app.url, { apiKey: a.apiKey, deviceId: dev() });
      expect(refused.data).toMatchObject({ error: 'RATE_LIMITED' });
      closeAll(held.pop());
      await quiet(200);
      held.push(await authedProbe(app.url, { apiKey: a.apiKey, deviceId: dev() }));
    } finally {
      closeAll(...held);
    }
  });

  it('disconnects a socket after three failed authenticate attempts', async () => {
    const s = probe(app.url);
    try {
      await s.waitFor('connect');
      for (let i = 0; i < 3; i++) {
        const answer = await s.ack('authenticate', { apiKey: `fsk_wrong_${randomUUID()}`, deviceId: dev() });
        expect(answer).toMatchObject({ success: false, error: 'UNAUTHORIZED' });
      }
      await s.waitFor('disconnect');
      expect(s.socket.connected).toBe(false);
    } finally {
      closeAll(s);
    }
  });

  it('refuses socket payloads HTTP would refuse, and a bad heartbeat never blocks device records', async () => {
    const a = await agent();
    const bad = dev();
    const good = dev();
    const sBad = await authedProbe(app.url, { apiKey: a.apiKey, deviceId: bad });
    const b = await agent();
    const sGood = await authedProbe(app.url, { apiKey: b.apiKey, deviceId: good });
    try {
      for (const payload of [{ networkType: 'wi\u0000fi' }, { networkType: '\ud800' }, JSON.parse('{"__proto__": {"x": 1}}')]) {
        const answer = await sBad.ack('heartbeat', payload);
        expect(answer).toMatchObject({ success: false });
      }
      expect((await sGood.ack('heartbeat', { networkType: 'cellular' })).success).toBe(true);
      await eventually(async () => (await app.api('GET', `/api/devices/${good}`)).body?.data?.networkType === 'cellular');
    } finally {
      closeAll(sBad, sGood);
    }
    // Past the edge too: a row the database refuses is dropped alone, the others are written.
    const devices = app.built.services.devices;
    const tenantId = (await app.testDb.db.query<{ tenant_id: string }>('SELECT tenant_id FROM users WHERE id = $1', [a.agent.id])).rows[0].tenant_id;
    const [poisoned, fine] = [dev(), dev()];
    devices.recordSeen({ tenantId, deviceId: poisoned, userId: a.agent.id }, { networkType: 'x\u0000y' });
    devices.recordSeen({ tenantId, deviceId: fine, userId: a.agent.id }, { networkType: 'wifi' });
    await devices.flush();
    expect((await app.api('GET', `/api/devices/${fine}`)).body.data).toMatchObject({ networkType: 'wifi' });
    expect((await app.api('GET', `/api/devices/${poisoned}`)).status).toBe(404);
  });
});

// Two instances on PostgreSQL and Redis: a revocation reaches the other instance's sockets and cache.
const twoInstances = process.env.TEST_DATABASE_URL && process.env.TEST_REDIS_URL ? [process.env.TEST_REDIS_URL] : [];
describe.each(twoInstances)('socket revocation across two instances (Redis %s)', (redisUrl) => {
  let one: TestApp;
  let two: TestApp;
  beforeAll(async () => {
    const env = { REDIS_URL: redisUrl, AUTH_CACHE_MS: '60000', MAX_SOCKETS_PER_CREDENTIAL: '3' };
    one = await startTestApp('postgres', env);
    two = await startTestApp('postgres', env, { sharedDb: one.testDb });
  });
  afterAll(async () => {
    await two?.close();
    await one?.close();
  });

  it("ends a revoked key's socket on the other instance, which then refuses it from its own cache too", async () => {
    const a = await createAgent(one, 'SHX1');
    const extra = await one.api('POST', '/api/agents/SHX1/keys');
    const key = extra.body.data.apiKey as string;
    // Instance two has the key in its cache (AUTH_CACHE_MS is a minute here).
    const s = await authedProbe(two.url, { apiKey: key, deviceId: `x-${randomUUID()}` });
    expect((await two.api('GET', '/api/sync/delta?version=0&limit=1', { key })).status).toBe(200);
    try {
      expect((await one.api('DELETE', `/api/agents/SHX1/keys/${extra.body.data.key.id}`)).status).toBe(204);
      await s.waitFor('disconnect', () => true, { timeoutMs: 8000 });
      expect((await refusedWith(two.url, { apiKey: key, deviceId: `x-${randomUUID()}` })).data).toMatchObject({ error: 'UNAUTHORIZED' });
      expect((await two.api('GET', '/api/sync/delta?version=0&limit=1', { key })).status).toBe(401);
      expect((await two.api('GET', '/api/sync/delta?version=0&limit=1', { key: a.apiKey })).status).toBe(200);
    } finally {
      closeAll(s);
    }
  });

  it('counts a credential\'s sockets on both instances against MAX_SOCKETS_PER_CREDENTIAL', async () => {
    const a = await createAgent(one, 'SHX2');
    const dev = () => `x-${randomUUID()}`;
    const held = [await authedProbe(one.url, { apiKey: a.apiKey, deviceId: dev() }), await authedProbe(two.url, { apiKey: a.apiKey, deviceId: dev() })];
    try {
      held.push(await authedProbe(two.url, { apiKey: a.apiKey, deviceId: dev() }));
      // Three held across the instances: a fourth is refused on either.
      expect((await refusedWith(one.url, { apiKey: a.apiKey, deviceId: dev() })).data).toMatchObject({ error: 'RATE_LIMITED' });
      expect((await refusedWith(two.url, { apiKey: a.apiKey, deviceId: dev() })).data).toMatchObject({ error: 'RATE_LIMITED' });
      closeAll(held.pop());
      await quiet(200);
      held.push(await authedProbe(one.url, { apiKey: a.apiKey, deviceId: dev() }));
    } finally {
      closeAll(...held);
    }
  });
});
