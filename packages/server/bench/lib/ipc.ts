import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { spawnNode, stopChild, tail } from './proc.js';
import { within } from '../../src/lib/child-server.js';

interface Request {
  id: number;
  cmd: string;
  arg: unknown;
}
type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string } | { ready: true };

/** A load-generator process the orchestrator drives with request/answer messages. */
export interface Worker {
  name: string;
  pid: number;
  /** Runs `cmd` in the worker; rejects after `timeoutMs` or when the worker dies. */
  call<T>(cmd: string, arg?: unknown, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

/**
 * Starts `bench/load/<file>` as its own process (so the load never shares the server's or the
 * orchestrator's event loop) and waits until it is ready.
 */
export async function startWorker(file: string, name = file, nodeArgs: string[] = []): Promise<Worker> {
  const script = fileURLToPath(new URL(`../load/${file}`, import.meta.url));
  const child: ChildProcess = spawnNode(script, { ipc: true, nodeArgs });
  const stderr = tail(child.stderr);
  tail(child.stdout);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let dead: Error | undefined;
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.on('message', (msg: Reply) => {
    if ('ready' in msg) return markReady();
    const waiter = pending.get(msg.id);
    if (!waiter) return;
    pending.delete(msg.id);
    if (msg.ok) waiter.resolve(msg.result);
    else waiter.reject(new Error(`worker ${name}: ${msg.error}`));
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      dead = new Error(`worker ${name} exited (${code ?? signal}): ${stderr().slice(-2000)}`);
      for (const waiter of pending.values()) waiter.reject(dead);
      pending.clear();
      resolve();
    }),
  );
  try {
    await within(Promise.race([ready, exited.then(() => Promise.reject(dead))]), 60_000, `worker ${name} start`);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    name,
    pid: child.pid!,
    call<T>(cmd: string, arg?: unknown, timeoutMs = 120_000) {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      const answer = new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ id, cmd, arg } satisfies Request);
      });
      return within(answer, timeoutMs, `worker ${name} ${cmd}`).finally(() => pending.delete(id));
    },
    stop: () => stopChild(child, 'SIGTERM', 5000),
  };
}

/** Runs `fn` with `count` workers of `file`, stopping them all afterwards, whatever happens. */
export async function withWorkers<T>(file: string, count: number, fn: (workers: Worker[]) => Promise<T>): Promise<T> {
  const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => startWorker(file, `${file}#${i}`)));
  const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return await fn(workers);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** The worker side: answers the orchestrator's requests with `handlers`; exits when it goes away. */
export function serve(handlers: Record<string, (arg: any) => unknown>): void {
  if (!process.send) throw new Error('a load worker must be started by the bench orchestrator');
  process.on('message', async (msg: Request) => {
    const handler = handlers[msg.cmd];
    try {
      if (!handler) throw new Error(`unknown command ${msg.cmd}`);
      const result = await handler(msg.arg);
      process.send!({ id: msg.id, ok: true, result });
    } catch (error) {
      process.send!({ id: msg.id, ok: false, error: (error as Error).stack ?? String(error) });
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  process.send({ ready: true });
}
