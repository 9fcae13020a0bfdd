import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository root: every child runs from here. */
export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** Every child this process started and that has not exited yet. */
const children = new Set<ChildProcess>();

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
 * Starts `node [nodeArgs] --import tsx <script>` from the repository root through `sh`, which
 * first raises the soft limit of open files to the hard one (10,000 sockets need more than the
 * usual 1,024) and then becomes node: same pid, same IPC channel.
 */
export function spawnNode(
  script: string,
  opts: { env?: NodeJS.ProcessEnv; ipc?: boolean; nodeArgs?: string[]; args?: string[] } = {},
): ChildProcess {
  const argv = [...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...(opts.args ?? [])];
  const child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...argv], {
    cwd: ROOT,
    env: opts.env ?? process.env,
    stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.on('error', () => children.delete(child));
  return child;
}

/** Keeps the last `max` characters a stream wrote, for error reports. */
export function tail(stream: NodeJS.ReadableStream | null, max = 8000): () => string {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    text = (text + chunk).slice(-max);
  });
  return () => text;
}

/** Waits (bounded) for a child to exit, SIGKILLing it when `signal` did not end it in time. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  try {
    await within(exited, timeoutMs, `pid ${child.pid} after ${signal}`);
  } catch {
    child.kill('SIGKILL');
    await within(exited, 5000, `pid ${child.pid} after SIGKILL`).catch(() => undefined);
  }
}

/** SIGKILLs every child still running but those of `keep` (the last resort of the orchestrator). */
export function killAllChildren(keep: number[] = []): void {
  for (const child of children) if (!keep.includes(child.pid!)) child.kill('SIGKILL');
}

/** The soft limit of open files of a process (Linux /proc); undefined elsewhere. */
export function openFilesLimitOf(pid: number): number | undefined {
  try {
    const soft = /Max open files\s+(\S+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];
    return soft === undefined ? undefined : soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
  } catch {
    return undefined;
  }
}
