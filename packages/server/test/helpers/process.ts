import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { withoutConfig } from '../../src/config/config.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const MAIN = 'packages/server/src/main.ts';

/** Every child still running: `killAll()` ends them, whatever the tests did. */
const running = new Set<ServerProcess>();

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  /** Everything the child wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves when the child has exited. */
  exited: Promise<Exit>;
  hasExited(): boolean;
  /** fetch against the child, JSON in and out, with `key` as X-API-Key. */
  api(method: string, path: string, opts?: { key?: string; body?: unknown; raw?: string | Buffer; headers?: Record<string, string> }): Promise<{
    status: number;
    headers: Headers;
    body: any;
    text: string;
  }>;
  /** Sends `signal` and waits (bounded) for the exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
}

/** A TCP port nothing listens on right now. */
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

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Rejects when `promise` has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Spawns the real server (`node --import tsx packages/server/src/main.ts`) on a free port of
 * 127.0.0.1 with `env` on top of the parent's environment minus every configuration key.
 * Does not wait for it: see `startServer`.
 */
export async function spawnServer(env: Record<string, string>, group?: Set<ServerProcess>): Promise<ServerProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const base = withoutConfig(process.env);
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    cwd: ROOT,
    env: { ...base, HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  let done = false;
  const url = `http://127.0.0.1:${port}`;
  const proc: ServerProcess = {
    child,
    pid: child.pid!,
    port,
    url,
    stdout: () => out,
    stderr: () => err,
    hasExited: () => done,
    exited: new Promise<Exit>((resolve) => {
      // 'close' waits for stdio to drain, so stdout() is complete once this resolves.
      child.on('close', (code, signal) => {
        done = true;
        running.delete(proc);
        group?.delete(proc);
        resolve({ code, signal });
      });
    }),
    async api(method, path, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.key) headers['x-api-key'] = opts.key;
      let body: string | Buffer | undefined = opts.raw;
      if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await fetch(url + path, { method, headers, body: body as BodyInit | undefined });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      return { status: res.status, headers: res.headers, body: parsed, text };
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      if (!done) child.kill(signal);
      try {
        return await within(proc.exited, timeoutMs, `server ${child.pid} after ${signal}`);
      } catch (error) {
        child.kill('SIGKILL');
        throw error;
      }
    },
  };
  child.on('error', () => {}); // a failed spawn also emits 'close'
  running.add(proc);
  group?.add(proc);
  return proc;
}

/**
 * Spawns the server and waits until `GET /health` answers 200 (or `readyStatus`). Fails (and kills the child)
 * when it exits first or is not ready within `timeoutMs`. `group` collects it for `killAll`.
 */
export async function startServer(
  env: Record<string, string>,
  opts: { timeoutMs?: number; group?: Set<ServerProcess>; /** Which /health status means ready (200). */ readyStatus?: number } = {},
): Promise<ServerProcess> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const proc = await spawnServer(env, opts.group);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.hasExited()) {
      const exit = await proc.exited;
      throw new Error(`server exited (${exit.code ?? exit.signal}) before it was ready:\n${proc.stderr()}\n${proc.stdout()}`);
    }
    try {
      const res = await fetch(`${proc.url}/health`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === (opts.readyStatus ?? 200)) return proc;
    } catch {
      /* not listening yet */
    }
    await sleep(50);
  }
  proc.child.kill('SIGKILL');
  throw new Error(`server not ready within ${timeoutMs} ms:\n${proc.stderr()}`);
}

/** SIGKILLs every child of `group` (default: all) still running and waits (bounded) for them. */
export async function killAll(group: Set<ServerProcess> = running): Promise<void> {
  const procs = [...group];
  for (const proc of procs) proc.child.kill('SIGKILL');
  await Promise.all(procs.map((proc) => within(proc.exited, 5000, `kill ${proc.pid}`).catch(() => undefined)));
}

// A worker that dies without running afterAll must not leave servers behind.
process.once('exit', () => {
  for (const proc of running) proc.child.kill('SIGKILL');
});
