import type { Config } from '../config/config.js';
import type { Db } from './db.js';
import { createPgliteDb } from './pglite.js';
import { createPostgresDb } from './postgres.js';

type DbConfig = Pick<Config, 'databaseUrl' | 'dataDir' | 'databasePoolSize' | 'databaseLockTimeoutMs' | 'databaseStatementTimeoutMs' | 'writeQueueLimit'>;

/** PostgreSQL when DATABASE_URL is set, otherwise embedded PGlite under DATA_DIR. */
export function openDb(config: DbConfig): Promise<Db> {
  return config.databaseUrl
    ? Promise.resolve(
        createPostgresDb(config.databaseUrl, {
          max: config.databasePoolSize,
          lockTimeoutMs: config.databaseLockTimeoutMs,
          statementTimeoutMs: config.databaseStatementTimeoutMs,
          queueLimit: config.writeQueueLimit,
        }),
      )
    : createPgliteDb(config.dataDir, { queueLimit: config.writeQueueLimit });
}
