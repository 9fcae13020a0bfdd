/**
 * The benchmark suite (SPEC §12): `npm run bench [-- --quick] [--only a,b] [--database-url URL] [--profile]`.
 *
 * Creates its own database next to BENCH_DATABASE_URL / TEST_DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/postgres), starts the real server on it, generates the
 * data set through the API, runs every scenario with load from separate processes, and writes
 * results/<date>.json and RESULTS.md. Whatever happens, it stops its processes and drops its
 * database.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { baseDatabaseUrl, createBenchDatabase, postgresSettings, postgresVersion } from './lib/db.js';
import { HttpClient } from './lib/http.js';
import { killAllChildren } from './lib/proc.js';
import { within } from '../src/lib/child-server.js';
import { connectInspector, memoryOf, phaseProfiler, profilerOf, type PhaseProfiler } from './lib/inspector.js';
import { summarizeProfile } from './lib/profile.js';
import { compare, markdown, previousRun, writeResults, type RunResult } from './lib/report.js';
import { startFieldsync, type RunningServer } from './lib/server.js';
import { NotAvailable, type Agent, type BenchContext, type Scale, type Scenario, type ScenarioResult, type Tenant } from './lib/types.js';
import { scenarios } from './scenarios/index.js';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const PROFILE_DIR = join(BENCH_DIR, 'profiles');

const SCALES: Record<'quick' | 'full', Scale> = {
  quick: { contacts: 100_000, pullRequests: 200, initialSyncReps: 1, loadMs: 2000, warmupMs: 500, pushBatches: 50, fanoutChanges: 8, connections: 2000, connectionsInTenant: 500, settleMs: 1500, callSessions: 200_000, exportContacts: 10_000 },
  full: { contacts: 100_000, pullRequests: 2000, initialSyncReps: 3, loadMs: 15_000, warmupMs: 2000, pushBatches: 400, fanoutChanges: 40, connections: 10_000, connectionsInTenant: 1000, settleMs: 3000, callSessions: 1_000_000, exportContacts: 10_000 },
};

const started = Date.now();
const log = (message: string) => process.stdout.write(`[bench ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);

function parseCli() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      'database-url': { type: 'string' },
      profile: { type: 'boolean', default: false },
      'keep-database': { type: 'boolean', default: false },
      'call-sessions': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      `npm run bench -- [--quick] [--only <scenario>[,<scenario>]] [--database-url <postgres url>] [--profile] [--keep-database]\n` +
        `scenarios: ${scenarios.map((s) => s.name).join(', ')}\n` +
        `--profile writes a CPU profile of the server per scenario to packages/server/bench/profiles/ (numbers are slower then)\n` +
        `--keep-database leaves the generated database in place for EXPLAIN ANALYZE and prints its URL\n` +
        `--call-sessions <n> call sessions generated for eligible-calls (default 200,000 with --quick, 1,000,000 otherwise: SPEC §12's scale)\n`,
    );
    process.exit(0);
  }
  const only = values.only?.flatMap((o) => o.split(',')).map((o) => o.trim()).filter(Boolean);
  const unknown = only?.filter((o) => !scenarios.some((s) => s.name === o)) ?? [];
  if (unknown.length > 0) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}`);
  const callSessions = values['call-sessions'] === undefined ? undefined : Number(values['call-sessions']);
  if (callSessions !== undefined && !(Number.isInteger(callSessions) && callSessions >= 0 && callSessions <= 10_000_000)) {
    throw new Error('--call-sessions must be an integer from 0 to 10,000,000');
  }
  return { quick: values.quick!, only, databaseUrl: values['database-url'], profile: values.profile!, keepDatabase: values['keep-database']!, callSessions };
}

/** Creates `count` agents with `adminKey`; each comes with its API key. */
async function createAgents(url: string, adminKey: string, prefix: string, count: number): Promise<Agent[]> {
  const client = new HttpClient(url, { 'x-api-key': adminKey });
  const agents: Agent[] = [];
  for (let i = 0; i < count; i++) {
    const { data } = await client.json<{ data: { agent: { id: string; agentCode: string }; apiKey: string } }>('POST', '/api/agents', {
      agentCode: `${prefix}${i}`,
      name: `Bench agent ${prefix}${i}`,
    });
    agents.push({ agentCode: data.agent.agentCode, apiKey: data.apiKey, userId: data.agent.id });
  }
  client.close();
  return agents;
}

/** Writes a scenario's server profile and its summary, and prints the summary. */
function writeProfile(name: string, profile: unknown) {
  if (!profile) return;
  const file = join(PROFILE_DIR, `${name}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  const summary = summarizeProfile(file);
  writeFileSync(file.replace(/\.cpuprofile$/, '.txt'), `${summary}\n`);
  process.stdout.write(`${summary}\n\n`);
}

async function runScenario(scenario: Scenario, ctx: BenchContext, keepPids: number[], profiler?: PhaseProfiler): Promise<ScenarioResult> {
  const t0 = Date.now();
  const base = { name: scenario.name, title: scenario.title };
  log(`${scenario.name}: ${scenario.title}`);
  try {
    await profiler?.take(); // phases of an unreported seed run are not this scenario's
    const { metrics, details } = await within(scenario.run(ctx), scenario.budgetMs(ctx), scenario.name);
    if (profiler) writeProfile(scenario.name, await profiler.take());
    for (const m of metrics) log(`  ${m.label}: ${m.value} ${m.unit}${m.limit !== undefined ? ` (limit ${m.limit})` : ''}${m.met === false ? '  [target missed]' : ''}`);
    return { ...base, status: 'ok', durationMs: Date.now() - t0, loadAverage: loadavg()[0], metrics, details };
  } catch (error) {
    const available = error instanceof NotAvailable;
    const reason = (error as Error).message;
    log(`  ${available ? 'not available' : 'FAILED'}: ${reason}`);
    // A scenario that overran its budget may leave load processes behind: they must not load the next one.
    if (!available) killAllChildren(keepPids);
    return { ...base, status: available ? 'not available' : 'failed', reason, durationMs: Date.now() - t0, loadAverage: loadavg()[0], metrics: [] };
  }
}

async function main(): Promise<number> {
  const cli = parseCli();
  const mode = cli.quick ? 'quick' : 'full';
  const scale = { ...SCALES[mode], ...(cli.callSessions !== undefined ? { callSessions: cli.callSessions } : {}) };
  const selected = cli.only ? scenarios.filter((s) => cli.only!.includes(s.name)) : scenarios;
  const loadStart = loadavg();
  log(`${mode} run of ${selected.map((s) => s.name).join(', ')}; load average ${loadStart.map((x) => x.toFixed(2)).join(' ')}`);

  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch((error) => log(`cleanup: ${(error as Error).message}`));
    killAllChildren();
  };
  const onSignal = (signal: string) => {
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', () => killAllChildren());

  try {
    const db = await createBenchDatabase(baseDatabaseUrl(cli.databaseUrl));
    cleanups.push(async () => {
      if (cli.keepDatabase) {
        log(`kept database ${db.url}`);
        return;
      }
      await db.drop();
      log(`dropped database ${db.name}`);
    });
    log(`database ${db.name}`);
    const pool = new pg.Pool({ connectionString: db.url, max: 3 });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());

    const adminKey = `bench-admin-${randomBytes(16).toString('hex')}`;
    const server: RunningServer = await startFieldsync({ databaseUrl: db.url, adminKey });
    cleanups.push(async () => {
      await server.stop();
      log('server stopped');
    });
    log(`server ${server.url} (pid ${server.pid})`);
    if (!server.inspectorUrl) throw new Error(`the server printed no inspector URL:\n${server.stderr()}`);
    const inspector = await connectInspector(server.inspectorUrl);
    cleanups.push(async () => inspector.close());
    let profiler: PhaseProfiler | undefined;
    if (cli.profile) {
      profiler = phaseProfiler(await profilerOf(inspector));
      mkdirSync(PROFILE_DIR, { recursive: true });
    }

    const admin = new HttpClient(server.url, { 'x-api-key': adminKey });
    cleanups.push(async () => admin.close());
    const { rows } = await pool.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'");
    const a: Tenant = { id: rows[0].id, adminKey, agents: await createAgents(server.url, adminKey, 'bench', 10) };
    const created = await admin.json<{ data: { tenant: { id: string }; apiKey: string } }>('POST', '/api/tenants', { name: 'Bench B', slug: 'bench-b' });
    const b: Tenant = { id: created.data.tenant.id, adminKey: created.data.apiKey, agents: [] };
    b.agents = await createAgents(server.url, b.adminKey, 'benchb', 5);

    let phone = 80_000_000;
    const ctx: BenchContext = {
      quick: cli.quick,
      scale,
      server,
      databaseUrl: db.url,
      pool,
      a,
      b,
      serverPhase: (fn) => (profiler ? profiler.during(fn) : fn()),
      serverMemory: () => memoryOf(inspector),
      async freshServer() {
        const extra = await startFieldsync({ databaseUrl: db.url, adminKey });
        const extraInspector = await connectInspector(extra.inspectorUrl!).catch(async (error) => {
          await extra.stop();
          throw error;
        });
        const extraProfiler = profiler ? await profilerOf(extraInspector) : undefined;
        return {
          server: extra,
          memory: () => memoryOf(extraInspector),
          phase: (fn) => (profiler && extraProfiler ? profiler.during(fn, extraProfiler) : fn()),
          async stop() {
            extraInspector.close();
            await extra.stop();
          },
        };
      },
      nextPhone: () => phone++,
      log,
    };
    const results: ScenarioResult[] = [];
    const keep = [server.pid];
    const [seed, ...rest] = scenarios;
    // The import seeds the tenant: it runs first always (unless every selected scenario does
    // without the data set), and is reported when selected.
    if (selected.includes(seed) || selected.some((s) => s.needsDataSet !== false)) {
      const seeded = await runScenario(seed, ctx, keep, selected.includes(seed) ? profiler : undefined);
      if (seeded.status !== 'ok') throw new Error(`seeding the data set failed: ${seeded.reason}`);
      // What autovacuum would do within a minute of the import on a production server (it may be
      // off on a test server): without statistics the planner sorts the whole table for every
      // initial-sync page (README.md, "Reading the numbers").
      await pool.query('ANALYZE');
      if (selected.includes(seed)) results.push(seeded);
    }
    for (const scenario of rest.filter((s) => selected.includes(s))) results.push(await runScenario(scenario, ctx, keep, profiler));

    const run: RunResult = {
      date: new Date().toISOString(),
      mode,
      only: cli.only,
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
        memoryGB: Math.round(totalmem() / 2 ** 30),
        node: process.version,
        postgres: await postgresVersion(pool),
        postgresSettings: await postgresSettings(pool),
        platform: `${process.platform} ${process.arch}`,
      },
      loadAverage: { start: loadStart, end: loadavg() },
      durationMs: Date.now() - started,
      scenarios: results,
    };
    const previous = previousRun(fileURLToPath(new URL('./results/', import.meta.url)), mode);
    run.previous = previous?.file;
    compare(run, previous?.run);
    process.stdout.write(`\n${markdown(run)}\n`);
    if (cli.profile) log(`profiled run (slower): results not recorded; profiles in ${PROFILE_DIR}`);
    else log(`wrote ${writeResults(BENCH_DIR, run)} and ${join(BENCH_DIR, 'RESULTS.md')}`);
    return results.some((r) => r.status === 'failed') ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`bench failed: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
