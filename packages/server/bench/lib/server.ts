import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { stopChild, tail, track } from './proc.js';
import { closed, freePort, spawnServerChild, waitForHealth } from '../../src/lib/child-server.js';

export interface RunningServer {
  url: string;
  pid: number;
  /** The inspector's WebSocket URL (the server runs with `--inspect` on a free port of 127.0.0.1). */
  inspectorUrl?: string;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * Starts the real Fieldsync server on 127.0.0.1 against `databaseUrl` (rate limit off,
 * warnings only), with a raised open-file limit, and waits until /health answers 200.
 * Its inspector listens on a free port of 127.0.0.1: the suite reads the server's memory after
 * a forced garbage collection through it, and profiles it with `--profile`.
 */
export async function startFieldsync(opts: { databaseUrl: string; adminKey: string; env?: Record<string, string> }): Promise<RunningServer> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'fieldsync-bench-'));
  const env = {
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: dataDir,
    DATABASE_URL: opts.databaseUrl,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    FIELDSYNC_BOOTSTRAP_ADMIN_KEY: opts.adminKey,
    RATE_LIMIT_PER_MINUTE: '0',
    // The connection scenarios hold 10,000 sockets over a few dozen agents' keys.
    MAX_SOCKETS_PER_CREDENTIAL: '1000000',
    LOG_LEVEL: 'warn',
    DEVICE_FLUSH_MS: '1000',
    // Only the export scenario's own instance sends to its local HubSpot-like server.
    HUBSPOT_WORKER: 'false',
    ...opts.env,
  };
  const child = track(spawnServerChild(env, { nodeArgs: ['--inspect=127.0.0.1:0'], raiseFileLimit: true }));
  const exited = closed(child);
  const stderr = tail(child.stderr);
  tail(child.stdout);
  const url = `http://127.0.0.1:${port}`;
  const server: RunningServer = {
    url,
    pid: child.pid!,
    stderr,
    async stop() {
      await stopChild(child, 'SIGTERM', 20_000);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await waitForHealth(url, { exited, output: stderr, timeoutMs: 60_000 });
  } catch (error) {
    await server.stop();
    throw error;
  }
  server.inspectorUrl = /Debugger listening on (ws:\/\/\S+)/.exec(stderr())?.[1];
  return server;
}
