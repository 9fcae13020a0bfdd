import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withoutConfig } from '../src/config/config.js';
import { createPgliteDb, embeddedDatabaseExists, prepareEmbeddedInChild } from '../src/db/pglite.js';
import { migrate } from '../src/db/migrate.js';

/*
 * A new embedded database is created and migrated in a child process (issue 16, idle memory):
 * the server then opens a database that is ready, and a child that cannot do it costs nothing
 * but the attempt.
 */

const root = mkdtempSync(join(tmpdir(), 'fieldsync-prepare-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('preparing a new embedded database in a child process', () => {
  it('creates and migrates the database of DATA_DIR, and the server finds nothing left to migrate', async () => {
    const dataDir = join(root, 'new');
    expect(embeddedDatabaseExists(dataDir)).toBe(false);
    expect(await prepareEmbeddedInChild({ ...withoutConfig(process.env), DATA_DIR: dataDir })).toBe(true);
    expect(embeddedDatabaseExists(dataDir)).toBe(true);
    const db = await createPgliteDb(dataDir);
    try {
      expect(await migrate(db)).toEqual([]);
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      expect(rows[0].n).toBeGreaterThan(5);
    } finally {
      await db.close();
    }
  }, 120_000);

  it('answers false when it cannot, and leaves no database claimed', async () => {
    const notADirectory = join(root, 'a-file');
    writeFileSync(notADirectory, 'not a directory');
    expect(await prepareEmbeddedInChild({ ...withoutConfig(process.env), DATA_DIR: notADirectory })).toBe(false);
    expect(embeddedDatabaseExists(notADirectory)).toBe(false);
  }, 60_000);
});
