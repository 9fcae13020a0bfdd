import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { within } from '../src/lib/child-server.js';
import { backends, openTestDb } from './helpers/test-db.js';
import { killAll, spawnServer, startServer, type ServerProcess } from './helpers/process.js';
import { createAgent, startTestApp, type ApiResponse, type TestApp } from './helpers/test-app.js';

/**
 * Issue 9 items 5 and 9, SPEC §2 "Passwords": admins set and reset passwords, users change
 * their own, the bootstrap admin gets one from FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD, access
 * tokens live ACCESS_TOKEN_TTL_SECONDS; listed key prefixes reveal little and short bootstrap
 * keys are refused (docs/security.md).
 */

// Every login and password change is an argon2 computation: slow on a loaded machine.
vi.setConfig({ testTimeout: 180_000, hookTimeout: 120_000 });

const MIGRATIONS = fileURLToPath(new URL('../migrations/', import.meta.url));

function expectStatus(res: ApiResponse, status: number, error?: string) {
  expect(res.status, res.text).toBe(status);
  if (error) expect(res.body).toMatchObject({ success: false, error });
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

describe.each(backends)('passwords on %s', (backend) => {
  let app: TestApp;
  let seq = 0;
  beforeAll(async () => {
    // Throttling on, each request from an address of its own unless a test says otherwise.
    app = await startTestApp(backend, { TRUST_PROXY: 'loopback', AUTH_CACHE_MS: '0' });
  });
  afterAll(async () => {
    await app?.close();
  });
  const address = () => `198.18.${Math.floor(++seq / 250)}.${(seq % 250) + 1}`;
  const login = (body: Record<string, unknown>, from = address()) =>
    app.api('POST', '/api/auth/login', { key: null, body, headers: { 'x-forwarded-for': from } });
  const refresh = (refreshToken: string) => app.api('POST', '/api/auth/refresh', { key: null, body: { refreshToken } });
  const tokensOf = async (body: Record<string, unknown>) => {
    const res = await login(body);
    expectStatus(res, 200);
    return res.body.data as { accessToken: string; refreshToken: string };
  };
  const changeOwn = (auth: { token?: string; key?: string }, body: Record<string, unknown>, from = address()) =>
    app.api('POST', '/api/auth/password', { key: auth.key ?? null, token: auth.token, body, headers: { 'x-forwarded-for': from } });
  const storedHash = async (agentCode: string) =>
    (await app.testDb.db.query<{ password_hash: string | null }>('SELECT password_hash FROM users WHERE agent_code = $1', [agentCode])).rows[0].password_hash;

  it('lets an admin set a password with PATCH /api/agents/:agentCode; one under 10 characters is a 400 that changes nothing', async () => {
    await createAgent(app, 'PW1');
    expectStatus(await login({ login: 'PW1', password: 'first-password-1' }), 401, 'UNAUTHORIZED');
    const short = await app.api('PATCH', '/api/agents/PW1', { body: { password: 'nine-char' } });
    expectStatus(short, 400, 'VALIDATION_FAILED');
    expect(short.body.details.map((d: { field: string }) => d.field)).toEqual(['password']);
    expect(await storedHash('PW1')).toBeNull();

    const set = await app.api('PATCH', '/api/agents/PW1', { body: { password: 'first-password-1' } });
    expectStatus(set, 200);
    expect(set.body.data).toMatchObject({ agentCode: 'PW1', isActive: true });
    expect(set.text).not.toMatch(/first-password-1|argon2|passwordHash/);
    expect(await storedHash('PW1')).toMatch(/^\$argon2id\$/);
    await tokensOf({ login: 'PW1', password: 'first-password-1' });
    // Creating an agent takes the same rule.
    expectStatus(await app.api('POST', '/api/agents', { body: { agentCode: 'PW1b', name: 'Short', password: 'short-pw' } }), 400, 'VALIDATION_FAILED');
  });

  it('resets a password: the old one stops working, every session of the agent ends, and a locked account may sign in at once', async () => {
    await createAgent(app, 'PW2', { password: 'first-password-2' });
    const sessions = [await tokensOf({ login: 'PW2', password: 'first-password-2' }), await tokensOf({ login: 'PW2', password: 'first-password-2' })];
    // Five failures lock the account (from five addresses).
    for (let i = 0; i < 5; i++) expectStatus(await login({ login: 'PW2', password: 'forgotten-password' }), 401);
    expectStatus(await login({ login: 'PW2', password: 'first-password-2' }), 429, 'RATE_LIMITED');

    expectStatus(await app.api('PATCH', '/api/agents/PW2', { body: { password: 'second-password-2' } }), 200);
    for (const session of sessions) expectStatus(await refresh(session.refreshToken), 401, 'UNAUTHORIZED');
    expectStatus(await login({ login: 'PW2', password: 'first-password-2' }), 401);
    await tokensOf({ login: 'PW2', password: 'second-password-2' });
  });

  it('lets only the admins of the agent\'s tenant set its password', async () => {
    const agent = await createAgent(app, 'PW3', { password: 'first-password-3' });
    expectStatus(await app.api('PATCH', '/api/agents/PW3', { key: agent.apiKey, body: { password: 'my-own-choice-3' } }), 403, 'FORBIDDEN');
    const manager = await createAgent(app, 'PW3M', { role: 'manager' });
    expectStatus(await app.api('PATCH', '/api/agents/PW3', { key: manager.apiKey, body: { password: 'managers-choice' } }), 403, 'FORBIDDEN');
    const other = await app.api('POST', '/api/tenants', { body: { name: 'Other', slug: `pw-other-${backend}` } });
    expectStatus(other, 201);
    expectStatus(await app.api('PATCH', '/api/agents/PW3', { key: other.body.data.apiKey, body: { password: 'other-tenants-choice' } }), 404, 'NOT_FOUND');
    await tokensOf({ login: 'PW3', password: 'first-password-3' });
    expectStatus(await login({ login: 'PW3', password: 'other-tenants-choice' }), 401);
  });

  it('lets a user change their own password with the current one: every session of theirs ends, refresh and access tokens alike', async () => {
    const agent = await createAgent(app, 'PW4', { password: 'first-password-4' });
    const [a, b] = [await tokensOf({ login: 'PW4', password: 'first-password-4' }), await tokensOf({ login: 'PW4', password: 'first-password-4' })];

    const wrong = await changeOwn({ token: a.accessToken }, { currentPassword: 'not-my-password', newPassword: 'second-password-4' });
    expectStatus(wrong, 400, 'VALIDATION_FAILED');
    expect(wrong.body.details).toEqual([{ field: 'currentPassword', message: expect.any(String) }]);
    const short = await changeOwn({ token: a.accessToken }, { currentPassword: 'first-password-4', newPassword: 'too-short' });
    expectStatus(short, 400, 'VALIDATION_FAILED');
    expect(short.body.details.map((d: { field: string }) => d.field)).toEqual(['newPassword']);
    expectStatus(await changeOwn({}, { currentPassword: 'first-password-4', newPassword: 'second-password-4' }), 401, 'UNAUTHORIZED');
    // Nothing changed so far.
    expectStatus(await refresh(a.refreshToken), 200);

    const changed = await changeOwn({ token: a.accessToken }, { currentPassword: 'first-password-4', newPassword: 'second-password-4' });
    expectStatus(changed, 204);
    expectStatus(await login({ login: 'PW4', password: 'first-password-4' }), 401);
    const fresh = await tokensOf({ login: 'PW4', password: 'second-password-4' });
    // Every session of the user ends, the other device's too: refresh tokens, and the access
    // tokens they issued (on every instance within AUTH_CACHE_MS; here at once).
    expectStatus(await refresh(b.refreshToken), 401, 'UNAUTHORIZED');
    expectStatus(await app.api('GET', '/api/contacts', { key: null, token: a.accessToken }), 401, 'UNAUTHORIZED');
    expectStatus(await app.api('GET', '/api/contacts', { key: null, token: b.accessToken }), 401, 'UNAUTHORIZED');
    expectStatus(await app.api('GET', '/api/contacts', { key: null, token: fresh.accessToken }), 200);
    expectStatus(await refresh(fresh.refreshToken), 200);

    // A device holding the agent's API key may change it too, knowing the current one.
    expectStatus(await changeOwn({ key: agent.apiKey }, { currentPassword: 'second-password-4', newPassword: 'third-password-4' }), 204);
    await tokensOf({ login: 'PW4', password: 'third-password-4' });
  });

  it('throttles wrong current passwords like logins: a stolen session cannot guess its way to the password', async () => {
    await createAgent(app, 'PW5', { password: 'first-password-5' });
    const { accessToken } = await tokensOf({ login: 'PW5', password: 'first-password-5' });
    for (let i = 0; i < 5; i++) expectStatus(await changeOwn({ token: accessToken }, { currentPassword: `guess-number-${i}`, newPassword: 'taken-over-pw' }), 400);
    const locked = await changeOwn({ token: accessToken }, { currentPassword: 'first-password-5', newPassword: 'taken-over-pw' });
    expectStatus(locked, 429, 'RATE_LIMITED');
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    // The same budget as the account's logins.
    expectStatus(await login({ login: 'PW5', password: 'first-password-5' }), 429);
    expect(await later(16 * 60_000, async () => (await login({ login: 'PW5', password: 'taken-over-pw' })).status)).toBe(401);
  });
});

describe('ACCESS_TOKEN_TTL_SECONDS', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('pglite', { ACCESS_TOKEN_TTL_SECONDS: '120', LOGIN_MAX_FAILURES: '0' });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('sets how long access tokens live, in the answer and in the token', async () => {
    await createAgent(app, 'TTL1', { password: 'ttl-password-1' });
    const res = await app.api('POST', '/api/auth/login', { key: null, body: { login: 'TTL1', password: 'ttl-password-1' } });
    expectStatus(res, 200);
    expect(res.body.data.expiresIn).toBe(120);
    const token = res.body.data.accessToken as string;
    expect((await later(100_000, () => app.api('GET', '/api/contacts', { key: null, token }))).status).toBe(200);
    expectStatus(await later(130_000, () => app.api('GET', '/api/contacts', { key: null, token })), 401, 'UNAUTHORIZED');
  });
});

describe.each(backends)('API key prefixes on %s', (backend) => {
  it('lists a new key by its first 8 characters: fsk_ and 4 random ones, under a quarter of the key', async () => {
    const app = await startTestApp(backend, { LOGIN_MAX_FAILURES: '0' });
    try {
      const { apiKey } = await createAgent(app, 'KP1');
      const keys = await app.api('GET', '/api/agents/KP1/keys');
      expectStatus(keys, 200);
      expect(keys.body.data[0].prefix).toBe(apiKey.slice(0, 8));
      expect(keys.body.data[0].prefix.length * 4).toBeLessThan(apiKey.length);
      expect(keys.text).not.toContain(apiKey.slice(0, 9));
    } finally {
      await app.close();
    }
  });

  it('cuts the prefixes stored before to 8 characters, and the bootstrap key\'s (its length unknown) to 3', async () => {
    const testDb = await openTestDb(backend, { migrate: false });
    const before = mkdtempSync(join(tmpdir(), 'fieldsync-migrations-'));
    try {
      for (const file of readdirSync(MIGRATIONS).filter((f) => f.endsWith('.sql') && f < '0006')) copyFileSync(join(MIGRATIONS, file), join(before, file));
      await migrate(testDb.db, `${before}/`);
      const { db } = testDb;
      const tenant = (await db.query<{ id: string }>(`INSERT INTO tenants (slug, name) VALUES ('default', 'Default') RETURNING id`)).rows[0].id;
      const admin = (await db.query<{ id: string }>(`INSERT INTO users (tenant_id, agent_code, name, role) VALUES ($1, 'admin', 'Administrator', 'admin') RETURNING id`, [tenant])).rows[0].id;
      const insert = (prefix: string, hash: string, at: string) =>
        db.query('INSERT INTO api_keys (tenant_id, user_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)', [tenant, admin, prefix, hash, at]);
      await insert('short-bootst', 'h1', '2026-01-01T00:00:00Z'); // 12 characters of a 16-character bootstrap key
      await insert('fsk_AbCdEfGh', 'h2', '2026-01-02T00:00:00Z');

      expect(await migrate(db)).toContain('0006_auth_hardening.sql');
      const rows = (await db.query<{ key_hash: string; prefix: string }>('SELECT key_hash, prefix FROM api_keys ORDER BY key_hash')).rows;
      expect(rows).toEqual([
        { key_hash: 'h1', prefix: 'sho' },
        { key_hash: 'h2', prefix: 'fsk_AbCd' },
      ]);
    } finally {
      rmSync(before, { recursive: true, force: true });
      await testDb.drop();
    }
  });
});

describe('the bootstrap admin of a real server process', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fieldsync-bootstrap-pw-'));
  const group = new Set<ServerProcess>();
  const KEY = 'fsk_bootstrap_key_of_32_chars_00'; // exactly 32 characters
  const PASSWORD = 'bootstrap-admin-password';
  afterAll(async () => {
    await killAll(group);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a bootstrap key under 32 characters and a bootstrap password under 10 at start-up (exit 78), naming both, echoing neither', async () => {
    const never = join(tmpdir(), `fieldsync-never-${process.pid}-${Date.now()}`);
    const server = await spawnServer({ DATA_DIR: never, FIELDSYNC_BOOTSTRAP_ADMIN_KEY: 'fsk_only_31_characters_long_000', FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD: 'short-pw' }, group);
    const exit = await within(server.exited, 60_000, 'config failure exit');
    expect(exit.code).toBe(78);
    expect(server.stderr()).toMatch(/FIELDSYNC_BOOTSTRAP_ADMIN_KEY must be 32/);
    expect(server.stderr()).toMatch(/FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD must be 10/);
    expect(server.stderr() + server.stdout()).not.toMatch(/fsk_only_31|short-pw/);
  });

  it('gives the admin FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD on the first start: login "admin" signs in, also once other tenants have an "admin"', async () => {
    const env = { DATA_DIR: dataDir, FIELDSYNC_BOOTSTRAP_ADMIN_KEY: KEY, FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD: PASSWORD, LOGIN_MAX_FAILURES: '0' };
    let server = await startServer(env, { group });
    const loginAdmin = (password: string) => server.api('POST', '/api/auth/login', { body: { login: 'admin', password } });
    const first = await loginAdmin(PASSWORD);
    expect(first.status, first.text).toBe(200);
    expect(first.body.data.user).toMatchObject({ agentCode: 'admin', role: 'admin' });
    const defaultTenant = first.body.data.user.tenantId;
    const keys = await server.api('GET', '/api/agents/admin/keys', { key: KEY });
    // A 32-character key lists 7 characters: less than a quarter of it.
    expect(keys.body.data[0].prefix).toBe(KEY.slice(0, 7));

    const other = await server.api('POST', '/api/tenants', { key: KEY, body: { name: 'Second', slug: 'second' } });
    expect(other.status).toBe(201);
    const again = await loginAdmin(PASSWORD);
    expect(again.body.data.user).toMatchObject({ agentCode: 'admin', tenantId: defaultTenant });
    await server.stop();

    // Later starts leave the password alone (it may have been changed since).
    server = await startServer({ ...env, FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD: 'another-password-x' }, { group });
    expect((await loginAdmin(PASSWORD)).status).toBe(200);
    expect((await loginAdmin('another-password-x')).status).toBe(401);
    await server.stop();
  });
});
