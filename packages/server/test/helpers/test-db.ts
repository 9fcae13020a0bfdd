import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Db } from '../../src/db/db.js';
import { createPgliteDb } from '../../src/db/pglite.js';
import { createPostgresDb } from '../../src/db/postgres.js';
import { migrate } from '../../src/db/migrate.js';

export type Backend = 'pglite' | 'postgres';

/** The databases every behavioural suite runs on: PGlite always, PostgreSQL when TEST_DATABASE_URL is set. */
export const backends: Backend[] = process.env.TEST_DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];

export interface TestDb {
  db: Db;
  /** The connection string of the scratch database (postgres only). */
  url?: string;
  drop(): Promise<void>;
}

/** A scratch PostgreSQL database for one suite, so suites never collide; dropped afterwards. */
export async function createScratchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const base = process.env.TEST_DATABASE_URL;
  if (!base) throw new Error('TEST_DATABASE_URL is not set');
  const name = `fieldsync_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A migrated, empty database on `backend`. */
export async function openTestDb(backend: Backend, opts: { migrate?: boolean } = {}): Promise<TestDb> {
  if (backend === 'pglite') {
    const db = await createPgliteDb(undefined);
    if (opts.migrate !== false) await migrate(db);
    return { db, drop: () => db.close() };
  }
  const scratch = await createScratchDatabase();
  const db = createPostgresDb(scratch.url, { max: 10 });
  if (opts.migrate !== false) await migrate(db);
  return {
    db,
    url: scratch.url,
    async drop() {
      await db.close();
      await scratch.drop();
    },
  };
}
