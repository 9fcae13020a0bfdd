import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../src/lib/child-server.js';
import { createScratchDatabase } from './helpers/test-db.js';
import { killAll, startServer, type ServerProcess } from './helpers/process.js';

/**
 * Exactly once across a crash (SPEC §4 "Idempotency", docs/sync-protocol.md "Exactly once"):
 * the real server is SIGKILLed while it handles a large push; the device retries the same
 * request with the same Idempotency-Key on the restarted server, and every change is applied
 * exactly once.
 */

const ADMIN = 'fsk_push_crash_bootstrap_key_0123456789abcdef';
const BATCH = 1000;
/** Per-test timeout: each test starts the server twice. */
const SLOW = 90_000;

let phoneSeq = 0;
/** A valid US number, unique within this file's databases. */
const phone = () => `+1415${String(3000000 + phoneSeq++).padStart(7, '0')}`;
const tag = (what: string) => `${what}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

interface Deployment {
  name: string;
  backend: 'pglite' | 'postgres';
  redis?: string;
}
const deployments: Deployment[] = [{ name: 'PGlite', backend: 'pglite' }];
if (process.env.TEST_DATABASE_URL) {
  // With Redis the in-flight mark of the killed request lives on in Redis: it must not hold the retry off for long.
  deployments.push({ name: process.env.TEST_REDIS_URL ? 'PostgreSQL with Redis' : 'PostgreSQL', backend: 'postgres', redis: process.env.TEST_REDIS_URL });
}

/** A deployment's first server, its data and an agent for the device. */
interface Booted {
  env: Record<string, string>;
  dataDir: string;
  group: Set<ServerProcess>;
  scratch?: { url: string; drop: () => Promise<void> };
  server?: ServerProcess;
  deviceKey?: string;
}

async function boot({ backend, redis }: Deployment, booted: Booted): Promise<void> {
  if (backend === 'postgres') {
    booted.scratch = await createScratchDatabase();
    booted.env.DATABASE_URL = booted.scratch.url;
  }
  if (redis) booted.env.REDIS_URL = redis;
  booted.server = await startServer(booted.env, { group: booted.group });
  const agent = await booted.server.api('POST', '/api/agents', { key: ADMIN, body: { agentCode: 'crash1', name: 'Crash Device' } });
  expect(agent.status).toBe(201);
  booted.deviceKey = agent.body.data.apiKey;
}

const booted = new Map<string, Booted>();
/** Every deployment's first start at once: the slow first starts overlap. */
const boots = new Map<string, Promise<void>>();
beforeAll(() => {
  for (const d of deployments) {
    const dataDir = mkdtempSync(join(tmpdir(), 'fieldsync-push-crash-'));
    const b: Booted = {
      dataDir,
      group: new Set(),
      env: { DATA_DIR: dataDir, FIELDSYNC_BOOTSTRAP_ADMIN_KEY: ADMIN, RATE_LIMIT_PER_MINUTE: '0', SHUTDOWN_GRACE_MS: '10000', LOG_LEVEL: 'warn' },
    };
    booted.set(d.name, b);
    const started = boot(d, b);
    started.catch(() => undefined); // awaited by the deployment's suite
    boots.set(d.name, started);
  }
});
afterAll(async () => {
  for (const b of booted.values()) {
    await killAll(b.group);
    await b.scratch?.drop();
    rmSync(b.dataDir, { recursive: true, force: true });
  }
});

describe.each(deployments)('a push cut by SIGKILL on $name', ({ name, backend }) => {
  let env: Record<string, string>;
  let group: Set<ServerProcess>;
  let scratch: { url: string } | undefined;
  let server: ServerProcess;
  let deviceKey: string;

  beforeAll(async () => {
    await boots.get(name);
    const b = booted.get(name)!;
    ({ env, group, scratch } = b);
    server = b.server!;
    deviceKey = b.deviceKey!;
  }, SLOW);

  const latest = async () => (await server.api('GET', '/api/sync/delta?version=0&limit=1', { key: ADMIN })).body.data.latestVersion as number;
  const countTagged = async (company: string) => {
    const res = await server.api('GET', `/api/contacts?search=${company}&limit=1`, { key: ADMIN });
    expect(res.status).toBe(200);
    return res.body.pagination.total as number;
  };
  /** A batch of creates: half identified by changeId, half by localId + timestamp only. */
  const batch = (company: string) => {
    const at = new Date().toISOString();
    return {
      deviceId: 'crash-phone',
      changes: Array.from({ length: BATCH }, (_, i) => ({
        ...(i % 2 === 0 ? { changeId: randomUUID() } : {}),
        localId: `${company}-${i}`,
        entityType: 'contacts',
        operation: 'create',
        timestamp: at,
        data: { firstName: `C${i}`, company, phonePrimary: phone(), notes: 'x'.repeat(500) },
      })),
    };
  };
  const send = (body: unknown, key: string) =>
    server.api('POST', '/api/sync', { key: deviceKey, body, headers: { 'idempotency-key': key } });

  /** Whether the server is inside a tenant write on PostgreSQL: its transaction is open. */
  const busyOnPostgres = async (client: pg.Client) => {
    const { rows } = await client.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND (state = 'idle in transaction' OR (state = 'active' AND query ILIKE '%tenant_versions%'))`,
    );
    return rows[0].n > 0;
  };

  it('applies every change exactly once when the same request is retried with its Idempotency-Key after a restart', async () => {
    // PGlite: how long such a push takes here, to kill the next one while it runs.
    let started = Date.now();
    let duration = 0;
    if (backend === 'pglite') {
      const warm = await send(batch(tag('warm')), randomUUID());
      expect(warm.status).toBe(200);
      duration = Date.now() - started;
    }

    const company = tag('crash');
    const body = batch(company);
    const key = `crash-${randomUUID()}`;
    const before = await latest();
    const watcher = backend === 'postgres' ? new pg.Client({ connectionString: scratch!.url }) : undefined;
    await watcher?.connect();
    let firstOutcome: string;
    try {
      started = Date.now();
      const first = send(body, key).then(
        (res) => `answered ${res.status}`,
        (error: Error) => `failed: ${error.message}`,
      );
      if (watcher) {
        // Kill as soon as the server is at work in the database on this request.
        while (!(await busyOnPostgres(watcher)) && Date.now() - started < 10_000) await sleep(2);
      } else {
        await sleep(Math.max(20, Math.floor(duration / 3)));
      }
      const exit = await server.stop('SIGKILL');
      expect(exit.signal).toBe('SIGKILL');
      firstOutcome = await first;
    } finally {
      await watcher?.end();
    }
    // The request was cut: the device never got an answer.
    expect(firstOutcome).toMatch(/^failed/);

    server = await startServer(env, { group });
    const committedBeforeKill = await countTagged(company);
    expect([0, BATCH]).toContain(committedBeforeKill);

    // The device retries the same request with the same key (honouring Retry-After on a 409).
    let retry = await send(body, key);
    const deadline = Date.now() + 30_000;
    while (retry.status === 409 && retry.body?.error === 'IDEMPOTENCY_IN_FLIGHT' && Date.now() < deadline) {
      await sleep(1000 * Number(retry.headers.get('retry-after') ?? 1));
      retry = await send(body, key);
    }
    expect(retry.status, retry.text.slice(0, 300)).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    const acks = retry.body.data.acknowledged as { success: boolean; status: string; serverId: string; version: number }[];
    expect(acks).toHaveLength(BATCH);
    const statuses = new Set(acks.map((a) => a.status));
    expect(statuses).toEqual(new Set([committedBeforeKill === 0 ? 'applied' : 'duplicate']));
    expect(acks.every((a) => a.success)).toBe(true);
    expect(new Set(acks.map((a) => a.serverId)).size).toBe(BATCH);
    // One version per change, whichever process wrote them: nothing applied twice, nothing lost.
    expect(await latest()).toBe(before + BATCH);
    expect(acks.map((a) => a.version).sort((a, b) => a - b)).toEqual(Array.from({ length: BATCH }, (_, i) => before + 1 + i));
    expect(await countTagged(company)).toBe(BATCH);

    // Each contact once, with the data of its change.
    for (const i of [0, 1, 499, 998, 999]) {
      const got = await server.api('GET', `/api/contacts/${acks[i].serverId}`, { key: ADMIN });
      expect(got.body.data).toMatchObject({ firstName: `C${i}`, company, phonePrimary: body.changes[i].data.phonePrimary });
      const history = await server.api('GET', `/api/contacts/${acks[i].serverId}/history`, { key: ADMIN });
      expect(history.body.data.map((h: { action: string }) => h.action)).toEqual(['create']);
    }

    // The finished answer is now stored: the same key replays it.
    const replay = await send(body, key);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(retry.body);
    expect(await latest()).toBe(before + BATCH);
  }, SLOW);

  it('answers the retry of a push whose commit the kill followed: stored answer or duplicates, never a second application', async () => {
    const company = tag('late');
    const body = batch(company);
    const key = `late-${randomUUID()}`;
    const before = await latest();
    const first = send(body, key).then(
      (res) => res,
      () => undefined,
    );
    // Kill as soon as the batch is visible: committed, its answer possibly not yet sent or stored.
    const deadline = Date.now() + 20_000;
    let seen = 0;
    while (seen < BATCH && Date.now() < deadline) seen = await countTagged(company);
    expect(seen).toBe(BATCH);
    await server.stop('SIGKILL');
    const answered = await first;

    server = await startServer(env, { group });
    expect(await countTagged(company)).toBe(BATCH);
    let retry = await send(body, key);
    const until = Date.now() + 30_000;
    while (retry.status === 409 && retry.body?.error === 'IDEMPOTENCY_IN_FLIGHT' && Date.now() < until) {
      await sleep(1000 * Number(retry.headers.get('retry-after') ?? 1));
      retry = await send(body, key);
    }
    expect(retry.status, retry.text.slice(0, 300)).toBe(200);
    const acks = retry.body.data.acknowledged as { success: boolean; status: string; serverId: string; version: number }[];
    expect(acks).toHaveLength(BATCH);
    if (retry.headers.get('idempotent-replayed') === 'true') {
      // The answer was stored before the kill: it is replayed as it was.
      expect(acks.every((a) => a.status === 'applied')).toBe(true);
      if (answered) expect(retry.body).toEqual(answered.body);
    } else {
      // The answer died with the process: every change is answered from its receipt.
      expect(acks.every((a) => a.status === 'duplicate' && a.success)).toBe(true);
    }
    expect(acks.map((a) => a.version).sort((a, b) => a - b)).toEqual(Array.from({ length: BATCH }, (_, i) => before + 1 + i));
    expect(await latest()).toBe(before + BATCH);
    expect(await countTagged(company)).toBe(BATCH);
  }, SLOW);
});
