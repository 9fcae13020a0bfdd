import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { spawnTsx, within, type SpawnOptions } from '../../src/lib/child-server.js';

/** Every child this process started and that has not exited yet. */
const children = new Set<ChildProcess>();

/**
 * Starts `node [nodeArgs] --import tsx <script>` from the repository root with the soft limit of
 * open files raised to the hard one, and keeps it for `killAllChildren`.
 */
export function spawnNode(script: string, opts: Omit<SpawnOptions, 'raiseFileLimit' | 'stdout'> = {}): ChildProcess {
  return track(spawnTsx(script, { ...opts, raiseFileLimit: true }));
}

/** Keeps `child` for `killAllChildren` until it exits. */
export function track(child: ChildProcess): ChildProcess {
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
