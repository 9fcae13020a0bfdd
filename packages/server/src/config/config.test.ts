import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, ConfigError, loadConfig, withoutConfig } from './config.js';

/** The problems loadConfig reports for `env`, or [] when it accepts it. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
}

describe('loadConfig', () => {
  it('gives the documented defaults for an empty environment', () => {
    expect(loadConfig({})).toMatchObject({
      port: 3000,
      host: '0.0.0.0',
      dataDir: './data',
      databaseUrl: undefined,
      redisUrl: undefined,
      jwtSecret: undefined,
      corsOrigin: undefined,
      logLevel: 'info',
      logDir: undefined,
      rateLimitPerMinute: 100,
      bootstrapAdminKey: undefined,
      bootstrapAdminPassword: undefined,
      defaultPhoneRegion: 'US',
      accessTokenTtlSeconds: 900,
      loginMaxFailures: 5,
      trustProxy: false,
    });
  });

  it('reads every documented key', () => {
    const config = loadConfig({
      PORT: '8080',
      HOST: '127.0.0.1',
      DATA_DIR: '/var/lib/fieldsync',
      DATABASE_URL: 'postgres://fs:pw@db:5432/fieldsync',
      REDIS_URL: 'redis://cache:6379',
      JWT_SECRET: 'x'.repeat(32),
      CORS_ORIGIN: 'https://app.example.com, http://localhost:5173',
      LOG_LEVEL: 'debug',
      LOG_DIR: '/var/log/fieldsync',
      RATE_LIMIT_PER_MINUTE: '0',
      FIELDSYNC_BOOTSTRAP_ADMIN_KEY: 'fsk_bootstrap_0123456789abcdefghij',
      FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD: ' a long passphrase ',
      DEFAULT_PHONE_REGION: 'gb',
      ACCESS_TOKEN_TTL_SECONDS: '300',
      LOGIN_MAX_FAILURES: '10',
      TRUST_PROXY: '10.0.0.0/8, 192.168.1.1,loopback',
    });
    expect(config).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      dataDir: '/var/lib/fieldsync',
      databaseUrl: 'postgres://fs:pw@db:5432/fieldsync',
      redisUrl: 'redis://cache:6379',
      jwtSecret: 'x'.repeat(32),
      corsOrigin: ['https://app.example.com', 'http://localhost:5173'],
      logLevel: 'debug',
      logDir: '/var/log/fieldsync',
      rateLimitPerMinute: 0,
      bootstrapAdminKey: 'fsk_bootstrap_0123456789abcdefghij',
      bootstrapAdminPassword: ' a long passphrase ',
      defaultPhoneRegion: 'GB',
      accessTokenTtlSeconds: 300,
      loginMaxFailures: 10,
      trustProxy: ['10.0.0.0/8', '192.168.1.1', 'loopback'],
    });
  });

  it('treats blank values as unset', () => {
    const config = loadConfig({ PORT: '', DATABASE_URL: '  ', LOG_LEVEL: '', RATE_LIMIT_PER_MINUTE: ' ', CORS_ORIGIN: '' });
    expect(config).toMatchObject({ port: 3000, databaseUrl: undefined, logLevel: 'info', rateLimitPerMinute: 100, corsOrigin: undefined });
  });

  it('reports every bad key at once, in one ConfigError', () => {
    const problems = problemsOf({
      PORT: 'http',
      DATABASE_URL: 'not a url',
      REDIS_URL: 'http://cache:6379',
      JWT_SECRET: 'short',
      LOG_LEVEL: 'loud',
      RATE_LIMIT_PER_MINUTE: '-1',
      FIELDSYNC_BOOTSTRAP_ADMIN_KEY: 'tiny',
      DEFAULT_PHONE_REGION: 'USA',
    });
    const keys = ['PORT', 'DATABASE_URL', 'REDIS_URL', 'JWT_SECRET', 'LOG_LEVEL', 'RATE_LIMIT_PER_MINUTE', 'FIELDSYNC_BOOTSTRAP_ADMIN_KEY', 'DEFAULT_PHONE_REGION'];
    expect(problems).toHaveLength(keys.length);
    for (const key of keys) expect(problems.filter((p) => p.startsWith(`${key} `))).toHaveLength(1);
  });

  it('puts every problem in the error message, one per line', () => {
    try {
      loadConfig({ PORT: '99999', LOG_LEVEL: 'loud' });
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toBe(
        'Invalid configuration:\n  - LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")\n  - PORT must be an integer between 0 and 65535 (got "99999")',
      );
    }
  });

  it.each(['70000', '-1', '3.5', '1e3', '0x10', '80 80', 'abc'])('refuses PORT=%s', (port) => {
    expect(problemsOf({ PORT: port })).toEqual([expect.stringContaining('PORT')]);
  });

  it('accepts a PORT with surrounding spaces, and 0 (any free port)', () => {
    expect(loadConfig({ PORT: ' 8080 ' }).port).toBe(8080);
    expect(loadConfig({ PORT: '0' }).port).toBe(0);
  });

  it('accepts postgres: and postgresql: database URLs and rediss: for Redis, nothing else', () => {
    expect(loadConfig({ DATABASE_URL: 'postgresql://db/x' }).databaseUrl).toBe('postgresql://db/x');
    expect(loadConfig({ REDIS_URL: 'rediss://cache:6380' }).redisUrl).toBe('rediss://cache:6380');
    expect(problemsOf({ DATABASE_URL: 'mysql://db/x' })).toEqual([expect.stringContaining('DATABASE_URL')]);
    expect(problemsOf({ REDIS_URL: 'cache:6379:x' })).toEqual([expect.stringContaining('REDIS_URL')]);
  });

  it('never echoes a database URL or a secret in its problems', () => {
    const problems = problemsOf({ DATABASE_URL: 'postgres//user:hunter2@db', JWT_SECRET: 'hunter2-short', FIELDSYNC_BOOTSTRAP_ADMIN_KEY: 'hunter2' });
    expect(problems).toHaveLength(3);
    for (const problem of problems) expect(problem).not.toContain('hunter2');
  });

  it('refuses a bootstrap key under 32 characters and a bootstrap password under 10, and echoes neither', () => {
    expect(problemsOf({ FIELDSYNC_BOOTSTRAP_ADMIN_KEY: 'k'.repeat(31) })).toEqual([expect.stringMatching(/^FIELDSYNC_BOOTSTRAP_ADMIN_KEY must be 32/)]);
    expect(loadConfig({ FIELDSYNC_BOOTSTRAP_ADMIN_KEY: 'k'.repeat(32) }).bootstrapAdminKey).toBe('k'.repeat(32));
    const problems = problemsOf({ FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD: 'hunter2!!' });
    expect(problems).toEqual([expect.stringMatching(/^FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD must be 10/)]);
    expect(problems[0]).not.toContain('hunter2');
    expect(loadConfig({ FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD: '   ' }).bootstrapAdminPassword).toBeUndefined();
  });

  it('reads TRUST_PROXY as off, a hop count, or proxy addresses and ranges; never as "trust everyone"', () => {
    for (const off of ['', '0', 'false', 'FALSE']) expect(loadConfig({ TRUST_PROXY: off }).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '::1, fd00::/8, uniquelocal' }).trustProxy).toEqual(['::1', 'fd00::/8', 'uniquelocal']);
    for (const bad of ['true', '*', '10.0.0.0/33', 'proxy.example.com', '1.2.3.4/8/1', ',']) {
      expect(problemsOf({ TRUST_PROXY: bad }), bad).toEqual([expect.stringMatching(/^TRUST_PROXY /)]);
    }
  });

  it('bounds ACCESS_TOKEN_TTL_SECONDS and LOGIN_MAX_FAILURES (0 turns login throttling off)', () => {
    expect(loadConfig({ LOGIN_MAX_FAILURES: '0' }).loginMaxFailures).toBe(0);
    expect(problemsOf({ ACCESS_TOKEN_TTL_SECONDS: '5', LOGIN_MAX_FAILURES: '-1' })).toHaveLength(2);
    expect(problemsOf({ ACCESS_TOKEN_TTL_SECONDS: '86401' })).toHaveLength(1);
  });

  it('takes LOG_LEVEL in any case', () => {
    expect(loadConfig({ LOG_LEVEL: 'WARN' }).logLevel).toBe('warn');
    expect(loadConfig({ LOG_LEVEL: 'silent' }).logLevel).toBe('silent');
  });

  it('takes CORS_ORIGIN as * or a list of exact origins, and refuses what could never match', () => {
    expect(loadConfig({ CORS_ORIGIN: '*' }).corsOrigin).toBe('*');
    expect(loadConfig({ CORS_ORIGIN: 'https://a.example.com,' }).corsOrigin).toEqual(['https://a.example.com']);
    expect(problemsOf({ CORS_ORIGIN: 'https://a.example.com/, app.example.com' })).toEqual([
      expect.stringMatching(/CORS_ORIGIN.*"https:\/\/a\.example\.com\/", "app\.example\.com"/),
    ]);
  });

  it('reads the database pool size, the transaction timeouts and the write queue limit, with their defaults', () => {
    expect(loadConfig({})).toMatchObject({
      databasePoolSize: 10,
      databaseLockTimeoutMs: 10_000,
      databaseStatementTimeoutMs: 30_000,
      writeQueueLimit: 100,
    });
    expect(
      loadConfig({ DATABASE_POOL_SIZE: '4', DATABASE_LOCK_TIMEOUT_MS: '0', DATABASE_STATEMENT_TIMEOUT_MS: '5000', WRITE_QUEUE_LIMIT: '16' }),
    ).toMatchObject({ databasePoolSize: 4, databaseLockTimeoutMs: 0, databaseStatementTimeoutMs: 5000, writeQueueLimit: 16 });
    // No pool, no queue: a server that could not write at all.
    expect(problemsOf({ DATABASE_POOL_SIZE: '0', WRITE_QUEUE_LIMIT: '0', DATABASE_LOCK_TIMEOUT_MS: '10s', DATABASE_STATEMENT_TIMEOUT_MS: '-1' })).toEqual([
      expect.stringContaining('DATABASE_POOL_SIZE'),
      expect.stringContaining('DATABASE_LOCK_TIMEOUT_MS'),
      expect.stringContaining('DATABASE_STATEMENT_TIMEOUT_MS'),
      expect.stringContaining('WRITE_QUEUE_LIMIT'),
    ]);
  });

  it('bounds RATE_LIMIT_PER_MINUTE and SHUTDOWN_GRACE_MS', () => {
    expect(loadConfig({ RATE_LIMIT_PER_MINUTE: '5', SHUTDOWN_GRACE_MS: '0' })).toMatchObject({ rateLimitPerMinute: 5, shutdownGraceMs: 0 });
    expect(problemsOf({ RATE_LIMIT_PER_MINUTE: '1000001', SHUTDOWN_GRACE_MS: '1h' })).toHaveLength(2);
  });

  it('reads the fleet keys (SPEC §11): METRICS_TOKEN of 16-256 characters, never echoed; analytics and alert intervals with their defaults', () => {
    expect(loadConfig({})).toMatchObject({ metricsToken: undefined, analyticsFlushMs: 10_000, analyticsRetentionDays: 90, alertIntervalMs: 15_000 });
    expect(loadConfig({ METRICS_TOKEN: 't'.repeat(16), ANALYTICS_FLUSH_MS: '500', ANALYTICS_RETENTION_DAYS: '30', ALERT_INTERVAL_MS: '1000' })).toMatchObject({
      metricsToken: 't'.repeat(16),
      analyticsFlushMs: 500,
      analyticsRetentionDays: 30,
      alertIntervalMs: 1000,
    });
    const problems = problemsOf({ METRICS_TOKEN: 'hunter2', ANALYTICS_FLUSH_MS: '0', ANALYTICS_RETENTION_DAYS: '0', ALERT_INTERVAL_MS: 'soon' });
    expect(problems).toHaveLength(4);
    for (const problem of problems) expect(problem).not.toContain('hunter2');
  });

  it('reads process.env when given no argument', () => {
    const saved = process.env.PORT;
    process.env.PORT = '4321';
    try {
      expect(loadConfig().port).toBe(4321);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });
});

describe('CONFIG_KEYS', () => {
  it('names every variable loadConfig reads, so tools that start a server strip them all', async () => {
    const { readFile } = await import('node:fs/promises');
    const source = await readFile(new URL('./config.ts', import.meta.url), 'utf8');
    const read = new Set([...source.matchAll(/\b(?:str|int|url)\('([A-Z_]+)'/g)].map((m) => m[1]));
    expect(read.size).toBeGreaterThan(10);
    expect([...CONFIG_KEYS].sort()).toEqual([...read].sort());
    expect(withoutConfig({ PORT: '1', PATH: '/bin' })).toEqual({ PATH: '/bin' });
  });
});
