import { pgErrorCode } from './db/db.js';

/** sysexits(3): the configuration is wrong (fix a setting). */
export const EX_CONFIG = 78;
/** sysexits(3): something the server needs is not there (start it, free it). */
export const EX_UNAVAILABLE = 69;

/** A start-up problem said as one sentence with its fix, and the exit code it ends with. */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode: typeof EX_CONFIG | typeof EX_UNAVAILABLE,
    /** Worth trying again while the start-up deadline lasts (a server still starting). */
    readonly transient = false,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

/** Where a URL points, without its password: `host:port/db`. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return 'the configured address';
  }
}

const TRANSIENT_NET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE']);

/** Reads a Node network error's code, also from an AggregateError (pg tries every address). */
function netCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; errors?: unknown[] };
  if (typeof e?.code === 'string') return e.code;
  if (Array.isArray(e?.errors)) for (const inner of e.errors) if (typeof (inner as { code?: unknown })?.code === 'string') return (inner as { code: string }).code;
  return undefined;
}

/** What went wrong opening the database, as a StartupError. */
export function databaseProblem(error: unknown, databaseUrl: string | undefined, dataDir: string): StartupError {
  if (error instanceof StartupError) return error;
  const message = (error as Error)?.message ?? String(error);
  if (!databaseUrl) {
    if (/in use by process/.test(message)) {
      return new StartupError(`${message.replace(/\.? Stop it first.*$/, '')}: stop that process, or set DATA_DIR to another directory.`, EX_UNAVAILABLE);
    }
    if (/EACCES|EPERM|EROFS/.test(message) || /EACCES|EPERM|EROFS/.test(netCode(error) ?? '')) {
      return new StartupError(`The data directory ${dataDir} cannot be written: give this user write access, or set DATA_DIR to another directory.`, EX_CONFIG);
    }
    return new StartupError(`The embedded database in ${dataDir} could not be opened (${message}): check DATA_DIR.`, EX_UNAVAILABLE);
  }
  const where = describeUrl(databaseUrl);
  const db = (() => {
    try {
      return decodeURIComponent(new URL(databaseUrl).pathname.slice(1)) || 'postgres';
    } catch {
      return 'the database';
    }
  })();
  switch (pgErrorCode(error)) {
    case '3D000':
      return new StartupError(`The database "${db}" does not exist on ${where.replace(/\/.*$/, '')}: create it (createdb ${db}), or fix DATABASE_URL.`, EX_CONFIG);
    case '28P01':
    case '28000':
      return new StartupError(`PostgreSQL at ${where} refused the login: check the user and password in DATABASE_URL.`, EX_CONFIG);
    case '57P03':
      return new StartupError(`PostgreSQL at ${where} is starting up and not accepting connections yet.`, EX_UNAVAILABLE, true);
    case '53300':
      return new StartupError(`PostgreSQL at ${where} has no connection slots left: raise max_connections or lower DATABASE_POOL_SIZE.`, EX_UNAVAILABLE, true);
  }
  const code = netCode(error);
  if (code === 'ENOTFOUND') return new StartupError(`The database host of DATABASE_URL (${where}) is not known: fix the host name.`, EX_CONFIG);
  if (code && TRANSIENT_NET.has(code)) {
    return new StartupError(`PostgreSQL at ${where} cannot be reached (${code}): start it, or fix DATABASE_URL.`, EX_UNAVAILABLE, true);
  }
  if (/self.signed|certificate|SSL/i.test(message)) {
    return new StartupError(`PostgreSQL at ${where} refused the connection's TLS settings (${message}): fix sslmode in DATABASE_URL.`, EX_CONFIG);
  }
  return new StartupError(`PostgreSQL at ${where} could not be used: ${message}.`, EX_UNAVAILABLE, true);
}

/** What went wrong reaching Redis, as a StartupError. */
export function redisProblem(error: unknown, redisUrl: string): StartupError {
  const where = describeUrl(redisUrl);
  const message = (error as Error)?.message ?? String(error);
  if (/NOAUTH|WRONGPASS|invalid password/i.test(message)) {
    return new StartupError(`Redis at ${where} refused the login: check the password in REDIS_URL.`, EX_CONFIG);
  }
  if (netCode(error) === 'ENOTFOUND') return new StartupError(`The Redis host of REDIS_URL (${where}) is not known: fix the host name.`, EX_CONFIG);
  return new StartupError(
    `Redis at ${where} cannot be reached (${netCode(error) ?? message}): start it, or fix REDIS_URL (unset it to run a single instance without Redis).`,
    EX_UNAVAILABLE,
    true,
  );
}

/** What went wrong listening on the port. */
export function listenProblem(error: unknown, host: string, port: number): StartupError {
  const code = netCode(error);
  if (code === 'EADDRINUSE') return new StartupError(`Port ${port} on ${host} is in use: stop the other process, or set PORT to a free port.`, EX_UNAVAILABLE);
  if (code === 'EACCES') return new StartupError(`Port ${port} on ${host} needs privileges this user lacks: set PORT above 1023, or put a proxy in front.`, EX_CONFIG);
  if (code === 'EADDRNOTAVAIL') return new StartupError(`HOST ${host} is not an address of this machine: fix HOST (0.0.0.0 listens on every address).`, EX_CONFIG);
  return new StartupError(`Fieldsync could not listen on ${host}:${port}: ${(error as Error)?.message ?? error}.`, EX_UNAVAILABLE);
}

/**
 * Runs `attempt` until it works, retrying transient problems with exponential backoff (250 ms
 * doubling to 5 s) until `timeoutMs` have passed; `explain` turns a failure into a
 * StartupError. `onRetry` hears each wait (to log it).
 */
export async function withStartupRetry<T>(
  attempt: () => Promise<T>,
  explain: (error: unknown) => StartupError,
  opts: { timeoutMs: number; onRetry?: (problem: StartupError, delayMs: number) => void; sleep?: (ms: number) => Promise<void> },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await attempt();
    } catch (error) {
      const problem = explain(error);
      const left = deadline - Date.now();
      if (!problem.transient || left <= 0) {
        if (problem.transient) problem.message = `${problem.message} (gave up after ${Math.round(opts.timeoutMs / 1000)} s)`;
        throw problem;
      }
      const wait = Math.min(delay, left);
      opts.onRetry?.(problem, wait);
      await sleep(wait);
    }
  }
}
