/** The database port: all SQL goes through `query`, atomic work through `transaction`. */
export interface Queryable {
  /**
   * Runs one parameterised statement. `opts.prepare` names it, so PostgreSQL plans it once per
   * connection (hot statements whose planning costs more than their execution: the pull).
   */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], opts?: { prepare?: string }): Promise<QueryResult<T>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Db extends Queryable {
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Which engine this is: the SQL is the same, some operations (streaming) differ. */
  readonly kind: 'pglite' | 'postgres';
  /** Connections in use / total, for metrics (PGlite reports 0/1 or 1/1). */
  poolStats(): { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

/** Postgres error codes the services react to. */
export const PgCodes = {
  uniqueViolation: '23505',
  foreignKeyViolation: '23503',
  invalidTextRepresentation: '22P02',
} as const;

export function pgErrorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}
