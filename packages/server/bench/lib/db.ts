import { randomBytes } from 'node:crypto';
import pg from 'pg';

// bigint (versions, counts) as JS numbers, as the server reads them.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** The database the suite creates its own database from. */
export const baseDatabaseUrl = (explicit?: string) =>
  explicit ?? process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The URL of database `name` on the server of `base`. */
export function withDatabase(base: string, name: string): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Creates `fieldsync_bench_<random>` next to the base database; `drop` removes it (forcefully). */
export async function createBenchDatabase(base: string): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `fieldsync_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base, connectionTimeoutMillis: 10_000 });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: withDatabase(base, name),
    async drop() {
      const client = new pg.Client({ connectionString: base, connectionTimeoutMillis: 10_000 });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** PostgreSQL's version string, e.g. "15.20". */
export async function postgresVersion(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ server_version: string }>('SHOW server_version');
  return rows[0].server_version;
}

/** The settings that move the numbers most, for the record. */
export async function postgresSettings(pool: pg.Pool): Promise<Record<string, string>> {
  const names = ['autovacuum', 'shared_buffers', 'synchronous_commit', 'fsync', 'max_connections', 'plan_cache_mode'];
  const { rows } = await pool.query<{ name: string; setting: string; unit: string | null }>('SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)', [names]);
  return Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting} ${r.unit}` : r.setting]));
}
