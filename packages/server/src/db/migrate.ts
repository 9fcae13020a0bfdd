import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));
// An arbitrary constant: every instance takes the same advisory lock while migrating.
const MIGRATION_LOCK_ID = 7_240_311;

/**
 * Applies the forward-only `.sql` migrations not yet recorded in `schema_migrations`, each in
 * its own transaction under an advisory lock, so instances starting together do not race:
 * the second waits, then finds the file recorded and skips it.
 */
export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = readdirSync(dir).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  const applied: string[] = [];
  for (const file of files) {
    // Unbounded: waiting for another instance's migration is the point of the lock, and a
    // migration may rewrite a large table.
    const ran = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID]);
      await tx.exec(
        'CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      const done = await tx.query('SELECT 1 FROM schema_migrations WHERE name = $1', [file]);
      if (done.rowCount > 0) return false;
      try {
        await tx.exec(readFileSync(dir + file, 'utf8'));
      } catch (error) {
        throw new Error(`Migration ${file} failed: ${(error as Error).message}`, { cause: error });
      }
      await tx.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file]);
      return true;
    }, { lockTimeoutMs: 0, statementTimeoutMs: 0 });
    if (ran) applied.push(file);
  }
  return applied;
}
