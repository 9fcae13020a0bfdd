import { AppError } from '../errors.js';
import { QueueFullError } from './keyed-queue.js';

/** The database port: all SQL goes through `query`, atomic work through `transaction`. */
export interface Queryable {
  /**
   * Runs one parameterised statement. `opts.prepare` names it, so PostgreSQL plans it once per
   * connection (hot statements whose planning costs more than their execution: the pull).
   */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], opts?: QueryOptions): Promise<QueryResult<T>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/** How one statement runs. */
export interface QueryOptions {
  /**
   * Names the statement, so PostgreSQL plans it once per connection (hot statements whose
   * planning costs more than their execution: the pull).
   */
  prepare?: string;
  /**
   * With `prepare`, outside a transaction: plan it once for all parameter values (a generic
   * plan) from its first run. PostgreSQL otherwise plans a named statement afresh for its first
   * five runs on each connection, which for the pull's union costs several times its execution
   * (the tail of every new connection's first pulls). Only for statements whose best plan does
   * not depend on the values.
   */
  plan?: 'generic';
}

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

/** How one transaction runs; the bounds default to the Db's (`DbOptions`). */
export interface TransactionOptions {
  /**
   * Transactions with the same key run one at a time in this process, first come first served,
   * and wait for their turn without holding a connection (a tenant's writes: docs/architecture.md).
   */
  queue?: string;
  /**
   * With `queue`: transactions of the queue that wait for their turn together share one
   * database transaction and one commit (group commit), each under a savepoint of its own, in
   * arrival order. One that throws is rolled back to its savepoint and fails alone; each caller
   * is answered after the shared commit. A lone transaction runs as without `group`. Each
   * function runs in its caller's async context (AsyncResource.bind), whoever's turn runs it.
   */
  group?: boolean;
  /** `lock_timeout` of this transaction in ms; 0 leaves the server's setting. */
  lockTimeoutMs?: number;
  /** `statement_timeout` of this transaction in ms; 0 leaves the server's setting. */
  statementTimeoutMs?: number;
}

/** How a Db is opened (from DATABASE_POOL_SIZE, DATABASE_LOCK_TIMEOUT_MS, ... of the config). */
export interface DbOptions {
  /** PostgreSQL connections in the pool (PGlite has one). */
  max?: number;
  /** Default `lock_timeout` of a transaction, ms (0: the server's). PostgreSQL only. */
  lockTimeoutMs?: number;
  /** Default `statement_timeout` of a transaction, ms (0: the server's). PostgreSQL only. */
  statementTimeoutMs?: number;
  /** Transactions that may wait in one key's queue; one more is refused with a 503. */
  queueLimit?: number;
  /** Most transactions of one queue that share a database transaction (`TransactionOptions.group`). */
  groupLimit?: number;
}

export const DB_DEFAULTS = { max: 10, lockTimeoutMs: 10_000, statementTimeoutMs: 30_000, queueLimit: 100, groupLimit: 16 } as const;

/**
 * Runs `fns` one after the other in the open transaction `tx`, each under a savepoint when
 * there are several (`TransactionOptions.group`): a function that throws is rolled back to
 * its savepoint and its error (as `transactionError` maps it) is its result; the others go
 * on. A lone function runs without a savepoint and its error fails the transaction. A
 * savepoint that cannot be rolled back to (a lost connection) fails the transaction.
 */
export async function runTogether<T>(tx: Queryable, fns: ((tx: Queryable) => Promise<T>)[]): Promise<PromiseSettledResult<T>[]> {
  if (fns.length === 1) return [{ status: 'fulfilled', value: await fns[0](tx) }];
  const results: PromiseSettledResult<T>[] = [];
  for (const fn of fns) {
    await tx.query('SAVEPOINT fieldsync_group');
    try {
      const value = await fn(tx);
      await tx.query('RELEASE SAVEPOINT fieldsync_group');
      results.push({ status: 'fulfilled', value });
    } catch (error) {
      await tx.query('ROLLBACK TO SAVEPOINT fieldsync_group');
      await tx.query('RELEASE SAVEPOINT fieldsync_group');
      results.push({ status: 'rejected', reason: transactionError(error) });
    }
  }
  return results;
}

export interface Db extends Queryable {
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. A
   * transaction refused by its queue, or stopped by its lock or statement timeout, throws a
   * 503 `UNAVAILABLE` AppError with `Retry-After` (`transactionError`), nothing of it written.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Which engine this is: the SQL is the same, some operations (streaming) differ. */
  readonly kind: 'pglite' | 'postgres';
  /**
   * Connections open / idle / requests waiting for one, and transactions waiting in a queue
   * for their turn (they hold no connection). PGlite reports its one connection as idle.
   */
  poolStats(): { total: number; idle: number; waiting: number; queued: number };
  close(): Promise<void>;
}

/** Postgres error codes the services react to. */
export const PgCodes = {
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  invalidTextRepresentation: '22P02',
  /** `lock_timeout` ran out (or NOWAIT found the lock taken). */
  lockNotAvailable: '55P03',
  /** `statement_timeout` ran out, or the statement was cancelled. */
  queryCanceled: '57014',
} as const;

export function pgErrorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

/**
 * A transaction's failure as callers see it: the queue refusing it, or a lock or statement
 * timeout, becomes a retryable 503 (the work was fine, the database was busy); anything else
 * is thrown as it came.
 */
export function transactionError(error: unknown): unknown {
  if (error instanceof QueueFullError) {
    // A full queue is a backlog of whole transactions: come back later than after a timeout.
    return new AppError('UNAVAILABLE', 'The database is busy: too many writes are waiting for the same lock; retry shortly', undefined, {
      'retry-after': '5',
    });
  }
  const code = pgErrorCode(error);
  if (code === PgCodes.lockNotAvailable || code === PgCodes.queryCanceled) {
    const what = code === PgCodes.lockNotAvailable ? 'waited too long for a lock' : 'took too long';
    const mapped = new AppError('UNAVAILABLE', `The database is busy: the transaction ${what} and was rolled back; retry shortly`, undefined, {
      'retry-after': '2',
    });
    mapped.cause = error;
    return mapped;
  }
  return error;
}
