import type { ChildProcess } from 'node:child_process';
import { closed, freePort, spawnServerChild, waitForHealth, within, type Exit } from '../../src/lib/child-server.js';

/** Every child still running: `killAll()` ends them, whatever the tests did. */
const running = new Set<ServerProcess>();

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

/**
 * Spawns the real server (`node --import tsx packages/server/src/main.ts`) on a free port of
 * 127.0.0.1 with `env` on top of the parent's environment minus every configuration key.
 * Does not wait for it: see `startServer`.
 */
export async function spawnServer(env: Record<string, string>, group?: Set<ServerProcess>): Promise<ServerProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const child = spawnServerChild({ HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env, PORT: String(port) });
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
    exited: closed(child).then((exit) => {
      done = true;
      running.delete(proc);
      group?.delete(proc);
      return exit;
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
  const proc = await spawnServer(env, opts.group);
  try {
    await waitForHealth(proc.url, {
      exited: proc.exited,
      output: () => `${proc.stderr()}\n${proc.stdout()}`,
      timeoutMs: opts.timeoutMs ?? 60_000,
      intervalMs: 50,
      status: opts.readyStatus,
    });
  } catch (error) {
    proc.child.kill('SIGKILL');
    throw error;
  }
  return proc;
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
