import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgliteDb } from '../src/db/pglite.js';
import { freePort, sleep, within } from '../src/lib/child-server.js';
import { createScratchDatabase } from './helpers/test-db.js';
import { killAll, spawnServer, startServer, type ServerProcess } from './helpers/process.js';

/** The key line main.ts prints on a first start without FIELDSYNC_BOOTSTRAP_ADMIN_KEY. */
const KEY_LINE = /Admin API key \(shown once, keep it safe\): (\S+)/g;

let phoneSeq = 0;
/** A valid US number, unique within this file's databases. */
const phone = () => `+1415${String(2000000 + phoneSeq++).padStart(7, '0')}`;

/** Per-test timeout: each test starts a server at least once, slow on a busy machine. */
const SLOW = 120_000;

const tag = (what: string) => `${what}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** Contacts whose company is `company`, counted through the API. */
async function countTagged(server: ServerProcess, key: string, company: string): Promise<number> {
  const res = await server.api('GET', `/api/contacts?search=${company}&limit=1`, { key });
  expect(res.status).toBe(200);
  return res.body.pagination.total;
}

/** What a brand-new TCP connection gets: an HTTP status, or the socket error code. */
function probeNewConnection(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = get(`${url}/health`, { agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'ERROR'));
  });
}

const LOGS_KEY = 'fsk_process_bootstrap_key_0123456789abcdefghij';
const logsDataDir = mkdtempSync(join(tmpdir(), 'fieldsync-logs-'));
const logsGroup = new Set<ServerProcess>();
const NEVER_CREATED = join(tmpdir(), `fieldsync-never-created-${process.pid}`);
/** The logs suite's server and the configuration suite's process, started at once so their starts overlap the lifecycle's. */
let logsBoot: Promise<ServerProcess>;
/** The logs suite's way to Redis, and every connection through it. */
let redisGate: Server;
const piped = new Set<Socket>();
let badConfigRun: Promise<ServerProcess>;

beforeAll(async () => {
  badConfigRun = spawnServer({ PORT: '70000', DATABASE_URL: 'not a url', JWT_SECRET: 'too-short', LOG_LEVEL: 'loud', DATA_DIR: NEVER_CREATED });
  // Redis through a forwarder the test closes later: reachable at start (start-up waits for it),
  // gone while the process serves.
  const target = new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
  redisGate = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    piped.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => redisGate.listen(0, '127.0.0.1', resolve));
  const gatePort = (redisGate.address() as AddressInfo).port;
  logsBoot = startServer(
    {
      DATA_DIR: logsDataDir,
      LOG_DIR: join(logsDataDir, 'logs'),
      LOG_LEVEL: 'info',
      FIELDSYNC_BOOTSTRAP_ADMIN_KEY: LOGS_KEY,
      // A short grace: its SIGTERM takes the forced exit, whose error must still reach error.log.
      SHUTDOWN_GRACE_MS: '500',
      REDIS_URL: `redis://127.0.0.1:${gatePort}`,
    },
    { group: logsGroup },
  );
  logsBoot.catch(() => undefined); // awaited by the logs suite
});

afterAll(async () => {
  await killAll();
  rmSync(logsDataDir, { recursive: true, force: true });
});

describe('configuration of the process', () => {
  it('exits 78 and lists every bad key at once: PORT, DATABASE_URL, JWT_SECRET, LOG_LEVEL', async () => {
    const server = await badConfigRun;
    const exit = await within(server.exited, 20_000, 'config failure exit');
    expect(exit.code).toBe(78);
    const stderr = server.stderr();
    for (const key of ['PORT', 'DATABASE_URL', 'JWT_SECRET', 'LOG_LEVEL']) expect(stderr).toContain(key);
    expect(server.stdout()).not.toMatch(KEY_LINE);
    expect(existsSync(NEVER_CREATED)).toBe(false);
  }, SLOW);
});

const deployments = process.env.TEST_DATABASE_URL ? (['pglite', 'postgres'] as const) : (['pglite'] as const);

describe.each(deployments)('the server process on %s', (backend) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fieldsync-proc-'));
  let scratch: { url: string; drop: () => Promise<void> } | undefined;
  const group = new Set<ServerProcess>();
  const start = () => startServer(env, { group });
  let env: Record<string, string>;
  let server: ServerProcess;
  let adminKey: string;
  /** Every contact the server acknowledged with a 2xx, with the name it was given. */
  const acknowledged = new Map<string, string>();

  beforeAll(async () => {
    // A generous grace so a loaded CI machine does not turn a slow import into a forced exit.
    env = { DATA_DIR: dataDir, LOG_DIR: join(dataDir, 'logs'), LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '60000', RATE_LIMIT_PER_MINUTE: '0' };
    if (backend === 'postgres') {
      scratch = await createScratchDatabase();
      env.DATABASE_URL = scratch.url;
    }
  });

  afterAll(async () => {
    await killAll(group);
    await scratch?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints a generated admin key once on the first start, and that key works', async () => {
    server = await start();
    const printed = [...server.stdout().matchAll(KEY_LINE)].map((m) => m[1]);
    expect(printed).toHaveLength(1);
    adminKey = printed[0];
    expect(adminKey.length).toBeGreaterThanOrEqual(32);
    expect((await server.api('GET', '/api/contacts', { key: adminKey })).status).toBe(200);
    expect((await server.api('GET', '/api/contacts', { key: `${adminKey}x` })).status).toBe(401);
  }, SLOW);

  it('loses no acknowledged write when SIGKILLed mid-stream, and restarts on the same data without a new key', async () => {
    const writers = 4;
    let stop = false;
    let killing = false;
    let failures = 0;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const firstName = `W${w}-${i}`;
        try {
          const res = await server.api('POST', '/api/contacts', { key: adminKey, body: { firstName, phonePrimary: phone() } });
          if (res.status === 201) acknowledged.set(res.body.data.id, firstName);
          else throw new Error(`unexpected ${res.status} ${res.text}`);
        } catch (error) {
          if (!killing) failures++;
          return;
        }
      }
    };
    const running = Array.from({ length: writers }, (_, w) => writer(w));
    const deadline = Date.now() + 20_000;
    while (acknowledged.size < 150 && Date.now() < deadline) await sleep(10);
    expect(acknowledged.size).toBeGreaterThanOrEqual(150);
    const dead = server.pid;
    killing = true;
    const exit = await server.stop('SIGKILL'); // every writer has a request in flight
    stop = true;
    await within(Promise.all(running), 10_000, 'writers');
    expect(exit.signal).toBe('SIGKILL');
    expect(failures).toBe(0);

    if (backend === 'pglite') {
      // The killed process could not remove its lock: the next start must take it over.
      expect(readFileSync(join(dataDir, 'fieldsync.lock'), 'utf8')).toBe(String(dead));
    }
    server = await start();
    if (backend === 'pglite') expect(readFileSync(join(dataDir, 'fieldsync.lock'), 'utf8')).toBe(String(server.pid));
    expect(server.stdout()).not.toMatch(KEY_LINE);
    expect((await server.api('GET', '/api/contacts', { key: adminKey })).status).toBe(200);

    const ids = [...acknowledged.keys()];
    const missing: string[] = [];
    for (let i = 0; i < ids.length; i += 25) {
      await Promise.all(
        ids.slice(i, i + 25).map(async (id) => {
          const res = await server.api('GET', `/api/contacts/${id}`, { key: adminKey });
          if (res.status !== 200 || res.body.data.firstName !== acknowledged.get(id)) missing.push(id);
        }),
      );
    }
    expect(missing).toEqual([]);
  }, SLOW);

  it('applies a bulk cut by SIGKILL all or nothing, audit entries included', async () => {
    // How long a bulk of 3000 takes here, to kill the next one halfway through.
    const rows = (company: string) => Array.from({ length: 3000 }, (_, i) => ({ firstName: `B${i}`, company, phonePrimary: phone() }));
    const warm = tag('bulkwarm');
    const started = Date.now();
    const first = await server.api('POST', '/api/contacts/bulk', { key: adminKey, body: rows(warm) });
    expect(first.status).toBe(200);
    expect(first.body.data.created).toBe(3000);
    first.body.data.results.forEach((r: { id: string }, i: number) => acknowledged.set(r.id, `B${i}`));
    let delay = Math.max(20, Math.round((Date.now() - started) / 2));

    let cut = false;
    for (let attempt = 0; attempt < 3 && !cut; attempt++) {
      const company = tag('bulkcut');
      let answered: number | undefined;
      const request = server
        .api('POST', '/api/contacts/bulk', { key: adminKey, body: rows(company) })
        .then((res) => void (answered = res.status))
        .catch(() => undefined);
      await sleep(delay);
      await server.stop('SIGKILL');
      await within(request, 5000, 'cut bulk');
      server = await start();
      const count = await countTagged(server, adminKey, company);
      expect([0, 3000]).toContain(count);
      if (answered !== undefined) {
        // It finished before the kill: acknowledged, so all of it must be there; try earlier.
        expect(answered).toBe(200);
        expect(count).toBe(3000);
        delay = Math.max(10, Math.round(delay / 3));
        continue;
      }
      cut = true;
      if (count === 3000) {
        // Committed just before the kill: every row has exactly its one create in the audit log.
        const list = await server.api('GET', `/api/contacts?search=${company}&limit=20`, { key: adminKey });
        for (const contact of list.body.data as { id: string; version: number }[]) {
          const history = await server.api('GET', `/api/contacts/${contact.id}/history`, { key: adminKey });
          expect(history.body.data.map((h: { action: string; version: number }) => [h.action, h.version])).toEqual([['create', contact.version]]);
        }
      }
    }
    expect(cut).toBe(true);
    expect(await countTagged(server, adminKey, warm)).toBe(3000);
  }, SLOW);

  it('finishes an in-flight CSV import on SIGTERM, turns new connections away meanwhile, exits 0 and keeps the rows', async () => {
    const company = tag('csvterm');
    const chunks = Array.from({ length: 6 }, (_, c) =>
      Array.from({ length: 1000 }, (_, i) => `C${c * 1000 + i},${phone()},${company}\n`).join(''),
    );
    // A slow client: the upload pauses after three chunks until shutdown has begun.
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => (resume = resolve));
    let sent = 0;
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 0) controller.enqueue(encoder.encode('firstName,phonePrimary,company\n'));
        if (sent === 3) await paused;
        if (sent === chunks.length) return controller.close();
        controller.enqueue(encoder.encode(chunks[sent++]));
      },
    });
    let answered = false;
    const request = fetch(`${server.url}/api/contacts/import`, {
      method: 'POST',
      headers: { 'x-api-key': adminKey, 'content-type': 'text/csv' },
      body,
      duplex: 'half',
    } as RequestInit).then(async (res) => {
      answered = true;
      return { status: res.status, body: await res.json() };
    });
    request.catch(() => undefined); // awaited below; a failure before that must not go unhandled

    // The import commits every 1000 rows: once some are visible, it is surely in flight.
    const deadline = Date.now() + 20_000;
    while ((await countTagged(server, adminKey, company)) === 0 && Date.now() < deadline) await sleep(25);
    expect(await countTagged(server, adminKey, company)).toBeGreaterThan(0);

    const exited = server.stop('SIGTERM', 60_000);
    // Turned away: refused, reset out of the closing listener's backlog, or a 503 while closing.
    const turnedAway = ['ECONNREFUSED', 'ECONNRESET', 503];
    let probe: number | string = 200;
    const probeDeadline = Date.now() + 20_000;
    while (!turnedAway.includes(probe) && Date.now() < probeDeadline) {
      probe = await probeNewConnection(server.url);
      if (!turnedAway.includes(probe)) await sleep(20);
    }
    expect(turnedAway).toContain(probe);
    expect(answered).toBe(false);
    expect(server.hasExited()).toBe(false);

    resume();
    const res = await within(request, 60_000, 'import after SIGTERM');
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ rows: 6000, created: 6000, failed: 0 });
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(await probeNewConnection(server.url)).toBe('ECONNREFUSED');
    // Its last words reached the log file before it exited.
    const last = readFileSync(join(dataDir, 'logs', 'combined.log'), 'utf8').trim().split('\n').pop()!;
    expect(JSON.parse(last)).toMatchObject({ msg: 'stopped', pid: server.pid });

    server = await start();
    expect(await countTagged(server, adminKey, company)).toBe(6000);
  }, SLOW);

  it('holds an audit entry for exactly every contact version, and none for writes that never committed', async () => {
    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const checks = {
      unaudited:
        "SELECT count(*)::int AS n FROM contacts c WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.collection = 'contacts' AND a.record_id = c.id AND a.version = c.version)",
      orphans:
        "SELECT count(*)::int AS n FROM audit_log a WHERE a.collection = 'contacts' AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = a.record_id)",
      audit: "SELECT count(*)::int AS n FROM audit_log WHERE collection = 'contacts'",
      contacts: 'SELECT count(*)::int AS n FROM contacts',
    };
    const counts: Record<string, number> = {};
    if (backend === 'postgres') {
      const client = new pg.Client({ connectionString: scratch!.url });
      await client.connect();
      try {
        for (const [name, sql] of Object.entries(checks)) counts[name] = (await client.query(sql)).rows[0].n;
      } finally {
        await client.end();
      }
    } else {
      const db = await createPgliteDb(dataDir);
      try {
        for (const [name, sql] of Object.entries(checks)) counts[name] = (await db.query<{ n: number }>(sql)).rows[0].n;
      } finally {
        await db.close();
      }
    }
    expect(counts.unaudited).toBe(0);
    expect(counts.orphans).toBe(0);
    // Only creates were written: one version, so one audit entry, per contact.
    expect(counts.audit).toBe(counts.contacts);
    expect(counts.contacts).toBeGreaterThanOrEqual(acknowledged.size + 6000);
  }, SLOW);
});

describe('a process with LOG_DIR, FIELDSYNC_BOOTSTRAP_ADMIN_KEY, a short shutdown grace and Redis going away', () => {
  const logDir = join(logsDataDir, 'logs');
  const password = 'Plaintext-Pa55word-never-logged';
  const wrongPassword = 'Wrong-Pa55word-never-logged-either';
  let server: ServerProcess;
  const secrets: string[] = [LOGS_KEY, password, wrongPassword];

  afterAll(() => killAll(logsGroup));

  it('uses FIELDSYNC_BOOTSTRAP_ADMIN_KEY as the admin key exactly, without printing a key', async () => {
    server = await logsBoot;
    expect(server.stdout()).not.toMatch(KEY_LINE);
    expect((await server.api('GET', '/api/contacts', { key: LOGS_KEY })).status).toBe(200);
    expect((await server.api('GET', '/api/contacts', { key: LOGS_KEY.slice(0, -1) })).status).toBe(401);
  }, SLOW);

  it('keeps serving when Redis becomes unreachable: /health is 503 naming Redis, the API answers', async () => {
    expect((await server.api('GET', '/health')).status).toBe(200);
    redisGate.close();
    for (const socket of piped) socket.destroy();
    const health = await server.api('GET', '/health');
    expect(health.status).toBe(503);
    expect(health.body.checks).toMatchObject({ database: { status: 'up' }, redis: { status: 'down' } });
    const created = await server.api('POST', '/api/contacts', { key: LOGS_KEY, body: { firstName: 'Redisless', phonePrimary: phone() } });
    expect(created.status).toBe(201);
    await sleep(1000); // reconnection attempts keep failing meanwhile
    expect(server.hasExited()).toBe(false);
    expect((await server.api('GET', `/api/contacts/${created.body.data.id}`, { key: LOGS_KEY })).status).toBe(200);
  }, SLOW);

  it('echoes an incoming x-request-id and replaces a malformed one', async () => {
    const res = await server.api('GET', '/api/contacts', { key: LOGS_KEY, headers: { 'x-request-id': 'proc-log-check-1' } });
    expect(res.headers.get('x-request-id')).toBe('proc-log-check-1');
    const bad = await server.api('GET', '/api/contacts', { key: LOGS_KEY, headers: { 'x-request-id': 'no spaces allowed' } });
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  }, SLOW);

  it('writes JSON lines with request ids to combined.log and error.log (a forced exit included), never a key, token or password', async () => {
    const agent = await server.api('POST', '/api/agents', {
      key: LOGS_KEY,
      headers: { 'x-request-id': 'proc-log-agent' },
      body: { agentCode: 'logger1', name: 'Log Checker', password },
    });
    expect(agent.status).toBe(201);
    secrets.push(agent.body.data.apiKey);
    const login = await server.api('POST', '/api/auth/login', { headers: { 'x-request-id': 'proc-log-login' }, body: { login: 'logger1', password } });
    expect(login.status).toBe(200);
    secrets.push(login.body.data.accessToken, login.body.data.refreshToken);
    const denied = await server.api('POST', '/api/auth/login', { body: { login: 'logger1', password: wrongPassword } });
    expect(denied.status).toBe(401);
    expect((await server.api('GET', '/api/contacts', { key: agent.body.data.apiKey })).status).toBe(200);
    expect((await server.api('GET', '/api/contacts', { headers: { authorization: `Bearer ${login.body.data.accessToken}` } })).status).toBe(200);

    // An upload that never ends holds the graceful stop past SHUTDOWN_GRACE_MS: a forced exit 1.
    const abort = new AbortController();
    const encoder = new TextEncoder();
    const endless = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode(`firstName,phonePrimary\nStuck,${phone()}\n`));
      },
    });
    const stuck = fetch(`${server.url}/api/contacts/import`, {
      method: 'POST',
      headers: { 'x-api-key': LOGS_KEY, 'content-type': 'text/csv', 'x-request-id': 'proc-log-stuck' },
      body: endless,
      duplex: 'half',
      signal: abort.signal,
    } as RequestInit).catch(() => undefined);
    await sleep(300);
    try {
      expect(await server.stop('SIGTERM')).toEqual({ code: 1, signal: null });
    } finally {
      abort.abort();
      await stuck;
    }
    const combined = readFileSync(join(logDir, 'combined.log'), 'utf8');
    const lines = combined.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.some((l) => l.reqId === 'proc-log-check-1' && l.msg === 'request completed')).toBe(true);
    expect(lines.some((l) => l.reqId === 'proc-log-login')).toBe(true);
    expect(lines.every((l) => typeof l.level === 'number' && typeof l.time === 'number')).toBe(true);

    // error.log holds the errors only, the forced exit's included, written before the exit.
    const errorLog = readFileSync(join(logDir, 'error.log'), 'utf8');
    const errors = errorLog.trim().split('\n').map((line) => JSON.parse(line) as { level: number; msg: string });
    expect(errors.every((l) => l.level >= 50)).toBe(true);
    expect(errors.map((l) => l.msg)).toContain('graceful shutdown timed out; exiting');

    for (const secret of secrets) {
      expect(server.stdout()).not.toContain(secret);
      expect(server.stderr()).not.toContain(secret);
      expect(combined).not.toContain(secret);
      expect(errorLog).not.toContain(secret);
    }
  }, SLOW);
});
