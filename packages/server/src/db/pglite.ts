import { AsyncResource } from 'node:async_hooks';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { DB_DEFAULTS, runTogether, transactionError, type Db, type DbOptions, type Queryable, type QueryResult } from './db.js';
import { createKeyedQueue } from './keyed-queue.js';

/** What the embedded database is given beyond its data directory. */
export interface PgliteOptions extends Pick<DbOptions, 'queueLimit' | 'groupLimit'> {
  /**
   * PostgreSQL's buffer pool, in MB. It lives in the WASM memory, which PostgreSQL touches whole
   * when it starts and which never shrinks: each MB of it is a MB of the process's RSS for good.
   * The data files are on the host's file system, so the operating system's page cache still
   * holds what the pool does not: 8 MB measured no slower than 128 MB on 100,000 rows (default 8).
   */
  sharedBuffersMb?: number;
}

/** PGlite and its trigram extension, loaded when an embedded database is opened: a server on PostgreSQL never holds them. */
async function loadPglite(sharedBuffersMb: number) {
  const [{ PGlite: Engine, types }, { pg_trgm }] = await Promise.all([import('@electric-sql/pglite'), import('@electric-sql/pglite/contrib/pg_trgm')]);
  return {
    Engine,
    options: {
      extensions: { pg_trgm },
      parsers: { [types.INT8]: (v: string) => Number(v) },
      startParams: [...Engine.defaultStartParams, '-c', `shared_buffers=${sharedBuffersMb}MB`],
    },
  };
}

/** Where the embedded database of DATA_DIR lives. */
export const embeddedDatabaseDir = (dataDir: string) => join(dataDir, 'pglite');

/** Whether DATA_DIR holds an embedded database (PostgreSQL's initdb has run there). */
export const embeddedDatabaseExists = (dataDir: string) => existsSync(join(embeddedDatabaseDir(dataDir), 'PG_VERSION'));

/**
 * Creates and migrates a new embedded database in a child process (prepare-embedded), so that
 * what initdb and the first migrations leave behind goes with the child. Resolves true when the
 * child succeeded; false otherwise, and the caller opens the database itself, which then fails
 * or succeeds with its usual errors (the child is a saving of memory, never a new way to fail).
 * From the sources (tsx) the child runs the TypeScript entry, from the compiled build its bundle.
 */
export function prepareEmbeddedInChild(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const fromSources = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(fromSources ? './prepare-embedded.ts' : './prepare-embedded.js', import.meta.url));
  const args = fromSources ? ['--import', import.meta.resolve('tsx'), entry] : [entry];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env, stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

/**
 * A Db over embedded PGlite: file-backed under `dataDir/pglite`, or in memory when `dataDir`
 * is undefined (tests). One process may open a data directory at a time; a lock file says who.
 * Of `options`, only the queue limit applies: one connection has no pool and never waits for
 * a lock another session holds, and PGlite accepts `statement_timeout` but does not enforce it.
 */
export async function createPgliteDb(dataDir: string | undefined, options: PgliteOptions = {}): Promise<Db> {
  const queue = createKeyedQueue({ maxWaiting: options.queueLimit ?? DB_DEFAULTS.queueLimit, maxGroup: options.groupLimit ?? DB_DEFAULTS.groupLimit });
  let release = () => {};
  const sharedBuffersMb = options.sharedBuffersMb ?? 8;
  let pg: PGlite;
  if (dataDir === undefined) {
    const { Engine, options: engineOptions } = await loadPglite(sharedBuffersMb);
    pg = await Engine.create(engineOptions);
  } else {
    mkdirSync(dataDir, { recursive: true });
    release = lockDataDir(dataDir);
    try {
      const { Engine, options: engineOptions } = await loadPglite(sharedBuffersMb);
      pg = await Engine.create({ dataDir: embeddedDatabaseDir(dataDir), ...engineOptions });
    } catch (error) {
      release();
      throw error;
    }
  }

  const wrap = (q: Pick<PGlite, 'query' | 'exec'>): Queryable => ({
    exec: async (sql) => void (await q.exec(sql)),
    async query<T>(sql: string, params?: unknown[]): Promise<QueryResult<T>> {
      // PGlite runs each query synchronously in WASM: yield to the event loop first, or a long
      // import would starve timers, sockets and signals until it ends.
      await new Promise((resolve) => setImmediate(resolve));
      const result = await q.query<T>(sql, params);
      // PGlite reports affectedRows 0 for a SELECT: count its rows, as pg does.
      return { rows: result.rows, rowCount: result.fields.length > 0 ? result.rows.length : (result.affectedRows ?? 0) };
    },
  });

  return {
    kind: 'pglite',
    ...wrap(pg),
    // PGlite runs one transaction at a time; its transaction() queues the others. A queue key
    // still orders its transactions and bounds how many wait, as on PostgreSQL.
    async transaction(fn, opts = {}) {
      const run = () => pg.transaction((tx) => fn(wrap(tx)));
      if (opts.queue === undefined) return run();
      try {
        if (opts.group) return await queue.runGrouped(opts.queue, AsyncResource.bind(fn), (fns) => pg.transaction((tx) => runTogether(wrap(tx), fns)));
        return await queue.run(opts.queue, run);
      } catch (error) {
        throw transactionError(error);
      }
    },
    poolStats: () => ({ total: 1, idle: 1, waiting: 0, queued: queue.waiting() }),
    async close() {
      await pg.close();
      release();
    },
  };
}

/** Refuses to open a data directory another live process holds (two writers would corrupt it). */
function lockDataDir(dataDir: string): () => void {
  const path = join(dataDir, 'fieldsync.lock');
  const tryCreate = () => {
    const fd = openSync(path, 'wx');
    writeFileSync(fd, String(process.pid));
    closeSync(fd);
  };
  try {
    tryCreate();
  } catch {
    const holder = Number(readFileSync(path, 'utf8'));
    if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
      throw new Error(
        `The data directory ${dataDir} is in use by process ${holder}. Stop it first, or use the admin API.`,
      );
    }
    unlinkSync(path); // stale lock of a dead process (e.g. after kill -9)
    tryCreate();
  }
  return () => {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
