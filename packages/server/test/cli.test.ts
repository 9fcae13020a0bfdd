import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.js';
import type { Db } from '../src/db/db.js';
import { createPgliteDb } from '../src/db/pglite.js';
import { createPostgresDb } from '../src/db/postgres.js';
import { backends, createScratchDatabase, type Backend } from './helpers/test-db.js';
import { startTestApp, type TestApp } from './helpers/test-app.js';

const BIN = fileURLToPath(new URL('../bin/fieldsync.js', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
// Each command is a fresh Node process compiling TypeScript and opening a database.
const SLOW = 180_000;
// The main commands run as a user runs them (a child process); follow-up checks run the same
// entry point in-process, which skips Node's start-up.

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node packages/server/bin/fieldsync.js ...args` with only the database settings of `env`, `stdin` piped in. */
function fieldsync(args: string[], env: Record<string, string>, stdin?: string): Promise<Run> {
  const base = { ...process.env };
  for (const key of ['DATABASE_URL', 'DATA_DIR', 'FIELDSYNC_BOOTSTRAP_ADMIN_KEY', 'REDIS_URL']) delete base[key];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, env: { ...base, ...env }, stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    if (stdin !== undefined) child.stdin!.end(stdin);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs the CLI's entry point in this process, with `env` as its whole environment. */
async function fieldsyncInProcess(args: string[], env: Record<string, string>, stdin = ''): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, { env, out: (line) => out.push(line), err: (line) => err.push(line), readStdin: async () => stdin });
  return { code, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.map((l) => `${l}\n`).join('') };
}

/** The key a command printed on a line of its own. */
function printedKey(run: Run): string {
  const match = /^(fsk_[0-9A-Za-z]{40})$/m.exec(run.stdout);
  if (!match) throw new Error(`no key printed (exit ${run.code}):\n${run.stdout}\n${run.stderr}`);
  return match[1];
}

/** Where a CLI suite keeps its data: a PGlite directory or a scratch PostgreSQL database. */
interface Target {
  env: Record<string, string>;
  open(): Promise<Db>;
  cleanup(): Promise<void>;
}

async function createTarget(backend: Backend): Promise<Target> {
  if (backend === 'pglite') {
    const dir = mkdtempSync(join(tmpdir(), 'fieldsync-cli-'));
    return {
      env: { DATA_DIR: dir },
      open: () => createPgliteDb(dir),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const scratch = await createScratchDatabase();
  return { env: { DATABASE_URL: scratch.url }, open: async () => createPostgresDb(scratch.url, { max: 4 }), cleanup: scratch.drop };
}

describe('fieldsync CLI usage', () => {
  it('prints its help (exit 0), refuses a bad command (exit 2) and a bad configuration (exit 78) as a child process', async () => {
    const [help, bad, config] = await Promise.all([
      fieldsync(['help'], {}),
      fieldsync(['agents', 'create', '--name', 'Ana'], {}),
      fieldsync(['agents', 'list'], { DATABASE_URL: 'mysql://nope' }),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: fieldsync <command>');
    for (const command of ['agents create', 'agents list', 'agents deactivate', 'keys create', 'keys revoke', 'tenants create', 'migrate']) {
      expect(help.stdout).toContain(command);
    }
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Missing --code/);
    expect(bad.stdout).toBe('');
    expect(config.code).toBe(78);
    expect(config.stderr).toMatch(/DATABASE_URL must use postgres/);
  }, SLOW);

  it('refuses unknown commands, unknown options, missing flags and invalid values before opening any database', async () => {
    const dir = join(tmpdir(), `fieldsync-cli-untouched-${process.pid}-${Date.now()}`);
    const cases: [string[], RegExp][] = [
      [[], /Usage: fieldsync/],
      [['frobnicate'], /Unknown command "frobnicate"/],
      [['agents'], /Unknown command "agents".*create/],
      [['agents', 'fly'], /Unknown command "agents fly".*create/],
      [['agents', 'create', '--name', 'Ana'], /Missing --code/],
      [['agents', 'create', '--code', 'A1', '--name', 'Ana', '--colour', 'red'], /Unknown option '--colour'/],
      [['agents', 'create', '--code', 'A1', '--name', 'Ana', 'extra'], /Unexpected argument "extra"/],
      [['agents', 'create', '--code', 'not valid!', '--name', 'Ana'], /--code must match pattern/],
      [['agents', 'create', '--code', 'A1', '--name', 'Ana', '--password', 'short'], /--password must NOT have fewer than 10 characters/],
      [['agents', 'create', '--code', 'A1', '--name', 'Ana', '--role', 'boss'], /--role/],
      [['agents', 'create', '--code', 'A1', '--name', 'Ana', '--email', 'not-an-email'], /--email must match format "email"/],
      [['keys', 'revoke', '--agent', 'A1'], /Missing --key/],
      [['tenants', 'create', '--name', 'Acme', '--slug', 'Not A Slug'], /--slug/],
    ];
    for (const [args, message] of cases) {
      const run = await fieldsyncInProcess(args, { DATA_DIR: dir });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr + run.stdout).toMatch(message);
      expect(run.stdout).not.toMatch(/fsk_/);
    }
    expect(existsSync(dir)).toBe(false);
  });
});

describe.each(backends)('fieldsync CLI on %s', (backend) => {
  let target: Target;
  let adminKey: string;
  const cli = (...args: string[]) => fieldsync(args, target.env);
  const inProcess = (...args: (string | { stdin: string })[]) => {
    const input = args.find((a): a is { stdin: string } => typeof a !== 'string');
    return fieldsyncInProcess(args.filter((a): a is string => typeof a === 'string'), target.env, input?.stdin);
  };

  /** Starts the server on the CLI's data, runs `fn`, stops it (PGlite allows one process at a time). */
  async function withApp<T>(fn: (app: TestApp) => Promise<T>): Promise<T> {
    const db = await target.open();
    const app = await startTestApp(backend, {}, { sharedDb: { db, drop: () => db.close() } });
    try {
      return await fn(app);
    } finally {
      await app.close();
      await db.close();
    }
  }

  beforeAll(async () => {
    target = await createTarget(backend);
  });
  afterAll(async () => {
    await target?.cleanup();
  });

  it('never creates a database without --init: it says where it looked and exits 78, creating nothing', async () => {
    const run = await cli('agents', 'list');
    expect(run.code).toBe(78);
    expect(run.stderr).toMatch(backend === 'pglite' ? /there is no Fieldsync database in .*: set DATA_DIR .* or pass --init/ : /holds no Fieldsync database: fix DATABASE_URL, or pass --init/);
    expect(run.stdout).toBe('');
    if (backend === 'pglite') {
      expect(existsSync(join(target.env.DATA_DIR, 'pglite'))).toBe(false);
      return;
    }
    const db = await target.open();
    try {
      const { rows } = await db.query<{ found: string | null }>("SELECT to_regclass('schema_migrations')::text AS found");
      expect(rows[0].found).toBeNull();
    } finally {
      await db.close();
    }
  }, SLOW);

  it('migrates and bootstraps an empty database with --init, says which, then creates an agent and prints a key that authenticates as it', async () => {
    const run = await cli('agents', 'create', '--init', '--code', 'A1', '--name', 'Ana', '--email', 'ana@example.com', '--password', 'ana-password-1');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(backend === 'pglite' ? /^Database: the embedded database in \/.+\.$/m : /^Database: PostgreSQL at 127\.0\.0\.1:5432\/fieldsync_test_\w+\.$/m);
    expect(run.stdout).toMatch(/Applied migrations: 0001_foundation\.sql/);
    adminKey = /Admin API key \(shown once, keep it safe\): (fsk_\S+)/.exec(run.stdout)?.[1] as string;
    expect(adminKey).toMatch(/^fsk_/);
    const key = printedKey(run);
    expect(key).not.toBe(adminKey);

    await withApp(async (app) => {
      const asAgent = await app.api('GET', '/api/contacts', { key, headers: { 'x-agent-code': 'A1' } });
      expect(asAgent.status).toBe(200);
      const agents = await app.api('GET', '/api/agents', { key: adminKey });
      expect(agents.status).toBe(200);
      expect(agents.body.data).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ agentCode: 'admin', role: 'admin' }),
          expect.objectContaining({ agentCode: 'A1', name: 'Ana', email: 'ana@example.com', role: 'agent', isActive: true }),
        ]),
      );
      // The password set by the CLI signs in too.
      const login = await app.api('POST', '/api/auth/login', { key: null, body: { login: 'A1', password: 'ana-password-1' } });
      expect(login.status).toBe(200);
      // The printed key is stored hashed, never as printed.
      const stored = await app.testDb.db.query('SELECT * FROM api_keys');
      expect(JSON.stringify(stored.rows)).not.toContain(key);
    });
  }, SLOW);

  it('sets a password read from stdin: it signs in, the old one and the agent\'s sessions stop working; a short or two-line one is refused (exit 2)', async () => {
    const before = await withApp(async (app) => {
      const res = await app.api('POST', '/api/auth/login', { key: null, body: { login: 'A1', password: 'ana-password-1' } });
      expect(res.status).toBe(200);
      return res.body.data.refreshToken as string;
    });
    for (const [input, message] of [
      ['too-short\n', /fewer than 10 characters/],
      ['first-line-password\nsecond-line-password\n', /one line/],
      ['', /fewer than 10 characters/],
    ] as const) {
      const refused = await inProcess('agents', 'set-password', '--code', 'A1', { stdin: input });
      expect(refused.code, input).toBe(2);
      expect(refused.stderr).toMatch(message);
    }
    const unknown = await inProcess('agents', 'set-password', '--code', 'NOBODY', { stdin: 'a-valid-password\n' });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/Agent not found/);

    const run = await fieldsync(['agents', 'set-password', '--code', 'A1'], target.env, 'cli-password-2\r\n');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Set the password of A1/);
    expect(run.stdout).not.toContain('cli-password-2');

    await withApp(async (app) => {
      const login = (password: string) => app.api('POST', '/api/auth/login', { key: null, body: { login: 'A1', password } });
      expect((await login('cli-password-2')).status).toBe(200);
      expect((await login('ana-password-1')).status).toBe(401);
      expect((await app.api('POST', '/api/auth/refresh', { key: null, body: { refreshToken: before } })).status).toBe(401);
    });
  }, SLOW);

  it('bootstraps only once: a second command prints no new admin key', async () => {
    const run = await cli('migrate');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('The database is up to date.');
    expect(run.stdout).not.toMatch(/fsk_|Bootstrapped|Applied/);
  }, SLOW);

  it('refuses a duplicate agent code with a clear message and a non-zero exit, printing no key', async () => {
    const run = await cli('agents', 'create', '--code', 'A1', '--name', 'Other Ana');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/already exists/);
    expect(run.stdout).not.toMatch(/fsk_/);
    const list = await inProcess('agents', 'list', '--json');
    expect(list.code).toBe(0);
    const a1 = (JSON.parse(list.stdout) as { agentCode: string; name: string }[]).filter((a) => a.agentCode === 'A1');
    expect(a1).toEqual([expect.objectContaining({ name: 'Ana' })]);
  }, SLOW);

  it('issues another key that works beside the first, and revokes exactly the key it names', async () => {
    const first = await inProcess('agents', 'create', '--code', 'K1', '--name', 'Kim', '--role', 'manager');
    expect(first.code).toBe(0);
    const firstKey = printedKey(first);
    const created = await cli('keys', 'create', '--agent', 'K1', '--json');
    expect(created.code).toBe(0);
    const second = JSON.parse(created.stdout) as { apiKey: string; key: { id: string; prefix: string } };
    expect(second.apiKey.startsWith(second.key.prefix)).toBe(true);

    const listed = await inProcess('keys', 'list', '--agent', 'K1');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(second.key.id);
    expect(listed.stdout).not.toContain(second.apiKey);

    const revoked = await cli('keys', 'revoke', '--agent', 'K1', '--key', second.key.id);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`Revoked API key ${second.key.id}`);
    const unknown = await inProcess('keys', 'revoke', '--agent', 'K1', '--key', '00000000-0000-4000-8000-000000000000');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/API key not found/);
    const wrongAgent = await inProcess('keys', 'revoke', '--agent', 'NOBODY', '--key', second.key.id);
    expect(wrongAgent.code).toBe(1);
    expect(wrongAgent.stderr).toMatch(/Agent not found/);

    await withApp(async (app) => {
      expect((await app.api('GET', '/api/agents', { key: firstKey })).status).toBe(200);
      expect((await app.api('GET', '/api/agents', { key: second.apiKey })).status).toBe(401);
    });
  }, SLOW);

  it('deactivates an agent (403 on its key) and activates it again', async () => {
    const made = await inProcess('agents', 'create', '--code', 'D1', '--name', 'Dee');
    const key = printedKey(made);
    const off = await cli('agents', 'deactivate', '--code', 'D1');
    expect(off.code).toBe(0);
    expect(off.stdout).toContain('D1 is now inactive');
    const list = await inProcess('agents', 'list');
    expect(list.stdout).toMatch(/^D1\s+agent\s+inactive\s+Dee$/m);
    await withApp(async (app) => {
      expect((await app.api('GET', '/api/contacts', { key })).status).toBe(403);
    });
    const on = await cli('agents', 'activate', '--code', 'D1');
    expect(on.code).toBe(0);
    await withApp(async (app) => {
      expect((await app.api('GET', '/api/contacts', { key })).status).toBe(200);
    });
    expect((await inProcess('agents', 'deactivate', '--code', 'NOPE')).code).toBe(1);
  }, SLOW);

  it('creates a tenant whose printed admin key works only in that tenant; agents go where --tenant says', async () => {
    const run = await cli('tenants', 'create', '--name', 'Acme', '--slug', 'acme');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Created tenant "acme"');
    const acmeKey = printedKey(run);
    const dup = await inProcess('tenants', 'create', '--name', 'Acme 2', '--slug', 'acme');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/"acme" is taken/);
    expect(dup.stdout).not.toMatch(/fsk_/);

    // The same agent code as in tenant default: allowed, it is another tenant.
    const agent = await cli('agents', 'create', '--code', 'A1', '--name', 'Acme Ana', '--tenant', 'acme');
    expect(agent.code).toBe(0);
    const agentKey = printedKey(agent);
    const nowhere = await inProcess('agents', 'create', '--code', 'Z1', '--name', 'Zed', '--tenant', 'nowhere');
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toMatch(/Tenant "nowhere" not found/);

    await withApp(async (app) => {
      const theirs = await app.api('GET', '/api/agents', { key: acmeKey });
      expect(theirs.status).toBe(200);
      expect(theirs.body.data.map((u: { agentCode: string; name: string }) => `${u.agentCode}:${u.name}`).sort()).toEqual([
        'A1:Acme Ana',
        'admin:Administrator',
      ]);
      const ours = await app.api('GET', '/api/agents', { key: adminKey });
      expect(ours.body.data.find((u: { agentCode: string }) => u.agentCode === 'A1').name).toBe('Ana');
      expect(ours.body.data.every((u: { tenantId: string }) => u.tenantId !== theirs.body.data[0].tenantId)).toBe(true);
      expect((await app.api('GET', '/api/contacts', { key: agentKey, headers: { 'x-agent-code': 'A1' } })).status).toBe(200);
      // The acme admin is no admin of tenant default: it may not create tenants.
      expect((await app.api('POST', '/api/tenants', { key: acmeKey, body: { name: 'X', slug: 'x-co' } })).status).toBe(403);
    });
  }, SLOW);

  if (backend === 'pglite') {
    it('refuses a data directory held by a running server, with a clear message, and changes nothing', async () => {
      const run = await withApp(() => cli('agents', 'create', '--code', 'L1', '--name', 'Locked'));
      expect(run.code).toBe(69); // unavailable: another process holds it
      expect(run.stderr).toMatch(/is in use by process \d+: stop that process, or set DATA_DIR/);
      expect(run.stdout).not.toMatch(/fsk_/);
      const list = await inProcess('agents', 'list');
      expect(list.code).toBe(0);
      expect(list.stdout).not.toMatch(/^L1\s/m);
    }, SLOW);
  } else {
    it('works beside a running server on PostgreSQL: a key it prints is accepted at once', async () => {
      await withApp(async (app) => {
        const run = await cli('agents', 'create', '--code', 'L1', '--name', 'Live');
        expect(run.code).toBe(0);
        expect((await app.api('GET', '/api/contacts', { key: printedKey(run) })).status).toBe(200);
      });
    }, SLOW);
  }
});
