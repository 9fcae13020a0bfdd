import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogs } from '../src/logging/logger.js';
import { freePort, within } from '../src/lib/child-server.js';
import { backends, type Backend } from './helpers/test-db.js';
import { startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

const REDIS_URL = process.env.TEST_REDIS_URL;

/** A fresh tenant's admin key, issued without HTTP so no request budget is spent on it. */
async function tenantKey(app: TestApp, slug: string): Promise<string> {
  const created = await app.built.services.tenants.create({ name: slug, slug: `${slug}-${Date.now().toString(36)}` });
  return created.apiKey;
}

/** Closes an app whose database the test broke on purpose: the close must still finish. */
async function closeBroken(app: TestApp): Promise<void> {
  await within(app.built.close().catch(() => undefined), 10_000, 'close of a broken app');
  await app.testDb.drop().catch(() => undefined);
}

describe.each(backends)('operations on %s', (backend: Backend) => {
  let app: TestApp;
  const others: TestApp[] = [];
  /** Starts another app for one test; closed in afterAll whatever happens. */
  const another = async (env: Record<string, string>, opts?: Parameters<typeof startTestApp>[2]) => {
    const started = await within(startTestApp(backend, env, opts), 30_000, 'app start');
    others.push(started);
    return started;
  };

  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    // Second instances share the first one's database: close them before it.
    for (const other of others.reverse()) await within(other.close(), 15_000, 'app close').catch(() => undefined);
    await app?.close();
  });

  describe('rate limit', () => {
    let limited: TestApp;
    beforeAll(async () => {
      limited = await another({ RATE_LIMIT_PER_MINUTE: '5' });
    });

    it('answers the 6th request of one key in a minute with 429, Retry-After and the error envelope', async () => {
      const key = await tenantKey(limited, 'rl-a');
      for (let i = 0; i < 5; i++) {
        const res = await limited.api('GET', '/api/contacts', { key });
        expect(res.status).toBe(200);
        expect(res.headers.get('x-ratelimit-remaining')).toBe(String(4 - i));
      }
      const sixth = await limited.api('GET', '/api/contacts', { key });
      expect(sixth.status).toBe(429);
      expect(Number(sixth.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(Number(sixth.headers.get('retry-after'))).toBeLessThanOrEqual(60);
      expect(sixth.body).toMatchObject({ success: false, error: 'RATE_LIMITED' });
      expect(sixth.body.message).toMatch(/5 requests per minute/);
    });

    it('keeps the budget of another key whole, and never limits /health', async () => {
      const spent = await tenantKey(limited, 'rl-b');
      for (let i = 0; i < 6; i++) await limited.api('GET', '/api/contacts', { key: spent });
      expect((await limited.api('GET', '/api/contacts', { key: spent })).status).toBe(429);
      const fresh = await tenantKey(limited, 'rl-c');
      expect((await limited.api('GET', '/api/contacts', { key: fresh })).status).toBe(200);
      for (let i = 0; i < 12; i++) {
        const health = await limited.api('GET', '/health', { key: null });
        expect(health.status).toBe(200);
        expect(health.headers.get('x-ratelimit-limit')).toBeNull();
      }
    });

    it('limits unauthenticated login attempts per IP', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await limited.api('POST', '/api/auth/login', { key: null, body: { login: 'admin', password: 'wrong-password-123' } });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
    });

    if (REDIS_URL) {
      it('shares one budget between two instances through Redis: 5 on A and 1 on B is 429', async () => {
        const a = await another({ RATE_LIMIT_PER_MINUTE: '5', REDIS_URL });
        const b = await another({ RATE_LIMIT_PER_MINUTE: '5', REDIS_URL }, { sharedDb: a.testDb });
        const key = await tenantKey(a, 'rl-shared');
        for (let i = 0; i < 5; i++) expect((await a.api('GET', '/api/contacts', { key })).status).toBe(200);
        const onB = await b.api('GET', '/api/contacts', { key });
        expect(onB.status).toBe(429);
        expect(onB.headers.get('retry-after')).toBeTruthy();
        expect(onB.body).toMatchObject({ success: false, error: 'RATE_LIMITED' });
        const other = await tenantKey(a, 'rl-shared-other');
        expect((await b.api('GET', '/api/contacts', { key: other })).status).toBe(200);
      });
    }
  });

  describe('HTTP hardening', () => {
    it('sends security headers', async () => {
      const res = await app.api('GET', '/api/contacts');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
      expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('x-powered-by')).toBeNull();
    });

    it('gzips a large JSON response when asked, and only then', async () => {
      const rows = Array.from({ length: 60 }, (_, i) => ({ firstName: `Zip${i}`, company: 'Compressible Ltd', phonePrimary: uniquePhone() }));
      expect((await app.api('POST', '/api/contacts/bulk', { body: rows })).body.data.created).toBe(60);
      const zipped = await app.api('GET', '/api/contacts?limit=100', { headers: { 'accept-encoding': 'gzip' } });
      expect(zipped.status).toBe(200);
      expect(zipped.headers.get('content-encoding')).toBe('gzip');
      expect(zipped.body.data.length).toBeGreaterThanOrEqual(60); // fetch inflated it
      const plain = await app.api('GET', '/api/contacts?limit=100', { headers: { 'accept-encoding': 'identity' } });
      expect(plain.headers.get('content-encoding')).toBeNull();
      expect(plain.body.data.length).toBe(zipped.body.data.length);
    });

    it('sends no CORS headers when CORS_ORIGIN is unset', async () => {
      const res = await app.api('GET', '/api/contacts', { headers: { origin: 'https://app.example.com' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      const preflight = await app.api('OPTIONS', '/api/contacts', {
        key: null,
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' },
      });
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('allows exactly the origins of CORS_ORIGIN', async () => {
      const cors = await another({ CORS_ORIGIN: 'https://app.example.com,https://admin.example.com' });
      const allowed = await cors.api('GET', '/api/contacts', { headers: { origin: 'https://admin.example.com' } });
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://admin.example.com');
      const denied = await cors.api('GET', '/api/contacts', { headers: { origin: 'https://evil.example.com' } });
      expect(denied.headers.get('access-control-allow-origin')).toBeNull();
      const preflight = await cors.api('OPTIONS', '/api/contacts', {
        key: null,
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-api-key' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
      expect(preflight.headers.get('access-control-allow-methods')).toMatch(/POST/);
    });
  });

  describe('/health', () => {
    it('answers 200 with the database up and Redis disabled when not configured', async () => {
      const res = await app.api('GET', '/health', { key: null });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'ok', checks: { database: { status: 'up' }, redis: { status: 'disabled' } } });
      expect(res.body.uptime).toBeGreaterThanOrEqual(0);
      expect(res.body.version).toMatch(/^\d+\.\d+\.\d+/);
    });

    it('answers 503 with checks.database down once the database is gone', async () => {
      const broken = await another({});
      expect((await broken.api('GET', '/health', { key: null })).status).toBe(200);
      let restore = async () => {};
      if (backend === 'postgres') {
        // Refuse new connections to the scratch database and cut the pool's current ones.
        const name = new URL(broken.testDb.url!).pathname.slice(1);
        const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
        await admin.connect();
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
        restore = async () => {
          await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
          await admin.end();
        };
      } else {
        await broken.testDb.db.close();
      }
      try {
        const res = await broken.api('GET', '/health', { key: null });
        expect(res.status).toBe(503);
        expect(res.body).toMatchObject({ status: 'unavailable', checks: { database: { status: 'down' } } });
        expect(res.body.checks.database.error).toBeTruthy();
      } finally {
        await restore();
      }
      if (backend === 'postgres') {
        // The pool reconnects once the database takes connections again.
        expect((await broken.api('GET', '/health', { key: null })).status).toBe(200);
      } else {
        others.splice(others.indexOf(broken), 1);
        await closeBroken(broken);
      }
    });

    it('starts without hanging when Redis is unreachable, reports it down with 503, and still serves the API', async () => {
      const port = await freePort(); // nothing listens there
      const started = Date.now();
      const noRedis = await another({ REDIS_URL: `redis://127.0.0.1:${port}`, RATE_LIMIT_PER_MINUTE: '100' });
      expect(Date.now() - started).toBeLessThan(15_000);
      const t0 = Date.now();
      const res = await noRedis.api('GET', '/health', { key: null });
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(res.status).toBe(503);
      expect(res.body.checks).toMatchObject({ database: { status: 'up' }, redis: { status: 'down' } });
      // The rate limit fails open rather than turning every request into an error.
      const t1 = Date.now();
      expect((await noRedis.api('GET', '/api/contacts')).status).toBe(200);
      expect(Date.now() - t1).toBeLessThan(3000);
      others.splice(others.indexOf(noRedis), 1);
      await within(noRedis.close(), 10_000, 'close with Redis unreachable');
    });

    if (REDIS_URL) {
      it('reports Redis up when REDIS_URL answers', async () => {
        const withRedis = await another({ REDIS_URL });
        const res = await withRedis.api('GET', '/health', { key: null });
        expect(res.status).toBe(200);
        expect(res.body.checks.redis.status).toBe('up');
      });
    }
  });

  describe('API documentation', () => {
    it('serves the Swagger UI at /docs without credentials', async () => {
      const res = await fetch(`${app.url}/docs`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/text\/html/);
      expect(await res.text()).toMatch(/swagger-ui/i);
    });

    it('serves the OpenAPI 3 document at /docs/json listing /api/contacts', async () => {
      const res = await app.api('GET', '/docs/json', { key: null });
      expect(res.status).toBe(200);
      expect(res.body.openapi).toMatch(/^3\./);
      expect(Object.keys(res.body.paths)).toEqual(expect.arrayContaining(['/api/contacts', '/api/contacts/{id}', '/health']));
      expect(res.body.paths['/api/contacts'].post.responses).toHaveProperty('201');
      expect(res.body.components.securitySchemes).toHaveProperty('apiKey');
    });
  });
});

describe('log files', () => {
  const logDir = mkdtempSync(join(tmpdir(), 'fieldsync-logfiles-'));
  afterAll(() => rmSync(logDir, { recursive: true, force: true }));

  it('writes every level to combined.log, only errors to error.log, redacted, all of it before close() resolves', async () => {
    const { logger, close } = createLogs({ level: 'info', logDir });
    const stdoutWrite = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write; // keep the test output clean
    try {
      logger.info({ req: { headers: { 'x-api-key': 'fsk_secret_key_in_header', authorization: 'Bearer secret.jwt.token' } } }, 'incoming');
      logger.info({ body: { password: 'hunter2-plaintext', apiKey: 'fsk_secret_in_body' } }, 'login');
      logger.error({ reqId: 'r-1' }, 'boom');
      await close();
    } finally {
      process.stdout.write = stdoutWrite;
    }
    const combined = readFileSync(join(logDir, 'combined.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const errors = readFileSync(join(logDir, 'error.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(combined.map((l) => l.msg)).toEqual(['incoming', 'login', 'boom']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ msg: 'boom', reqId: 'r-1', level: 50 });
    const text = readFileSync(join(logDir, 'combined.log'), 'utf8');
    for (const secret of ['fsk_secret_key_in_header', 'secret.jwt.token', 'hunter2-plaintext', 'fsk_secret_in_body']) {
      expect(text).not.toContain(secret);
    }
    expect(combined[0].req.headers['x-api-key']).toBe('[redacted]');
  });
});
