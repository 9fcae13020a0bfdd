/**
 * The physical limits: the same work straight on PostgreSQL through `pg`, no HTTP, no server.
 * Runs in its own process, like the HTTP load, so both share the machine the same way.
 */
import pg from 'pg';
import { csvRow, LIMIT_PHONE_BASE, phone } from '../lib/data.js';
import { serve } from '../lib/ipc.js';
import { checkpoints, closedLoop, sequential, type CheckpointMode } from '../lib/loops.js';
import { pageOf, type PullRow } from '../../src/sync/pull.js';
import { storedPage } from '../lib/stored-page.js';
import { versionSequence, writePushBatch } from '../lib/push-writes.js';
import { wallNow } from '../lib/stats.js';
import { ELIGIBLE_CALLS_SQL } from '../../src/modules/outreach/outreach.repository.js';

pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

interface PullArgs {
  databaseUrl: string;
  tenantId: string;
  userId: string;
  since: number;
  limit: number;
  /** Checkpoints as the HTTP load used them (the statement has no cache: only for symmetry). */
  mode?: CheckpointMode;
}

const pools: pg.Pool[] = [];
const poolOf = (databaseUrl: string, max: number) => {
  const pool = new pg.Pool({ connectionString: databaseUrl, max });
  pool.on('error', () => {});
  pools.push(pool);
  return pool;
};
const closePools = async () => {
  await Promise.all(pools.splice(0).map((p) => p.end()));
};

/** A writer of the push limit: its own phones and, after its first batch, its own records to update. */
function limitWriter(tenantId: string, index: number, size: number, creates: number, phoneBase = LIMIT_PHONE_BASE + index * 100_000) {
  let next = phoneBase;
  const mine: string[] = [];
  let cursor = 0;
  return async (client: pg.PoolClient) => {
    const updateCount = mine.length === 0 ? 0 : size - creates;
    const phones = Array.from({ length: size - updateCount }, () => next++);
    const updates = Array.from({ length: updateCount }, () => mine[cursor++ % mine.length]);
    const deviceId = `limit-${index}`;
    const notes = `visited ${Date.now()} by ${deviceId}`;
    const { created } = await writePushBatch(
      client,
      tenantId,
      deviceId,
      phones.map((n) => ({ firstName: `Field${n}`, phone: phone(n), localId: `l${n}` })),
      updates.map((id) => ({ id, notes })),
    );
    for (const r of created) mine.push(r.id);
    return size;
  };
}

serve({
  /** The server's eligible-calls statement one after the other, round robin over `projectIds` (null: the whole tenant). */
  async eligibleSequential(arg: { databaseUrl: string; tenantId: string; projectIds: (string | null)[]; limit: number; requests: number; warmup: number }) {
    const pool = poolOf(arg.databaseUrl, 1);
    let rows = 0;
    const run = await sequential(arg.requests, arg.warmup, async (i) => {
      // Prepared per connection under the same names, as the server runs them.
      const projectId = arg.projectIds[Math.abs(i) % arg.projectIds.length];
      const result =
        projectId === null
          ? await pool.query({ name: 'eligible-calls', text: ELIGIBLE_CALLS_SQL.tenant, values: [arg.tenantId, arg.limit] })
          : await pool.query({ name: 'eligible-calls-project', text: ELIGIBLE_CALLS_SQL.project, values: [arg.tenantId, arg.limit, projectId] });
      rows += result.rowCount ?? 0;
    });
    await closePools();
    return { ...run, rows };
  },

  /** Delta pulls one after the other: the server's pull SQL. */
  async pullSequential(arg: PullArgs & { requests: number; warmup: number }) {
    const statement = storedPage(arg.tenantId);
    const pool = poolOf(arg.databaseUrl, 1);
    let rows = 0;
    const next = checkpoints(arg.since, arg.mode ?? 'same');
    const run = await sequential(arg.requests, arg.warmup, async () => {
      // Prepared, as the server runs it: the limit is execution, not re-planning.
      const since = next();
      const result = await pool.query<PullRow>({ name: statement.name, text: statement.sql, values: statement.params(since, arg.limit) });
      rows = pageOf(result.rows[0], { since, limit: arg.limit }).count;
    });
    await closePools();
    return { ...run, rows };
  },

  /** Delta pulls from `concurrency` callers over a pool as large as the server's. */
  async pullConcurrent(arg: PullArgs & { concurrency: number; poolMax: number; durationMs: number; warmupMs: number }) {
    const statement = storedPage(arg.tenantId);
    const pool = poolOf(arg.databaseUrl, arg.poolMax);
    const next = checkpoints(arg.since, arg.mode ?? 'same');
    const result = await closedLoop({
      concurrency: arg.concurrency,
      durationMs: arg.durationMs,
      warmupMs: arg.warmupMs,
      op: async () => {
        await pool.query({ name: statement.name, text: statement.sql, values: statement.params(next(), arg.limit) });
        return 1;
      },
    });
    await closePools();
    return result;
  },

  /** Initial sync: every page of the server's pull SQL from version 0. */
  async initialSync(arg: PullArgs & { pageSize: number; reps: number }) {
    const statement = storedPage(arg.tenantId);
    const pool = poolOf(arg.databaseUrl, 1);
    const reps: { records: number; ms: number; pages: number }[] = [];
    for (let r = 0; r < arg.reps; r++) {
      const t0 = wallNow();
      let since = 0;
      let records = 0;
      let pages = 0;
      for (; pages < 10_000; pages++) {
        // Page sizes as the HTTP load uses them (one fewer per repetition).
        const pageSize = arg.pageSize - r;
        const { rows } = await pool.query<PullRow>({ name: statement.name, text: statement.sql, values: statement.params(since, pageSize) });
        const page = pageOf(rows[0], { since, limit: pageSize });
        records += page.count;
        if (!page.hasMore) break;
        since = page.nextVersion;
      }
      reps.push({ records, ms: wallNow() - t0, pages: pages + 1 });
    }
    await closePools();
    return reps;
  },

  /** Batches of `size` written by the minimal transaction, one after the other (phones from `phoneBase` when given). */
  async pushSequential(arg: { databaseUrl: string; tenantId: string; batches: number; warmup: number; size: number; creates: number; phoneBase?: number }) {
    const pool = poolOf(arg.databaseUrl, 1);
    const write = limitWriter(arg.tenantId, 0, arg.size, arg.creates, arg.phoneBase);
    const client = await pool.connect();
    await versionSequence(client);
    const run = await sequential(arg.batches, arg.warmup, () => write(client));
    client.release();
    await closePools();
    return run;
  },

  /** Batches from `concurrency` writers over a pool as large as the server's, round robin over `tenantIds`. */
  async pushConcurrent(arg: {
    databaseUrl: string;
    tenantIds: string[];
    concurrency: number;
    poolMax: number;
    durationMs: number;
    warmupMs: number;
    size: number;
    creates: number;
    firstWriter: number;
  }) {
    const pool = poolOf(arg.databaseUrl, arg.poolMax);
    await versionSequence(pool);
    const writers = Array.from({ length: arg.concurrency }, (_, i) =>
      limitWriter(arg.tenantIds[i % arg.tenantIds.length], arg.firstWriter + i, arg.size, arg.creates),
    );
    const result = await closedLoop({
      concurrency: arg.concurrency,
      durationMs: arg.durationMs,
      warmupMs: arg.warmupMs,
      op: async (i) => {
        const client = await pool.connect();
        try {
          return await writers[i](client);
        } finally {
          client.release();
        }
      },
    });
    await closePools();
    return result;
  },

  /**
   * The import's writes: the same rows into copies of contacts and audit_log (same columns,
   * indexes and generated search text), 1,000 rows a statement, one transaction, one
   * version lock. The copies are dropped afterwards.
   */
  async importRows(arg: { databaseUrl: string; tenantId: string; count: number }) {
    const pool = poolOf(arg.databaseUrl, 1);
    const client = await pool.connect();
    try {
      await client.query('DROP TABLE IF EXISTS bench_limit_contacts, bench_limit_audit');
      await client.query('CREATE TABLE bench_limit_contacts (LIKE contacts INCLUDING ALL)');
      await client.query('CREATE TABLE bench_limit_audit (LIKE audit_log INCLUDING ALL)');
      const t0 = wallNow();
      await client.query('BEGIN');
      const { rows } = await client.query<{ v: number }>('SELECT current_version AS v FROM tenant_versions WHERE tenant_id = $1 FOR UPDATE', [arg.tenantId]);
      let version = rows[0].v;
      for (let start = 0; start < arg.count; start += 1000) {
        const cells = Array.from({ length: Math.min(1000, arg.count - start) }, (_, k) => csvRow(start + k).split(','));
        await client.query(
          `WITH ins AS (
             INSERT INTO bench_limit_contacts (tenant_id, version, first_name, last_name, phone_primary, email, company, created_by_agent)
             SELECT $1, $2::bigint + t.o, t.f, t.l, t.p, t.e, t.c, 'admin'
               FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS t(f, l, p, e, c, o)
             RETURNING id, version, first_name, last_name, phone_primary, email, company)
           INSERT INTO bench_limit_audit (tenant_id, collection, record_id, version, action, changed_fields, changes, agent_code)
           SELECT $1, 'contacts', id, version, 'create', ARRAY['firstName', 'lastName', 'phonePrimary', 'email', 'company'],
                  jsonb_build_object('firstName', jsonb_build_object('to', first_name), 'lastName', jsonb_build_object('to', last_name),
                    'phonePrimary', jsonb_build_object('to', phone_primary), 'email', jsonb_build_object('to', email),
                    'company', jsonb_build_object('to', company)), 'admin'
             FROM ins`,
          [arg.tenantId, version, ...[0, 1, 2, 3, 4].map((c) => cells.map((row) => row[c]))],
        );
        version += cells.length;
      }
      await client.query('UPDATE tenant_versions SET current_version = $2 WHERE tenant_id = $1', [arg.tenantId, version]);
      await client.query('COMMIT');
      const ms = wallNow() - t0;
      return { ms };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await client.query('DROP TABLE IF EXISTS bench_limit_contacts, bench_limit_audit').catch(() => {});
      client.release();
      await closePools();
    }
  },
});
