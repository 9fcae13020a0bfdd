import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { closed, freePort, ROOT, waitForHealth } from '../../src/lib/child-server.js';
import { stopChild, tail, track } from '../lib/proc.js';
import { metric, type BenchContext, type Scenario } from '../lib/types.js';

/**
 * How long an idle server is left alone before its memory is read. V8 gives back the young
 * generation a busy start-up grew (about 40 MB) once it sees the process idle: 20 to 30 s in
 * when measured by hand.
 */
const IDLE_MS = 60_000;

const run = promisify(execFile);

/** Resident memory of a process (Linux /proc), bytes. */
function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

/**
 * The production server, as `npm start` runs it (the compiled build, no inspector, no TypeScript
 * loader), started on `env`, left idle, then read: its RSS when ready and after `IDLE_MS`.
 */
async function idleServer(env: Record<string, string | undefined>): Promise<{ readyMs: number; atReady: number; idle: number }> {
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', JWT_SECRET: randomBytes(48).toString('base64url'), ...env };
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete childEnv[key];
  const started = Date.now();
  const child = track(spawn(process.execPath, ['packages/server/bin/start.js'], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] }));
  const exited = closed(child);
  const output = tail(child.stderr);
  tail(child.stdout);
  try {
    await waitForHealth(`http://127.0.0.1:${port}`, { exited, output, timeoutMs: 120_000 });
    const readyMs = Date.now() - started;
    const atReady = rssOf(child.pid!);
    await sleep(IDLE_MS);
    return { readyMs, atReady, idle: rssOf(child.pid!) };
  } finally {
    await stopChild(child, 'SIGTERM', 20_000);
  }
}

const MB = 2 ** 20;

/**
 * SPEC §12 / issue 16: the resident memory of an idle production server, on PostgreSQL (the
 * bench database with its data set) and on the embedded database (a new data directory, then a
 * restart on it). Built first with `npm run build`, as a deployment is. No physical limit: a bare
 * Node.js process (`node -e` waiting) is reported beside it for scale.
 */
export const idleMemory: Scenario = {
  name: 'idle-memory',
  title: 'resident memory of an idle compiled server, on PostgreSQL and on the embedded database',
  needsDataSet: false,
  budgetMs: () => 420_000,
  async run(ctx: BenchContext) {
    await run(process.execPath, ['scripts/build.mjs'], { cwd: ROOT });
    const dataDir = mkdtempSync(join(tmpdir(), 'fieldsync-bench-idle-'));
    try {
      const bare = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600_000)'], { stdio: 'ignore' });
      // One at a time: a server starting beside another would delay V8's idle collection there.
      ctx.log(`idle-memory: a server on PostgreSQL, idle ${IDLE_MS / 1000} s`);
      const postgres = await idleServer({ DATABASE_URL: ctx.databaseUrl, DATA_DIR: join(dataDir, 'pg'), REDIS_URL: undefined });
      ctx.log('idle-memory: a server on a new embedded database');
      const embeddedNew = await idleServer({ DATABASE_URL: undefined, DATA_DIR: join(dataDir, 'embedded'), REDIS_URL: undefined });
      ctx.log('idle-memory: the embedded server again, on its existing data directory');
      const embedded = await idleServer({ DATABASE_URL: undefined, DATA_DIR: join(dataDir, 'embedded'), REDIS_URL: undefined });
      const bareRss = rssOf(bare.pid!);
      bare.kill();
      const mb = (bytes: number) => Math.round((bytes / MB) * 10) / 10;
      const limit = { limit: mb(bareRss), limitWhat: 'a bare Node.js process' };
      return {
        metrics: [
          metric({ key: 'idle-rss-postgres', label: 'idle RSS on PostgreSQL', unit: 'MB', value: mb(postgres.idle), better: 'lower', target: { op: '<=', value: 120 }, ...limit }),
          metric({ key: 'idle-rss-embedded-new', label: 'idle RSS on the embedded database, first start (new data directory)', unit: 'MB', value: mb(embeddedNew.idle), better: 'lower', target: { op: '<=', value: 250 }, ...limit }),
          metric({ key: 'idle-rss-embedded', label: 'idle RSS on the embedded database, restarted', unit: 'MB', value: mb(embedded.idle), better: 'lower', target: { op: '<=', value: 250 }, ...limit }),
          metric({ key: 'ready-rss-postgres', label: 'RSS on PostgreSQL when ready', unit: 'MB', value: mb(postgres.atReady), better: 'lower' }),
          metric({ key: 'ready-rss-embedded', label: 'RSS on the embedded database when ready (restart)', unit: 'MB', value: mb(embedded.atReady), better: 'lower' }),
          metric({ key: 'ready-ms-embedded-new', label: 'start-up on a new embedded database (initdb and migrations)', unit: 'ms', value: embeddedNew.readyMs, better: 'lower' }),
          metric({ key: 'ready-ms-embedded', label: 'start-up on an existing embedded database', unit: 'ms', value: embedded.readyMs, better: 'lower' }),
          metric({ key: 'ready-ms-postgres', label: 'start-up on PostgreSQL', unit: 'ms', value: postgres.readyMs, better: 'lower' }),
        ],
      };
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
};
