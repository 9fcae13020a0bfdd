import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { withoutConfig } from '../config/config.js';

// What the tests, the benchmark suite and the fleet simulator share to run the real server as a
// child process: they all start it the way an operator would, so nothing here runs in production.

/** The repository root: every child runs from here, so `--import tsx` finds its loader. */
export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** The server's entry point, relative to `ROOT`. */
export const MAIN = 'packages/server/src/main.ts';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

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

export interface SpawnOptions {
  /** The child's whole environment (default: the parent's). */
  env?: NodeJS.ProcessEnv;
  nodeArgs?: string[];
  args?: string[];
  /** Whether the child's stdout is piped (default) or dropped; its stderr is always piped. */
  stdout?: 'pipe' | 'ignore';
  /** Opens an IPC channel to the child. */
  ipc?: boolean;
  /**
   * Starts the child through `sh`, which first raises the soft limit of open files to the hard one
   * (10,000 sockets need more than the usual 1,024) and then becomes node: same pid, same IPC channel.
   */
  raiseFileLimit?: boolean;
}

/** Starts `node [nodeArgs] --import tsx <script> [args]` from the repository root. */
export function spawnTsx(script: string, opts: SpawnOptions = {}): ChildProcess {
  const argv = [...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...(opts.args ?? [])];
  const stdio: ('ignore' | 'pipe' | 'ipc')[] = ['ignore', opts.stdout ?? 'pipe', 'pipe'];
  if (opts.ipc) stdio.push('ipc');
  const options = { cwd: ROOT, env: opts.env ?? process.env, stdio };
  const child = opts.raiseFileLimit
    ? spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...argv], options)
    : spawn(process.execPath, argv, options);
  child.on('error', () => {}); // a failed spawn also emits 'close', which is how callers learn of it
  return child;
}

/**
 * Starts the real server (`MAIN`) with `env` on top of the parent's environment minus every
 * configuration key, so that a developer's own settings never leak into it. Does not wait for it:
 * see `waitForHealth`.
 */
export function spawnServerChild(env: Record<string, string>, opts: Omit<SpawnOptions, 'env' | 'args' | 'ipc'> = {}): ChildProcess {
  return spawnTsx(MAIN, { ...opts, env: { ...withoutConfig(process.env), ...env } });
}

/**
 * Resolves with how `child` ended once it has exited and closed its output, so that what it wrote
 * is complete by then. Call it right after spawning: a 'close' that has passed is not seen again.
 */
export function closed(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
}

/**
 * Waits until `GET <url>/health` answers `status` (200), polling every `intervalMs` (100). Fails
 * as soon as `exited` resolves (the child will never answer) or when `timeoutMs` has passed, with
 * `output()` (what the child wrote) in the error; ending the child is left to the caller.
 */
export async function waitForHealth(
  url: string,
  opts: { exited: Promise<Exit>; output: () => string; timeoutMs: number; intervalMs?: number; status?: number },
): Promise<void> {
  let exit: Exit | undefined;
  void opts.exited.then((value) => (exit = value));
  const deadline = Date.now() + opts.timeoutMs;
  while (Date.now() < deadline) {
    if (exit) throw new Error(`server exited (${exit.code ?? exit.signal}) before it was ready:\n${opts.output()}`);
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === (opts.status ?? 200)) return;
    } catch {
      /* not listening yet */
    }
    await sleep(opts.intervalMs ?? 100);
  }
  throw new Error(`server not ready within ${opts.timeoutMs} ms:\n${opts.output()}`);
}
