import { DB_DEFAULTS } from '../db/db.js';
import { join } from 'node:path';
import { isIP } from 'node:net';

/** Typed configuration, read from the environment and validated at start-up. */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  /** A streaming replica of DATABASE_URL that serves delta pulls (reads that tolerate its lag). */
  databaseReadUrl: string | undefined;
  /** PostgreSQL connections per instance. */
  databasePoolSize: number;
  /** How long a transaction may wait for a lock (PostgreSQL `lock_timeout`; 0: the server's setting). */
  databaseLockTimeoutMs: number;
  /** How long one statement of a transaction may run (`statement_timeout`; 0: the server's setting). */
  databaseStatementTimeoutMs: number;
  /** Writes of one tenant that may wait for their turn in one instance; one more is answered 503. */
  writeQueueLimit: number;
  /** Queued writes of one tenant that share one database transaction and commit (group commit); 1 turns grouping off. */
  writeGroupLimit: number;
  /** The embedded database's buffer pool (PostgreSQL `shared_buffers`), MB: resident for as long as the server runs. */
  pgliteSharedBuffersMb: number;
  redisUrl: string | undefined;
  jwtSecret: string | undefined;
  corsOrigin: string[] | '*' | undefined;
  logLevel: string;
  logDir: string | undefined;
  rateLimitPerMinute: number;
  bootstrapAdminKey: string | undefined;
  /** The bootstrap admin's password, set on the first start only. */
  bootstrapAdminPassword: string | undefined;
  defaultPhoneRegion: string;
  deviceFlushMs: number;
  authCacheMs: number;
  /** Memory for pulled pages shared by devices at the same checkpoint (0: no cache). */
  pullCacheMb: number;
  shutdownGraceMs: number;
  /** How long start-up retries a database or Redis that cannot be reached yet. */
  startupTimeoutMs: number;
  /** How long a socket may stay connected without authenticating. */
  socketAuthTimeoutMs: number;
  /** How many sockets one API key or token may hold at once. */
  maxSocketsPerCredential: number;
  /** Where file bytes live (default DATA_DIR/files). */
  uploadDir: string;
  /** The largest file either upload protocol takes. */
  uploadMaxBytes: number;
  /** Content types uploads may declare: `type/subtype` or `type/*`. */
  uploadAllowedTypes: string[];
  /** Bytes each tenant may hold, uploads in progress included. */
  storageQuotaBytes: number;
  /** How long an unfinished upload (chunked session or tus upload) lives. */
  uploadTtlSeconds: number;
  /** Lifetime of access tokens. */
  accessTokenTtlSeconds: number;
  /** Failed logins per login and per client address in 15 minutes before logins get 429 (0: no throttle). */
  loginMaxFailures: number;
  /**
   * Which peers may set the client address through X-Forwarded-For: `false` (none, the
   * socket's address is the client's), a hop count, or proxy addresses and CIDR ranges.
   */
  trustProxy: TrustProxy;
  /** The bearer token that opens `/metrics` to a scraper; unset: an admin's credentials. */
  metricsToken: string | undefined;
  /** How often each instance adds its in-memory sync analytics to the database. */
  analyticsFlushMs: number;
  /** How long hourly sync analytics are kept. */
  analyticsRetentionDays: number;
  /** How often the alert rules are evaluated. */
  alertIntervalMs: number;
  /** The HubSpot export (SPEC §9). */
  hubspot: HubspotConfig;
}

/** HubSpot export settings: HUBSPOT_* variables. */
export interface HubspotConfig {
  /** A private-app token that enables the export for every tenant without a token of its own. */
  accessToken: string | undefined;
  /** Where the HubSpot API is (a local server in tests). */
  baseUrl: string;
  /** How often the worker looks for due outbox entries (at most 5 s, SPEC §9). */
  pollMs: number;
  /** Tries of an entry before it becomes a dead letter. */
  maxAttempts: number;
  /** The first retry's delay; each further try doubles it (capped at 5 minutes). */
  retryBaseMs: number;
  /** How long a worker holds the entries it claimed; another worker takes them after that. */
  leaseMs: number;
  /** How long one HubSpot request may take. */
  timeoutMs: number;
  /** Requests per second per tenant token (HubSpot's limits: 10-19/s for private apps); 0: unlimited. */
  requestsPerSecond: number;
  /** Whether this instance runs the export worker (false: it queues exports, other instances send them). */
  worker: boolean;
}

/** See `Config.trustProxy`. */
export type TrustProxy = false | number | string[];

/** What UPLOAD_ALLOWED_TYPES allows unless set: images, PDF, plain text, CSV, common audio and video. */
export const DEFAULT_UPLOAD_TYPES = [
  'image/jpeg', 'image/png', 'image/gif', 'image/webp', 'image/heic', 'image/heif',
  'application/pdf', 'text/plain', 'text/csv',
  'audio/mpeg', 'audio/mp4', 'audio/aac', 'audio/ogg', 'audio/wav', 'audio/webm', 'audio/x-m4a', 'audio/amr',
  'video/mp4', 'video/quicktime', 'video/webm', 'video/3gpp', 'video/x-matroska',
];

/** Every environment variable `loadConfig` reads. */
export const CONFIG_KEYS = [
  'PORT', 'HOST', 'DATA_DIR', 'DATABASE_URL', 'DATABASE_READ_URL', 'DATABASE_POOL_SIZE', 'DATABASE_LOCK_TIMEOUT_MS', 'DATABASE_STATEMENT_TIMEOUT_MS',
  'WRITE_QUEUE_LIMIT', 'WRITE_GROUP_LIMIT', 'PGLITE_SHARED_BUFFERS_MB', 'REDIS_URL', 'JWT_SECRET', 'CORS_ORIGIN', 'LOG_LEVEL', 'LOG_DIR',
  'RATE_LIMIT_PER_MINUTE', 'FIELDSYNC_BOOTSTRAP_ADMIN_KEY', 'DEFAULT_PHONE_REGION', 'DEVICE_FLUSH_MS', 'AUTH_CACHE_MS',
  'PULL_CACHE_MB', 'SHUTDOWN_GRACE_MS', 'STARTUP_TIMEOUT_MS', 'SOCKET_AUTH_TIMEOUT_MS', 'MAX_SOCKETS_PER_CREDENTIAL', 'UPLOAD_DIR', 'UPLOAD_MAX_BYTES', 'UPLOAD_ALLOWED_TYPES',
  'STORAGE_QUOTA_BYTES', 'UPLOAD_TTL_SECONDS',
  'FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD', 'ACCESS_TOKEN_TTL_SECONDS', 'LOGIN_MAX_FAILURES', 'TRUST_PROXY',
  'HUBSPOT_ACCESS_TOKEN', 'HUBSPOT_BASE_URL', 'HUBSPOT_POLL_MS', 'HUBSPOT_MAX_ATTEMPTS', 'HUBSPOT_RETRY_BASE_MS', 'HUBSPOT_LEASE_MS',
  'HUBSPOT_TIMEOUT_MS', 'HUBSPOT_REQUESTS_PER_SECOND', 'HUBSPOT_WORKER',
  'METRICS_TOKEN', 'ANALYTICS_FLUSH_MS', 'ANALYTICS_RETENTION_DAYS', 'ALERT_INTERVAL_MS',
] as const;

/** `env` without any configuration key: what a tool hands a server it starts, before its own settings. */
export function withoutConfig(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const key of CONFIG_KEYS) delete out[key];
  return out;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Names proxy-addr knows for address ranges. */
const PROXY_RANGES = ['loopback', 'linklocal', 'uniquelocal'];

/** An IP address, an IP/CIDR range, or a range name proxy-addr knows. */
function isProxyAddress(value: string): boolean {
  if (PROXY_RANGES.includes(value)) return true;
  const [address, bits, extra] = value.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

function isOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value;
  } catch {
    return false;
  }
}

/** Reads the configuration from `env`; every bad key is reported at once in one ConfigError. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];

  const int = (key: string, fallback: number, min: number, max: number): number => {
    const raw = env[key]?.trim();
    if (raw === undefined || raw === '') return fallback;
    // Digits only: Number() would also take " ", "1e3" and "0x10" (a blank PORT would become 0).
    const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${key} must be an integer between ${min} and ${max} (got "${raw}")`);
      return fallback;
    }
    return value;
  };
  const bool = (key: string, value: string | undefined, fallback: boolean): boolean => {
    const raw = value?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['true', '1', 'yes', 'on'].includes(raw)) return true;
    if (['false', '0', 'no', 'off'].includes(raw)) return false;
    problems.push(`${key} must be true or false (got "${env[key]}")`);
    return fallback;
  };
  const str = (key: string): string | undefined => {
    const raw = env[key]?.trim();
    return raw ? raw : undefined;
  };
  const url = (key: string, protocols: string[]): string | undefined => {
    const raw = str(key);
    if (raw === undefined) return undefined;
    try {
      const parsed = new URL(raw);
      if (!protocols.includes(parsed.protocol)) {
        problems.push(`${key} must use ${protocols.join(' or ')} (got "${parsed.protocol}")`);
      }
    } catch {
      problems.push(`${key} is not a valid URL`);
    }
    return raw;
  };

  const logLevel = (str('LOG_LEVEL') ?? 'info').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${str('LOG_LEVEL')}")`);

  const jwtSecret = str('JWT_SECRET');
  if (jwtSecret !== undefined && jwtSecret.length < 32) problems.push('JWT_SECRET must be at least 32 characters');

  // The same floor as generated keys: a key is a password nobody types.
  const bootstrapAdminKey = str('FIELDSYNC_BOOTSTRAP_ADMIN_KEY');
  if (bootstrapAdminKey !== undefined && (bootstrapAdminKey.length < 32 || bootstrapAdminKey.length > 256)) {
    problems.push('FIELDSYNC_BOOTSTRAP_ADMIN_KEY must be 32 to 256 characters');
  }
  // Not trimmed: a password is taken as written, but a blank one is unset.
  const rawPassword = env.FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD;
  const bootstrapAdminPassword = str('FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD') === undefined ? undefined : rawPassword;
  if (bootstrapAdminPassword !== undefined && (bootstrapAdminPassword.length < 10 || bootstrapAdminPassword.length > 1024)) {
    problems.push('FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD must be 10 to 1024 characters');
  }

  const proxy = str('TRUST_PROXY');
  let trustProxy: TrustProxy = false;
  if (proxy !== undefined && /^\d+$/.test(proxy)) {
    trustProxy = Number(proxy) > 0 ? Math.min(Number(proxy), 100) : false;
  } else if (proxy !== undefined && proxy.toLowerCase() !== 'false') {
    const list = proxy.split(',').map((a) => a.trim()).filter((a) => a !== '');
    const bad = list.filter((a) => !isProxyAddress(a));
    // `true` would let every client choose its own address, and with it a fresh login budget.
    if (bad.length > 0 || list.length === 0) {
      problems.push(`TRUST_PROXY must be a hop count or a comma-separated list of proxy addresses or CIDR ranges (got "${bad.join('", "') || proxy}")`);
    } else {
      trustProxy = list;
    }
  }

  const region = (str('DEFAULT_PHONE_REGION') ?? 'US').toUpperCase();
  if (!/^[A-Z]{2}$/.test(region)) problems.push('DEFAULT_PHONE_REGION must be a two-letter region code');

  const cors = str('CORS_ORIGIN');
  const corsOrigin =
    cors === undefined ? undefined : cors === '*' ? '*' : cors.split(',').map((o) => o.trim()).filter((o) => o !== '');
  // An origin is scheme://host[:port], exactly as browsers send it: anything else never matches.
  const badOrigins = Array.isArray(corsOrigin) ? corsOrigin.filter((o) => !isOrigin(o)) : [];
  if (badOrigins.length > 0) {
    problems.push(`CORS_ORIGIN must be * or a comma-separated list of origins like https://app.example.com (got "${badOrigins.join('", "')}")`);
  }

  // A media range as clients send it: `type/subtype` or `type/*`, lower case.
  const types = (str('UPLOAD_ALLOWED_TYPES') ?? DEFAULT_UPLOAD_TYPES.join(',')).toLowerCase().split(',').map((t) => t.trim()).filter((t) => t !== '');
  const badTypes = types.filter((t) => !/^[a-z0-9][\w.+-]*\/(\*|[a-z0-9][\w.+-]*)$/.test(t));
  if (badTypes.length > 0 || types.length === 0) {
    problems.push(`UPLOAD_ALLOWED_TYPES must be a comma-separated list of content types like image/png or image/* (got "${badTypes.join('", "')}")`);
  }
  const dataDir = str('DATA_DIR') ?? './data';

  if (str('DATABASE_READ_URL') !== undefined && str('DATABASE_URL') === undefined) {
    problems.push('DATABASE_READ_URL needs DATABASE_URL: a replica serves reads beside a PostgreSQL primary');
  }
  const metricsToken = str('METRICS_TOKEN');
  if (metricsToken !== undefined && (metricsToken.length < 16 || metricsToken.length > 256)) problems.push('METRICS_TOKEN must be 16 to 256 characters');

  const config: Config = {
    port: int('PORT', 3000, 0, 65535),
    host: str('HOST') ?? '0.0.0.0',
    dataDir,
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
    databaseReadUrl: url('DATABASE_READ_URL', ['postgres:', 'postgresql:']),
    databasePoolSize: int('DATABASE_POOL_SIZE', DB_DEFAULTS.max, 1, 1000),
    databaseLockTimeoutMs: int('DATABASE_LOCK_TIMEOUT_MS', DB_DEFAULTS.lockTimeoutMs, 0, 600_000),
    databaseStatementTimeoutMs: int('DATABASE_STATEMENT_TIMEOUT_MS', DB_DEFAULTS.statementTimeoutMs, 0, 3_600_000),
    writeQueueLimit: int('WRITE_QUEUE_LIMIT', DB_DEFAULTS.queueLimit, 1, 100_000),
    writeGroupLimit: int('WRITE_GROUP_LIMIT', DB_DEFAULTS.groupLimit, 1, 1000),
    pgliteSharedBuffersMb: int('PGLITE_SHARED_BUFFERS_MB', 8, 1, 65_536),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    jwtSecret,
    corsOrigin,
    logLevel,
    logDir: str('LOG_DIR'),
    rateLimitPerMinute: int('RATE_LIMIT_PER_MINUTE', 100, 0, 1_000_000),
    bootstrapAdminKey,
    defaultPhoneRegion: region,
    deviceFlushMs: int('DEVICE_FLUSH_MS', 1000, 10, 60_000),
    authCacheMs: int('AUTH_CACHE_MS', 5000, 0, 300_000),
    pullCacheMb: int('PULL_CACHE_MB', 32, 0, 4096),
    shutdownGraceMs: int('SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    startupTimeoutMs: int('STARTUP_TIMEOUT_MS', 30_000, 0, 3_600_000),
    socketAuthTimeoutMs: int('SOCKET_AUTH_TIMEOUT_MS', 10_000, 50, 600_000),
    maxSocketsPerCredential: int('MAX_SOCKETS_PER_CREDENTIAL', 20, 1, 1_000_000),
    uploadDir: str('UPLOAD_DIR') ?? join(dataDir, 'files'),
    uploadMaxBytes: int('UPLOAD_MAX_BYTES', 100 * 2 ** 20, 1, 2 ** 40),
    uploadAllowedTypes: types,
    storageQuotaBytes: int('STORAGE_QUOTA_BYTES', 10 * 2 ** 30, 0, 2 ** 50),
    uploadTtlSeconds: int('UPLOAD_TTL_SECONDS', 24 * 3600, 1, 30 * 24 * 3600),
    bootstrapAdminPassword,
    accessTokenTtlSeconds: int('ACCESS_TOKEN_TTL_SECONDS', 900, 30, 86_400),
    loginMaxFailures: int('LOGIN_MAX_FAILURES', 5, 0, 1000),
    trustProxy,
    hubspot: {
      accessToken: str('HUBSPOT_ACCESS_TOKEN'),
      baseUrl: (url('HUBSPOT_BASE_URL', ['http:', 'https:']) ?? 'https://api.hubapi.com').replace(/\/+$/, ''),
      pollMs: int('HUBSPOT_POLL_MS', 2000, 10, 5000),
      maxAttempts: int('HUBSPOT_MAX_ATTEMPTS', 8, 1, 100),
      retryBaseMs: int('HUBSPOT_RETRY_BASE_MS', 1000, 1, 600_000),
      leaseMs: int('HUBSPOT_LEASE_MS', 60_000, 100, 3_600_000),
      timeoutMs: int('HUBSPOT_TIMEOUT_MS', 20_000, 50, 600_000),
      requestsPerSecond: int('HUBSPOT_REQUESTS_PER_SECOND', 15, 0, 1000),
      worker: bool('HUBSPOT_WORKER', str('HUBSPOT_WORKER'), true),
    },
    metricsToken,
    analyticsFlushMs: int('ANALYTICS_FLUSH_MS', 10_000, 10, 600_000),
    analyticsRetentionDays: int('ANALYTICS_RETENTION_DAYS', 90, 1, 3650),
    alertIntervalMs: int('ALERT_INTERVAL_MS', 15_000, 10, 3_600_000),
  };
  const hubspotToken = config.hubspot.accessToken;
  if (hubspotToken !== undefined && !/^[\x21-\x7e]{8,1000}$/.test(hubspotToken)) problems.push('HUBSPOT_ACCESS_TOKEN must be 8 to 1000 printable characters without spaces');
  if (config.hubspot.leaseMs <= config.hubspot.timeoutMs) problems.push('HUBSPOT_LEASE_MS must be longer than HUBSPOT_TIMEOUT_MS (a claim must outlive its request)');
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
