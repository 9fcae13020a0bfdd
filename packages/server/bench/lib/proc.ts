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

/** Clock ticks per second of /proc's CPU times (USER_HZ; 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** CPU time (user + system, ms) a process has used so far, from /proc; 0 when it is gone. */
export function cpuMsOf(pid: number, part: 'user' | 'system' | 'all' = 'all'): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = (part === 'system' ? 0 : Number(fields[11])) + (part === 'user' ? 0 : Number(fields[12]));
    return (ticks * 1000) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** The child processes of `pid` (nginx's workers), from /proc. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * CPU time groups of processes use while `fn` runs (ms per group), to tell where a scenario's
 * time goes on a machine whose cores every process shares.
 */
export async function cpuDuring<T>(groups: Record<string, number[]>, fn: () => Promise<T>): Promise<{ result: T; cpuMs: Record<string, number> }> {
  const sum = (pids: number[], part: 'user' | 'system') => pids.reduce((ms, pid) => ms + cpuMsOf(pid, part), 0);
  const read = () => Object.entries(groups).flatMap(([name, pids]) => [[`${name}.user`, sum(pids, 'user')], [`${name}.system`, sum(pids, 'system')]] as const);
  const before = new Map(read());
  const result = await fn();
  const cpuMs = Object.fromEntries(read().map(([key, ms]) => [key, Math.round(ms - before.get(key)!)]));
  return { result, cpuMs };
}
