import { AsyncResource } from 'node:async_hooks';
import pg from 'pg';
import { DB_DEFAULTS, runTogether, transactionError, type Db, type DbOptions, type Queryable, type QueryOptions, type QueryResult, type TransactionOptions } from './db.js';
import { createKeyedQueue } from './keyed-queue.js';

// bigint (versions, counts) as JS numbers: versions stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/**
 * A Db over a node-postgres pool. Transactions are bounded by `lock_timeout` and
 * `statement_timeout` (set per transaction, so plain queries and other sessions keep the
 * server's settings); transactions of one queue key wait for their turn in this process before
 * they take a connection.
 */
export function createPostgresDb(connectionString: string, options: DbOptions = {}): Db {
  const settings = { ...DB_DEFAULTS, ...options };
  const pool = new pg.Pool({ connectionString, max: settings.max, idleTimeoutMillis: 30_000 });
  // An idle client that loses its connection must not crash the process.
  pool.on('error', () => {});
  // Statements that want a generic plan (QueryOptions.plan) run on connections of their own,
  // opened on first use, where every named statement is planned once for all values.
  let genericPool: pg.Pool | undefined;
  const genericPoolOf = () => {
    if (!genericPool) {
      genericPool = new pg.Pool({ connectionString, max: settings.max, idleTimeoutMillis: 30_000, options: '-c plan_cache_mode=force_generic_plan' });
      genericPool.on('error', () => {});
    }
    return genericPool;
  };
  const queue = createKeyedQueue({ maxWaiting: settings.queueLimit, maxGroup: settings.groupLimit });

  const run = async <T>(client: pg.Pool | pg.PoolClient, sql: string, params?: unknown[], opts?: QueryOptions): Promise<QueryResult<T>> => {
    const result = opts?.prepare
      ? await client.query({ name: opts.prepare, text: sql, values: params as unknown[] })
      : await client.query(sql, params as unknown[]);
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  };

  /** BEGIN and the transaction's bounds, sent as one simple query: one round trip, as BEGIN alone. */
  const begin = (opts: TransactionOptions): string => {
    const lockMs = opts.lockTimeoutMs ?? settings.lockTimeoutMs;
    const statementMs = opts.statementTimeoutMs ?? settings.statementTimeoutMs;
    let sql = 'BEGIN';
    // Whole numbers only reach the SQL text: the config and the callers pass integers.
    if (lockMs > 0) sql += `; SET LOCAL lock_timeout = ${Math.ceil(lockMs)}`;
    if (statementMs > 0) sql += `; SET LOCAL statement_timeout = ${Math.ceil(statementMs)}`;
    return sql;
  };

  const transaction = async <T>(fn: (tx: Queryable) => Promise<T>, opts: TransactionOptions): Promise<T> => {
    const client = await pool.connect();
    const tx: Queryable = {
      query: (sql, params, o) => run(client, sql, params, o),
      exec: async (sql) => void (await client.query(sql)),
    };
    try {
      await client.query(begin(opts));
      const result = await fn(tx);
      await client.query('COMMIT');
      client.release();
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      // A connection whose rollback failed is not reused.
      client.release(error instanceof Error && /terminat|connection/i.test(error.message) ? error : undefined);
      throw transactionError(error);
    }
  };

  return {
    kind: 'postgres',
    query: (sql, params, opts) => run(opts?.prepare && opts.plan === 'generic' ? genericPoolOf() : pool, sql, params, opts),
    exec: async (sql) => void (await pool.query(sql)),
    async transaction(fn, opts = {}) {
      if (opts.queue === undefined) return transaction(fn, opts);
      try {
        if (opts.group) return await queue.runGrouped(opts.queue, AsyncResource.bind(fn), (fns) => transaction((tx) => runTogether(tx, fns), opts));
        return await queue.run(opts.queue, () => transaction(fn, opts));
      } catch (error) {
        throw transactionError(error);
      }
    },
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, queued: queue.waiting() }),
    async close() {
      await Promise.all([pool.end(), genericPool?.end()]);
    },
  };
}
