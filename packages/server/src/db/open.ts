import type { Config } from '../config/config.js';
import type { Db } from './db.js';
import { createPgliteDb } from './pglite.js';
import { createPostgresDb } from './postgres.js';

type DbConfig = Pick<Config, 'databaseUrl' | 'dataDir' | 'databasePoolSize' | 'databaseLockTimeoutMs' | 'databaseStatementTimeoutMs' | 'writeQueueLimit'> & Partial<Pick<Config, 'pgliteSharedBuffersMb' | 'writeGroupLimit'>>;

/** PostgreSQL when DATABASE_URL is set, otherwise embedded PGlite under DATA_DIR. */
export function openDb(config: DbConfig): Promise<Db> {
  return config.databaseUrl
    ? Promise.resolve(
        createPostgresDb(config.databaseUrl, {
          max: config.databasePoolSize,
          lockTimeoutMs: config.databaseLockTimeoutMs,
          statementTimeoutMs: config.databaseStatementTimeoutMs,
          queueLimit: config.writeQueueLimit,
          groupLimit: config.writeGroupLimit,
        }),
      )
    : createPgliteDb(config.dataDir, { queueLimit: config.writeQueueLimit, groupLimit: config.writeGroupLimit, sharedBuffersMb: config.pgliteSharedBuffersMb });
}

/** The read replica of DATABASE_READ_URL (delta pulls go there), or undefined. */
export function openReadDb(config: DbConfig & Pick<Config, 'databaseReadUrl'>): Db | undefined {
  if (!config.databaseReadUrl) return undefined;
  return createPostgresDb(config.databaseReadUrl, {
    max: config.databasePoolSize,
    lockTimeoutMs: config.databaseLockTimeoutMs,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    queueLimit: config.writeQueueLimit,
  });
}

/** Opens a database with `open` and makes it answer once; one that does not is closed again and the error thrown. */
export async function openAnswering(open: () => Db | Promise<Db>): Promise<Db> {
  const db = await open();
  try {
    await db.query('SELECT 1');
    return db;
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
}
