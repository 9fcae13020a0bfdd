import { createHash, randomUUID } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { backends } from './helpers/test-db.js';
import { ADMIN_KEY, createAgent, startTestApp, uniquePhone, type ApiResponse, type TestApp } from './helpers/test-app.js';

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

/** A 401 in the failure envelope of SPEC §3. */
function expectUnauthorized(res: ApiResponse) {
  expect(res.status).toBe(401);
  expect(res.body).toMatchObject({ success: false, error: 'UNAUTHORIZED', message: expect.any(String) });
}

function expectForbidden(res: ApiResponse) {
  expect(res.status).toBe(403);
  expect(res.body).toMatchObject({ success: false, error: 'FORBIDDEN', message: expect.any(String) });
}

describe.each(backends)('auth on %s', (backend) => {
  let app: TestApp;
  // Every key and token this suite saw in plaintext: none may be stored as such.
  const plaintexts: string[] = [ADMIN_KEY];

  // No auth cache, so deactivation and revocation take effect at once. This suite makes many
  // failed logins from one address: login throttling has its own suite (auth-login.test.ts).
  beforeAll(async () => {
    app = await startTestApp(backend, { AUTH_CACHE_MS: '0', LOGIN_MAX_FAILURES: '0' });
  });
  afterAll(async () => {
    await app?.close();
  });

  const login = (body: Record<string, unknown>) => app.api('POST', '/api/auth/login', { body, key: null });
  const refresh = (refreshToken: string) => app.api('POST', '/api/auth/refresh', { body: { refreshToken }, key: null });
  const listContacts = (auth: { key?: string | null; token?: string; headers?: Record<string, string> }) =>
    app.api('GET', '/api/contacts', { key: null, ...auth });

  /** An agent with a password; returns its key and a fresh login. */
  async function agentWithLogin(code: string, extra: Record<string, unknown> = {}) {
    const password = `pw-${code}-secret`;
    const created = await createAgent(app, code, { password, ...extra });
    plaintexts.push(created.apiKey);
    const res = await login({ login: code, password });
    expect(res.status).toBe(200);
    plaintexts.push(res.body.data.refreshToken);
    return { ...created, password, tokens: res.body.data as { accessToken: string; refreshToken: string } };
  }

  describe('login and tokens', () => {
    it('logs in by agent code and by email, answering {accessToken, refreshToken, expiresIn: 900, user}', async () => {
      const { agent, password } = await agentWithLogin('L1', { email: 'lena@example.com', name: 'Lena' });
      const byCode = await login({ login: 'L1', password });
      expect(byCode.status).toBe(200);
      expect(byCode.body.success).toBe(true);
      expect(byCode.body.data).toEqual({
        accessToken: expect.any(String),
        refreshToken: expect.any(String),
        expiresIn: 900,
        user: expect.objectContaining({ id: agent.id, agentCode: 'L1', name: 'Lena', email: 'lena@example.com', role: 'agent', isActive: true }),
      });
      expect(byCode.body.data.user).not.toHaveProperty('passwordHash');

      const byEmail = await login({ login: 'LENA@example.com', password });
      expect(byEmail.status).toBe(200);
      expect(byEmail.body.data.user.id).toBe(agent.id);
      expect(byEmail.body.data.expiresIn).toBe(900);
      expect(byEmail.body.data.refreshToken).not.toBe(byCode.body.data.refreshToken);
      plaintexts.push(byCode.body.data.refreshToken, byEmail.body.data.refreshToken);
    });

    it('answers 401 for a wrong password, an unknown login or a user without a password', async () => {
      await agentWithLogin('L2');
      const wrong = await login({ login: 'L2', password: 'not-the-password' });
      expectUnauthorized(wrong);
      expect(wrong.body.data).toBeUndefined();
      expectUnauthorized(await login({ login: 'NOBODY', password: 'whatever-it-is' }));
      // The bootstrap admin has a key but no password: no password opens it.
      expectUnauthorized(await login({ login: 'admin', password: 'admin' }));
    });

    it('rejects a malformed login body with a 400 naming the field', async () => {
      const res = await login({ login: 'L2' });
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
      expect(res.body.details.map((d: { field: string }) => d.field)).toContain('password');
    });

    it('accepts the access token as a Bearer token on /api/contacts', async () => {
      const { tokens, agent } = await agentWithLogin('B1');
      const list = await listContacts({ token: tokens.accessToken });
      expect(list.status).toBe(200);
      expect(list.body.success).toBe(true);
      const created = await app.api('POST', '/api/contacts', {
        key: null,
        token: tokens.accessToken,
        body: { firstName: 'Via', lastName: 'Bearer', phonePrimary: uniquePhone() },
      });
      expect(created.status).toBe(201);
      expect(created.body.data.createdByAgent).toBe('B1');
      expect(agent.agentCode).toBe('B1');
    });

    it('rotates refresh tokens; reusing a rotated one revokes its whole family but no other session', async () => {
      const { tokens, password } = await agentWithLogin('R1');
      const first = await refresh(tokens.refreshToken);
      expect(first.status).toBe(200);
      expect(first.body.data).toMatchObject({ expiresIn: 900, user: { agentCode: 'R1' } });
      expect(first.body.data.refreshToken).not.toBe(tokens.refreshToken);
      expect((await listContacts({ token: first.body.data.accessToken })).status).toBe(200);

      const second = await refresh(first.body.data.refreshToken);
      expect(second.status).toBe(200);
      const newest = second.body.data.refreshToken as string;
      plaintexts.push(first.body.data.refreshToken, newest);

      // Another session of the same user (another family) must survive the revocation.
      const other = await login({ login: 'R1', password });
      expect(other.status).toBe(200);

      // The first refresh token was already rotated: presenting it again means it leaked.
      expectUnauthorized(await refresh(tokens.refreshToken));
      // ... so the newest token of that family no longer works either.
      expectUnauthorized(await refresh(newest));
      expectUnauthorized(await refresh(first.body.data.refreshToken));

      const otherRefreshed = await refresh(other.body.data.refreshToken);
      expect(otherRefreshed.status).toBe(200);
    });

    it('uses a refresh token only once, also when two refreshes race', async () => {
      const { tokens } = await agentWithLogin('R2');
      const results = await Promise.all([refresh(tokens.refreshToken), refresh(tokens.refreshToken)]);
      expect(results.map((r) => r.status).sort()).toEqual([200, 401]);
    });

    it('revokes the session on logout: its refresh tokens stop working', async () => {
      const { tokens } = await agentWithLogin('O1');
      const rotated = await refresh(tokens.refreshToken);
      expect(rotated.status).toBe(200);
      const out = await app.api('POST', '/api/auth/logout', { key: null, body: { refreshToken: rotated.body.data.refreshToken } });
      expect(out.status).toBe(204);
      expectUnauthorized(await refresh(rotated.body.data.refreshToken));
    });

    it('answers 401 for an unknown or malformed refresh token', async () => {
      expectUnauthorized(await refresh('definitely-not-a-refresh-token'));
      expectUnauthorized(await refresh('x'.repeat(43)));
    });

    it('accepts an access token for 15 minutes and answers 401 once it has expired', async () => {
      const { tokens } = await agentWithLogin('E1');
      const now = Date.now();
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(now + 14 * 60_000);
        expect((await listContacts({ token: tokens.accessToken })).status).toBe(200);
        vi.setSystemTime(now + 16 * 60_000);
        expectUnauthorized(await listContacts({ token: tokens.accessToken }));
        // The refresh token outlives the access token and gets a new one.
        const refreshed = await refresh(tokens.refreshToken);
        expect(refreshed.status).toBe(200);
        expect((await listContacts({ token: refreshed.body.data.accessToken })).status).toBe(200);
      } finally {
        vi.useRealTimers();
      }
    });

    it('answers 401 for malformed, forged and tampered access tokens', async () => {
      const { tokens, agent } = await agentWithLogin('T1');
      expectUnauthorized(await listContacts({ token: 'not-a-jwt' }));
      expectUnauthorized(await listContacts({ token: 'a.b.c' }));
      // Right claims, wrong secret.
      const forge = createSigner({ key: 'some-other-secret-0123456789-0123456789', algorithm: 'HS256', expiresIn: 60_000 });
      const [, payload] = tokens.accessToken.split('.');
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
      expectUnauthorized(await listContacts({ token: forge({ sub: agent.id, tid: claims.tid, role: 'admin', code: 'T1' }) }));
      // A genuine token whose payload was changed (role raised to admin).
      const raised = Buffer.from(JSON.stringify({ ...claims, role: 'admin' })).toString('base64url');
      const [head, , signature] = tokens.accessToken.split('.');
      expectUnauthorized(await app.api('GET', '/api/agents', { key: null, token: `${head}.${raised}.${signature}` }));
      // An unsigned token ("alg": "none").
      const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${payload}.`;
      expectUnauthorized(await listContacts({ token: none }));
    });
  });

  describe('credentials on requests', () => {
    it('answers 401 when no credentials are sent, or in a scheme it does not know', async () => {
      expectUnauthorized(await listContacts({}));
      expectUnauthorized(await listContacts({ headers: { 'x-api-key': '' } }));
      expectUnauthorized(await listContacts({ headers: { authorization: 'Bearer' } }));
      expectUnauthorized(await listContacts({ headers: { authorization: 'Basic YWRtaW46YWRtaW4=' } }));
      const post = await app.api('POST', '/api/contacts', { key: null, body: { firstName: 'No', phonePrimary: uniquePhone() } });
      expectUnauthorized(post);
    });

    it('answers 401 for unknown and malformed API keys', async () => {
      expectUnauthorized(await listContacts({ key: `fsk_${'A'.repeat(40)}` }));
      expectUnauthorized(await listContacts({ key: 'short' }));
      expectUnauthorized(await listContacts({ key: 'k'.repeat(300) }));
      expectUnauthorized(await listContacts({ key: `${ADMIN_KEY}x` }));
    });

    it('checks X-Agent-Code against the key: a mismatch is 401, a match passes', async () => {
      const { apiKey } = await createAgent(app, 'X1');
      plaintexts.push(apiKey);
      expect((await listContacts({ key: apiKey, headers: { 'x-agent-code': 'X1' } })).status).toBe(200);
      expectUnauthorized(await listContacts({ key: apiKey, headers: { 'x-agent-code': 'X2' } }));
      expectUnauthorized(await listContacts({ key: apiKey, headers: { 'x-agent-code': 'admin' } }));
    });

    it('answers 403 to an inactive agent on every credential, and lets it back in when reactivated', async () => {
      const { apiKey, tokens, password } = await agentWithLogin('I1');
      const off = await app.api('PATCH', '/api/agents/I1', { body: { isActive: false } });
      expect(off.status).toBe(200);
      expect(off.body.data.isActive).toBe(false);

      expectForbidden(await listContacts({ key: apiKey }));
      expectForbidden(await listContacts({ token: tokens.accessToken }));
      expectForbidden(await refresh(tokens.refreshToken));
      // A login does not prove the password before it answers: the right password of an
      // inactive agent gets the answer of a wrong one, so no answer tells it was right.
      const inactive = await login({ login: 'I1', password });
      expectUnauthorized(inactive);
      expect(inactive.body).toEqual((await login({ login: 'I1', password: 'not-the-password' })).body);

      expect((await app.api('PATCH', '/api/agents/I1', { body: { isActive: true } })).status).toBe(200);
      expect((await listContacts({ key: apiKey })).status).toBe(200);
      expect((await listContacts({ token: tokens.accessToken })).status).toBe(200);
      // The refused refresh did not consume the token.
      expect((await refresh(tokens.refreshToken)).status).toBe(200);
    });
  });

  describe('roles', () => {
    it('forbids agents the admin API', async () => {
      const { apiKey } = await createAgent(app, 'RA1');
      plaintexts.push(apiKey);
      expectForbidden(await app.api('POST', '/api/agents', { key: apiKey, body: { agentCode: 'RA2', name: 'Sneaky' } }));
      expectForbidden(await app.api('GET', '/api/agents', { key: apiKey }));
      expectForbidden(await app.api('PATCH', '/api/agents/RA1', { key: apiKey, body: { name: 'Self promoted' } }));
      expectForbidden(await app.api('POST', '/api/agents/RA1/keys', { key: apiKey }));
      expectForbidden(await app.api('POST', '/api/tenants', { key: apiKey, body: { name: 'Nope', slug: `nope-${backend}` } }));
      // Nothing was created.
      const list = await app.api('GET', '/api/agents');
      expect(list.body.data.map((u: { agentCode: string }) => u.agentCode)).not.toContain('RA2');
    });

    it('lets a manager list agents but not create or change them, by key and by token', async () => {
      const { apiKey, tokens } = await agentWithLogin('M1', { role: 'manager' });
      for (const auth of [{ key: apiKey }, { key: null, token: tokens.accessToken }]) {
        const list = await app.api('GET', '/api/agents', auth);
        expect(list.status).toBe(200);
        expect(list.body.data.map((u: { agentCode: string }) => u.agentCode)).toEqual(expect.arrayContaining(['admin', 'M1']));
        expectForbidden(await app.api('POST', '/api/agents', { ...auth, body: { agentCode: 'M2', name: 'Nope' } }));
        expectForbidden(await app.api('PATCH', '/api/agents/M1', { ...auth, body: { isActive: false } }));
      }
    });

    it('lets an admin log in and use the admin API by token', async () => {
      const { tokens } = await agentWithLogin('AD1', { role: 'admin' });
      const created = await app.api('POST', '/api/agents', { key: null, token: tokens.accessToken, body: { agentCode: 'AD2', name: 'By token' } });
      expect(created.status).toBe(201);
      plaintexts.push(created.body.data.apiKey);
    });
  });

  describe('agents and keys', () => {
    it('answers 409 for a duplicate agent code or email and changes nothing', async () => {
      const { apiKey } = await createAgent(app, 'D1', { email: 'dee@example.com' });
      plaintexts.push(apiKey);
      const before = (await app.api('GET', '/api/agents')).body.data.length;
      const dup = await app.api('POST', '/api/agents', { body: { agentCode: 'D1', name: 'Other' } });
      expect(dup.status).toBe(409);
      expect(dup.body).toMatchObject({ success: false, error: 'DUPLICATE' });
      const dupEmail = await app.api('POST', '/api/agents', { body: { agentCode: 'D2', name: 'Other', email: 'DEE@example.com' } });
      expect(dupEmail.status).toBe(409);
      const after = await app.api('GET', '/api/agents');
      expect(after.body.data.length).toBe(before);
      expect(after.body.data.find((u: { agentCode: string }) => u.agentCode === 'D1').name).toBe('Agent D1');
      expect((await listContacts({ key: apiKey })).status).toBe(200);
    });

    it('issues new keys that work while the old keys keep working; lists them by prefix only', async () => {
      const { apiKey: first } = await createAgent(app, 'K1');
      const res = await app.api('POST', '/api/agents/K1/keys');
      expect(res.status).toBe(201);
      const second = res.body.data.apiKey as string;
      plaintexts.push(first, second);
      expect(second).toMatch(/^fsk_[0-9A-Za-z]{40}$/);
      expect(second).not.toBe(first);
      expect(second.startsWith(res.body.data.key.prefix)).toBe(true);
      for (const key of [first, second]) {
        const me = await listContacts({ key, headers: { 'x-agent-code': 'K1' } });
        expect(me.status).toBe(200);
      }
      const keys = await app.api('GET', '/api/agents/K1/keys');
      expect(keys.status).toBe(200);
      expect(keys.body.data).toHaveLength(2);
      expect(JSON.stringify(keys.body)).not.toContain(first);
      expect(JSON.stringify(keys.body)).not.toContain(second);
      expect(keys.body.data.every((k: { revokedAt: string | null }) => k.revokedAt === null)).toBe(true);
    });

    it('answers 401 to a revoked key and keeps the agent\'s other keys working', async () => {
      const { apiKey: first } = await createAgent(app, 'K2');
      const created = await app.api('POST', '/api/agents/K2/keys');
      const second = created.body.data.apiKey as string;
      plaintexts.push(first, second);
      expect((await listContacts({ key: second })).status).toBe(200);
      const revoked = await app.api('DELETE', `/api/agents/K2/keys/${created.body.data.key.id}`);
      expect(revoked.status).toBe(204);
      expectUnauthorized(await listContacts({ key: second }));
      expect((await listContacts({ key: first })).status).toBe(200);
      const keys = (await app.api('GET', '/api/agents/K2/keys')).body.data as { id: string; revokedAt: string | null }[];
      expect(keys.find((k) => k.id === created.body.data.key.id)?.revokedAt).toEqual(expect.any(String));
    });

    it('answers 404 when revoking an unknown key, a key of another agent or of another tenant, and revokes nothing', async () => {
      const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Keys Co', slug: `keys-${backend}` } });
      expect(tenant.status).toBe(201);
      const otherAdmin = tenant.body.data.apiKey as string;
      plaintexts.push(otherAdmin);
      // The same agent code in both tenants, so only the tenant tells them apart.
      const mine = await createAgent(app, 'K3');
      const theirs = await createAgent(app, 'K3', {}, otherAdmin);
      const theirKey = await app.api('POST', '/api/agents/K3/keys', { key: otherAdmin });
      expect(theirKey.status).toBe(201);
      plaintexts.push(mine.apiKey, theirs.apiKey, theirKey.body.data.apiKey);

      const cross = await app.api('DELETE', `/api/agents/K3/keys/${theirKey.body.data.key.id}`);
      expect(cross.status).toBe(404);
      expect(cross.body).toMatchObject({ success: false, error: 'NOT_FOUND' });
      expect((await listContacts({ key: theirKey.body.data.apiKey })).status).toBe(200);

      // Another agent's key, named under the wrong agent.
      const k1Keys = (await app.api('GET', '/api/agents/K1/keys')).body.data as { id: string }[];
      expect((await app.api('DELETE', `/api/agents/K3/keys/${k1Keys[0].id}`)).status).toBe(404);
      expect((await app.api('GET', '/api/agents/K1/keys')).body.data[0].revokedAt).toBeNull();

      expect((await app.api('DELETE', `/api/agents/K3/keys/${randomUUID()}`)).status).toBe(404);
      expect((await app.api('DELETE', '/api/agents/K3/keys/not-a-key-id')).status).toBe(404);
      expect((await app.api('DELETE', `/api/agents/NOPE/keys/${randomUUID()}`)).status).toBe(404);
      expect((await listContacts({ key: mine.apiKey })).status).toBe(200);
    });
  });

  describe('tenants', () => {
    it('lets the default admin create a tenant whose admin key works only in that tenant', async () => {
      const slug = `acme-${backend}`;
      const res = await app.api('POST', '/api/tenants', { body: { name: 'Acme', slug } });
      expect(res.status).toBe(201);
      expect(res.body.data.tenant).toMatchObject({ id: expect.any(String), name: 'Acme', slug, createdAt: expect.any(String) });
      const key = res.body.data.apiKey as string;
      plaintexts.push(key);
      expect(key).toMatch(/^fsk_/);

      const theirAgents = await app.api('GET', '/api/agents', { key });
      expect(theirAgents.status).toBe(200);
      expect(theirAgents.body.data).toEqual([expect.objectContaining({ agentCode: 'admin', role: 'admin', tenantId: res.body.data.tenant.id })]);
      const ours = await app.api('GET', '/api/agents');
      expect(ours.body.data.every((u: { tenantId: string }) => u.tenantId !== res.body.data.tenant.id)).toBe(true);

      // Data does not cross: a contact of the default tenant is invisible to the new one.
      const contact = await app.api('POST', '/api/contacts', { body: { firstName: 'Home', phonePrimary: uniquePhone() } });
      expect(contact.status).toBe(201);
      expect((await app.api('GET', `/api/contacts/${contact.body.data.id}`, { key })).status).toBe(404);
      expect((await app.api('GET', '/api/contacts', { key })).body.data).toEqual([]);
      // An agent made with the new key lands in the new tenant.
      const agent = await createAgent(app, 'AC1', {}, key);
      plaintexts.push(agent.apiKey);
      expect((await app.api('GET', '/api/agents/AC1/keys')).status).toBe(404);
      expect((await app.api('GET', '/api/agents/AC1/keys', { key })).status).toBe(200);
    });

    it('forbids admins of any other tenant to create tenants, and creates nothing', async () => {
      const first = await app.api('POST', '/api/tenants', { body: { name: 'Second', slug: `second-${backend}` } });
      expect(first.status).toBe(201);
      const secondAdmin = first.body.data.apiKey as string;
      plaintexts.push(secondAdmin);
      const attempt = await app.api('POST', '/api/tenants', { key: secondAdmin, body: { name: 'Third', slug: `third-${backend}` } });
      expectForbidden(attempt);
      // The slug is still free: nothing was created by the refused call.
      const later = await app.api('POST', '/api/tenants', { body: { name: 'Third', slug: `third-${backend}` } });
      expect(later.status).toBe(201);
      plaintexts.push(later.body.data.apiKey);
    });

    it('answers 409 for a taken slug, including "default"', async () => {
      const slug = `dup-${backend}`;
      const first = await app.api('POST', '/api/tenants', { body: { name: 'Dup', slug } });
      expect(first.status).toBe(201);
      plaintexts.push(first.body.data.apiKey);
      const again = await app.api('POST', '/api/tenants', { body: { name: 'Dup again', slug } });
      expect(again.status).toBe(409);
      expect(again.body).toMatchObject({ success: false, error: 'DUPLICATE' });
      expect((await app.api('POST', '/api/tenants', { body: { name: 'Default again', slug: 'default' } })).status).toBe(409);
    });

    it('names the tenant of a login used in several tenants by `tenant` or login@slug; without one it means tenant default\'s user', async () => {
      const slug = `twin-${backend}`;
      const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Twin', slug } });
      expect(tenant.status).toBe(201);
      const twinAdmin = tenant.body.data.apiKey as string;
      plaintexts.push(twinAdmin);
      const password = 'same-password-in-both';
      const here = await createAgent(app, 'TW1', { password });
      const there = await createAgent(app, 'TW1', { password, email: 'tw1@twin.example.com' }, twinAdmin);
      plaintexts.push(here.apiKey, there.apiKey);

      const unnamed = await login({ login: 'TW1', password });
      expect(unnamed.status).toBe(200);
      expect(unnamed.body.data.user.id).toBe(here.agent.id);

      const inDefault = await login({ login: 'TW1', password, tenant: 'default' });
      expect(inDefault.status).toBe(200);
      expect(inDefault.body.data.user.id).toBe(here.agent.id);
      for (const named of [{ login: 'TW1', tenant: slug }, { login: `TW1@${slug}` }, { login: `tw1@twin.example.com@${slug}` }, { login: 'TW1@example.com', tenant: slug }]) {
        const res = await login({ ...named, password });
        if (named.login === 'TW1@example.com') {
          // With a `tenant`, the login is taken as written: no user has this one.
          expectUnauthorized(res);
          continue;
        }
        expect(res.status, JSON.stringify(named)).toBe(200);
        expect(res.body.data.user).toMatchObject({ id: there.agent.id, tenantId: tenant.body.data.tenant.id });
      }
      // An email names its tenant alone when it is the only user with it.
      expect((await login({ login: 'tw1@twin.example.com', password })).body.data.user.id).toBe(there.agent.id);
      // The token acts in its own tenant only.
      const inTwin = await login({ login: `TW1@${slug}`, password });
      const seen = await app.api('GET', '/api/contacts', { key: null, token: inTwin.body.data.accessToken });
      expect(seen.status).toBe(200);
      expect(seen.body.data).toEqual([]);
      expectUnauthorized(await login({ login: 'TW1', password, tenant: 'no-such-tenant' }));
      expectUnauthorized(await login({ login: 'TW1@no-such-tenant', password }));
    });

    it('refuses a login used in several tenants other than default without its tenant, as it refuses a wrong password', async () => {
      const slugs = [`pair-a-${backend}`, `pair-b-${backend}`];
      const admins: string[] = [];
      for (const slug of slugs) {
        const tenant = await app.api('POST', '/api/tenants', { body: { name: slug, slug } });
        expect(tenant.status).toBe(201);
        admins.push(tenant.body.data.apiKey);
      }
      plaintexts.push(...admins);
      const a = await createAgent(app, 'TW2', { password: 'password-of-pair-a' }, admins[0]);
      const b = await createAgent(app, 'TW2', { password: 'password-of-pair-b' }, admins[1]);
      plaintexts.push(a.apiKey, b.apiKey);

      // Right passwords, but no tenant: no account is checked, and the answer is a wrong password's.
      const ambiguous = await login({ login: 'TW2', password: 'password-of-pair-a' });
      expectUnauthorized(ambiguous);
      expect(ambiguous.body).toEqual((await login({ login: 'TW2', password: 'wrong-password-here' })).body);
      expect(ambiguous.body.message).toMatch(/tenant/);

      expect((await login({ login: `TW2@${slugs[0]}`, password: 'password-of-pair-a' })).body.data.user.id).toBe(a.agent.id);
      expect((await login({ login: 'TW2', tenant: slugs[1], password: 'password-of-pair-b' })).body.data.user.id).toBe(b.agent.id);
      // Naming a tenant logs into that tenant or not at all.
      expectUnauthorized(await login({ login: `TW2@${slugs[1]}`, password: 'password-of-pair-a' }));
    });
  });

  // Last, so it sees every key and token the suite handled.
  describe('storage', () => {
    it('stores API keys and refresh tokens only as SHA-256 hashes, and passwords only as argon2id', async () => {
      const { apiKey, tokens, password } = await agentWithLogin('H1');
      const keys = await app.testDb.db.query<Record<string, unknown>>('SELECT * FROM api_keys');
      const tokensTable = await app.testDb.db.query<Record<string, unknown>>('SELECT * FROM refresh_tokens');
      const users = await app.testDb.db.query<Record<string, unknown>>('SELECT * FROM users');
      const stored = JSON.stringify([keys.rows, tokensTable.rows, users.rows]);
      expect(plaintexts.length).toBeGreaterThan(10);
      for (const secret of [...plaintexts, tokens.refreshToken, password]) expect(stored).not.toContain(secret);

      const row = keys.rows.find((r) => r.key_hash === sha256(apiKey));
      expect(row).toBeDefined();
      // At most 8 characters and less than a quarter of the key: `fsk_` and 4 random ones.
      expect(row?.prefix).toBe(apiKey.slice(0, 8));
      expect(keys.rows.some((r) => r.key_hash === sha256(ADMIN_KEY))).toBe(true);
      expect(tokensTable.rows.some((r) => r.token_hash === sha256(tokens.refreshToken))).toBe(true);
      const user = users.rows.find((u) => u.agent_code === 'H1' && u.tenant_id === row?.tenant_id);
      expect(String(user?.password_hash)).toMatch(/^\$argon2id\$/);
    });
  });
});
