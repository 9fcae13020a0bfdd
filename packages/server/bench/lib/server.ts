import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sleep, spawnNode, stopChild, tail } from './proc.js';
import { withoutConfig } from '../../src/config/config.js';

/** A TCP port of 127.0.0.1 nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

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
export async function startFieldsync(opts: { databaseUrl: string; adminKey: string }): Promise<RunningServer> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'fieldsync-bench-'));
  const env = withoutConfig(process.env);
  Object.assign(env, {
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: dataDir,
    DATABASE_URL: opts.databaseUrl,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    FIELDSYNC_BOOTSTRAP_ADMIN_KEY: opts.adminKey,
    RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'warn',
    DEVICE_FLUSH_MS: '1000',
  });
  const nodeArgs = ['--inspect=127.0.0.1:0'];
  const child = spawnNode('packages/server/src/main.ts', { env, nodeArgs });
  const stderr = tail(child.stderr);
  tail(child.stdout);
  const url = `http://127.0.0.1:${port}`;
  const cleanup = () => rmSync(dataDir, { recursive: true, force: true });
  const server: RunningServer = {
    url,
    pid: child.pid!,
    stderr,
    async stop() {
      await stopChild(child, 'SIGTERM', 20_000);
      cleanup();
    },
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      cleanup();
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${stderr()}`);
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) {
        server.inspectorUrl = /Debugger listening on (ws:\/\/\S+)/.exec(stderr())?.[1];
        return server;
      }
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  await server.stop();
  throw new Error(`server not ready within 60 s:\n${stderr()}`);
}
