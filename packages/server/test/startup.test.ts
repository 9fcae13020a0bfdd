import { createServer } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { within } from '../src/lib/child-server.js';
import { killAll, spawnServer, startServer, type ServerProcess } from './helpers/process.js';
import { createScratchDatabase } from './helpers/test-db.js';

/*
 * Start-up that tells the fix (SPEC §11, issue 16): each problem is one sentence on stderr with
 * what to do, no stack trace, and the exit code says its kind (78 configuration, 69 unavailable).
 */

const dirs: string[] = [];
const dataDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldsync-startup-'));
  dirs.push(dir);
  return dir;
};
afterAll(async () => {
  await killAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Spawns the server, waits for it to exit, and answers its exit code and stderr. */
async function failingStart(env: Record<string, string>): Promise<{ code: number | null; stderr: string; elapsedMs: number }> {
  const t0 = Date.now();
  const server = await spawnServer(env);
  const exit = await within(server.exited, 40_000, 'start-up failure exit');
  return { code: exit.code, stderr: server.stderr(), elapsedMs: Date.now() - t0 };
}

const oneSentence = (stderr: string) => {
  expect(stderr).toMatch(/^Fieldsync cannot start: /);
  expect(stderr.trim().split('\n')).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
};

describe('start-up problems', () => {
  it('retries PostgreSQL that cannot be reached for STARTUP_TIMEOUT_MS, then exits 69 saying what to do', async () => {
    const { code, stderr, elapsedMs } = await failingStart({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/fieldsync', STARTUP_TIMEOUT_MS: '1500' });
    expect(code).toBe(69);
    oneSentence(stderr);
    expect(stderr).toMatch(/PostgreSQL at 127\.0\.0\.1:1\/fieldsync cannot be reached \(ECONNREFUSED\): start it, or fix DATABASE_URL/);
    expect(stderr).toMatch(/gave up after 2 s|gave up after 1 s/);
    expect(elapsedMs).toBeGreaterThanOrEqual(1500);
  });

  it('exits 69 when Redis cannot be reached within STARTUP_TIMEOUT_MS', async () => {
    const { code, stderr } = await failingStart({ DATA_DIR: dataDir(), REDIS_URL: 'redis://127.0.0.1:1', STARTUP_TIMEOUT_MS: '600' });
    expect(code).toBe(69);
    oneSentence(stderr);
    expect(stderr).toMatch(/Redis at 127\.0\.0\.1:1 cannot be reached .*start it, or fix REDIS_URL/);
  });

  it('exits 69 when the port is in use, naming it', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const { code, stderr } = await failingStart({ DATA_DIR: dataDir(), PORT: String(port) });
      expect(code).toBe(69);
      oneSentence(stderr);
      expect(stderr).toContain(`Port ${port} on 127.0.0.1 is in use: stop the other process, or set PORT to a free port.`);
    } finally {
      blocker.close();
    }
  }, 90_000); // a server creating a new embedded database first: seconds, more on a loaded machine

  it('exits 69 when another process holds the data directory', async () => {
    const dir = dataDir();
    const first: ServerProcess = await startServer({ DATA_DIR: dir });
    try {
      const { code, stderr } = await failingStart({ DATA_DIR: dir });
      expect(code).toBe(69);
      oneSentence(stderr);
      expect(stderr).toMatch(new RegExp(`The data directory ${dir} is in use by process ${first.pid}: stop that process, or set DATA_DIR`));
    } finally {
      await first.stop();
    }
  }, 90_000);

  it.runIf(process.env.TEST_DATABASE_URL)('exits 78 for a database that does not exist, with the command that creates it', async () => {
    const url = new URL(process.env.TEST_DATABASE_URL!);
    url.pathname = `/fieldsync_missing_${process.pid}`;
    const { code, stderr } = await failingStart({ DATABASE_URL: url.toString() });
    expect(code).toBe(78);
    oneSentence(stderr);
    expect(stderr).toContain(`The database "fieldsync_missing_${process.pid}" does not exist`);
    expect(stderr).toContain(`createdb fieldsync_missing_${process.pid}`);
  });
});

describe.runIf(process.env.TEST_DATABASE_URL)('the JWT secret on PostgreSQL', () => {
  it('is generated once and kept in the database, so every instance signs alike; nothing is written to DATA_DIR', async () => {
    const scratch = await createScratchDatabase();
    const dirA = dataDir();
    const dirB = dataDir();
    try {
      const a = await startServer({ DATABASE_URL: scratch.url, DATA_DIR: dirA, FIELDSYNC_BOOTSTRAP_ADMIN_KEY: 'fsk_startup_admin_key_0123456789abcdefgh', FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD: 'Correct-Horse-9' });
      const b = await startServer({ DATABASE_URL: scratch.url, DATA_DIR: dirB });
      expect(a.stdout()).toContain(`Fieldsync is ready at http://127.0.0.1:${a.port}`);
      expect(a.stdout()).toContain('/dashboard');
      const login = await a.api('POST', '/api/auth/login', { body: { login: 'admin', password: 'Correct-Horse-9' } });
      expect(login.status, login.text).toBe(200);
      // A token signed by instance A is good on instance B.
      const onB = await fetch(`${b.url}/api/users/me`, { headers: { authorization: `Bearer ${login.body.data.accessToken}` } });
      expect(onB.status).toBe(200);
      expect(existsSync(join(dirA, 'jwt-secret')) || existsSync(join(dirB, 'jwt-secret'))).toBe(false);
      const client = new pg.Client({ connectionString: scratch.url });
      await client.connect();
      const { rows } = await client.query("SELECT count(*)::int AS n FROM server_settings WHERE name = 'jwt_secret'");
      await client.end();
      expect(rows[0].n).toBe(1);
      await Promise.all([a.stop(), b.stop()]);
    } finally {
      await scratch.drop();
    }
  });
});
