import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildApp, type BuiltApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createTenantsService } from '../../src/modules/tenants/tenants.service.js';
import { openTestDb, type Backend, type TestDb } from './test-db.js';

export const ADMIN_KEY = 'fsk_test_admin_key_0123456789abcdefghij';

export interface TestApp {
  url: string;
  backend: Backend;
  adminKey: string;
  built: BuiltApp;
  testDb: TestDb;
  /** Where this app keeps uploaded files (UPLOAD_DIR). */
  uploadDir: string;
  /** fetch against the app, JSON in and out, with the admin key unless `key` says otherwise. */
  api(method: string, path: string, opts?: ApiOptions): Promise<ApiResponse>;
  close(): Promise<void>;
}

export interface ApiOptions {
  body?: unknown;
  key?: string | null;
  token?: string;
  headers?: Record<string, string>;
  /** Raw body (sent as is, with its content type in `headers`). */
  raw?: string | Buffer;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/**
 * Starts the whole product on a fresh database of `backend`, listening on a random port of
 * 127.0.0.1, with the bootstrap admin key ADMIN_KEY. Rate limiting is off unless asked.
 */
export async function startTestApp(
  backend: Backend,
  env: Record<string, string> = {},
  opts: { /** Another instance's database: a second instance of one deployment. */ sharedDb?: TestDb } = {},
): Promise<TestApp> {
  const testDb = opts.sharedDb ?? (await openTestDb(backend));
  // Uploaded files go to a folder of this app's own, removed when it closes.
  const uploadDir = env.UPLOAD_DIR ? undefined : mkdtempSync(join(tmpdir(), 'fieldsync-test-files-'));
  const config: Config = loadConfig({
    RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'silent',
    DEVICE_FLUSH_MS: '50',
    ...(uploadDir ? { UPLOAD_DIR: uploadDir } : {}),
    ...env,
  });
  await createTenantsService({ db: testDb.db }).bootstrap(ADMIN_KEY);
  const built = await buildApp({ config, db: testDb.db, logger: pino({ level: 'silent' }), jwtSecret: 'test-secret-0123456789-0123456789-0123456789' });
  await built.app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(built.app.server.address() as AddressInfo).port}`;

  const api: TestApp['api'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    const key = opts.key === undefined ? ADMIN_KEY : opts.key;
    if (key) headers['x-api-key'] = key;
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | Buffer | undefined = opts.raw;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(url + path, { method, headers, body: body as BodyInit | undefined });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, text };
  };

  return {
    url,
    backend,
    adminKey: ADMIN_KEY,
    built,
    testDb,
    uploadDir: config.uploadDir,
    api,
    async close() {
      // As main.ts does: a keep-alive connection whose response finishes after close() began
      // (a large download still flushing) would otherwise hold it for the keep-alive timeout.
      const reaper = setInterval(() => built.app.server.closeIdleConnections(), 100);
      try {
        await built.close();
      } finally {
        clearInterval(reaper);
      }
      if (!opts.sharedDb) await testDb.drop();
      if (uploadDir) rmSync(uploadDir, { recursive: true, force: true });
    },
  };
}

/** Creates an agent through the admin API and returns its key and user. */
export async function createAgent(app: TestApp, agentCode: string, extra: Record<string, unknown> = {}, key = ADMIN_KEY) {
  const res = await app.api('POST', '/api/agents', { body: { agentCode, name: `Agent ${agentCode}`, ...extra }, key });
  if (res.status !== 201) throw new Error(`createAgent ${agentCode}: ${res.status} ${res.text}`);
  return { apiKey: res.body.data.apiKey as string, agent: res.body.data.agent as { id: string; agentCode: string } };
}

/** A random start per test process, then a counter: unique within a process (suites have their own databases). */
let phoneSeq = Math.floor(Math.random() * 4_000_000);
/** A valid, unique US phone number in E.164 for test contacts. */
export function uniquePhone(): string {
  phoneSeq++;
  return `+1415${String(2000000 + (phoneSeq % 7999999)).padStart(7, '0')}`;
}
