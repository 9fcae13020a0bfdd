import { FieldsyncError } from './errors.js';
import type { Store, StoreBatch, StoreSnapshot, StoredRecord } from './store.js';
import type { OutboxEntry } from './types.js';

/** Runs one SQL statement with positional `?` parameters; `rows` are the result rows as objects (empty for writes). */
export interface SqlRunner {
  execute(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

/**
 * The few things `SqliteStore` needs from a SQLite library: statements, and a transaction that
 * commits when `fn` resolves and rolls back when it throws. Adapters for op-sqlite,
 * expo-sqlite, sql.js or better-sqlite3 are a few lines (docs/build-your-app.md).
 *
 * @example
 * // expo-sqlite
 * const db = await SQLite.openDatabaseAsync('fieldsync.db');
 * const executor: SqlExecutor = {
 *   execute: async (sql, params = []) => ({ rows: await db.getAllAsync(sql, params as SQLite.SQLiteBindParams) }),
 *   transaction: (fn) => {
 *     let result: any;
 *     return db.withExclusiveTransactionAsync(async (tx) => {
 *       result = await fn({ execute: async (sql, params = []) => ({ rows: await tx.getAllAsync(sql, params as SQLite.SQLiteBindParams) }) });
 *     }).then(() => result);
 *   },
 * };
 */
export interface SqlExecutor extends SqlRunner {
  transaction<T>(fn: (tx: SqlRunner) => Promise<T>): Promise<T>;
}

export interface SqliteStoreOptions {
  /** Prefix of the store's three tables (`fieldsync_`): one database can hold several stores. */
  tablePrefix?: string;
}

/**
 * A store on SQLite through a minimal async executor, for React Native (op-sqlite,
 * expo-sqlite), Capacitor, Electron or Node.js: records, outbox and facts in three tables,
 * each batch in one transaction (applied whole or not at all). The tables are created on
 * `load` when missing.
 *
 * @example
 * import { open } from '@op-engineering/op-sqlite';
 * import { createClient, SqliteStore } from '@fieldsync/client';
 *
 * const db = open({ name: 'fieldsync.db' });
 * const store = new SqliteStore({
 *   execute: async (sql, params) => ({ rows: (await db.execute(sql, params as any[])).rows }),
 *   transaction: (fn) => { let out: any; return db.transaction(async (tx) => { out = await fn({ execute: async (sql, params) => ({ rows: (await tx.execute(sql, params as any[])).rows }) }); }).then(() => out); },
 * });
 * const client = await createClient({ url, token, deviceId, store });
 */
export class SqliteStore implements Store {
  private readonly records: string;
  private readonly outbox: string;
  private readonly meta: string;
  private loaded = false;

  constructor(
    private readonly db: SqlExecutor,
    opts: SqliteStoreOptions = {},
  ) {
    const prefix = opts.tablePrefix ?? 'fieldsync_';
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,40}$/.test(prefix)) throw new FieldsyncError('BAD_REQUEST', 'tablePrefix must be letters, digits and _ (a SQL identifier)');
    if (typeof db?.execute !== 'function' || typeof db?.transaction !== 'function') {
      throw new FieldsyncError('BAD_REQUEST', 'SqliteStore needs an executor with execute(sql, params) and transaction(fn)');
    }
    this.records = `${prefix}records`;
    this.outbox = `${prefix}outbox`;
    this.meta = `${prefix}meta`;
  }

  async load(): Promise<StoreSnapshot> {
    try {
      return await this.db.transaction(async (tx) => {
        await tx.execute(`CREATE TABLE IF NOT EXISTS ${this.records} (collection TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (collection, id))`);
        await tx.execute(`CREATE TABLE IF NOT EXISTS ${this.outbox} (seq INTEGER PRIMARY KEY AUTOINCREMENT, change_id TEXT NOT NULL UNIQUE, entry TEXT NOT NULL)`);
        await tx.execute(`CREATE TABLE IF NOT EXISTS ${this.meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
        const records = await tx.execute(`SELECT collection, id, data FROM ${this.records}`);
        const outbox = await tx.execute(`SELECT entry FROM ${this.outbox} ORDER BY seq`);
        const meta = await tx.execute(`SELECT key, value FROM ${this.meta}`);
        const snapshot: StoreSnapshot = {
          checkpoint: 0,
          records: records.rows.map((r): StoredRecord => ({ collection: String(r.collection), id: String(r.id), data: JSON.parse(String(r.data)) })),
          outbox: outbox.rows.map((r) => JSON.parse(String(r.entry)) as OutboxEntry),
          meta: {},
        };
        for (const { key, value } of meta.rows) {
          if (key === 'checkpoint') snapshot.checkpoint = JSON.parse(String(value));
          else if (typeof key === 'string' && key.startsWith('meta:')) snapshot.meta[key.slice(5)] = JSON.parse(String(value));
        }
        this.loaded = true;
        return snapshot;
      });
    } catch (cause) {
      if (cause instanceof FieldsyncError) throw cause;
      throw new FieldsyncError('STORE', `Cannot load the SQLite store: ${(cause as Error)?.message ?? cause}`, { cause });
    }
  }

  async write(batch: StoreBatch): Promise<void> {
    if (!this.loaded) throw new FieldsyncError('STORE', 'SqliteStore.write before load');
    const setMeta = `INSERT INTO ${this.meta} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
    try {
      await this.db.transaction(async (tx) => {
        if (batch.checkpoint !== undefined) await tx.execute(setMeta, ['checkpoint', JSON.stringify(batch.checkpoint)]);
        for (const r of batch.put ?? []) {
          await tx.execute(
            `INSERT INTO ${this.records} (collection, id, data) VALUES (?, ?, ?) ON CONFLICT (collection, id) DO UPDATE SET data = excluded.data`,
            [r.collection, r.id, JSON.stringify(r.data)],
          );
        }
        for (const entry of batch.enqueue ?? []) {
          await tx.execute(`INSERT INTO ${this.outbox} (change_id, entry) VALUES (?, ?) ON CONFLICT (change_id) DO UPDATE SET entry = excluded.entry`, [
            entry.changeId,
            JSON.stringify(entry),
          ]);
        }
        for (const changeId of batch.dequeue ?? []) await tx.execute(`DELETE FROM ${this.outbox} WHERE change_id = ?`, [changeId]);
        for (const { changeId, baseVersion } of batch.rebase ?? []) {
          const { rows } = await tx.execute(`SELECT entry FROM ${this.outbox} WHERE change_id = ?`, [changeId]);
          if (rows.length === 0) continue;
          const entry = { ...(JSON.parse(String(rows[0].entry)) as OutboxEntry), baseVersion };
          await tx.execute(`UPDATE ${this.outbox} SET entry = ? WHERE change_id = ?`, [JSON.stringify(entry), changeId]);
        }
        for (const [key, value] of Object.entries(batch.meta ?? {})) await tx.execute(setMeta, [`meta:${key}`, JSON.stringify(value)]);
      });
    } catch (cause) {
      throw new FieldsyncError('STORE', `SQLite write failed: ${(cause as Error)?.message ?? cause}`, { cause });
    }
  }

  /** The executor belongs to the app (it may share the database): closing the store does not close it. */
  async close(): Promise<void> {
    this.loaded = false;
  }
}
