import WebSocket from 'ws';
import { within } from '../../src/lib/child-server.js';

/** A session on another Node process's inspector (DevTools protocol). */
export interface Inspector {
  send(method: string, params?: Record<string, unknown>): Promise<any>;
  close(): void;
}

/** A V8 CPU profiler of another process. */
export interface Profiler {
  start(): Promise<void>;
  /** Stops and returns the profile (the .cpuprofile JSON). */
  stop(): Promise<unknown>;
}

/** Memory of the inspected process right after a full garbage collection, bytes. */
export interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** Connects to the inspector at `url` (ws://127.0.0.1:<port>/<id>, printed by `node --inspect`). */
export async function connectInspector(url: string): Promise<Inspector> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await within(new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject)), 10_000, 'inspector connect');
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string } };
    const waiter = msg.id === undefined ? undefined : pending.get(msg.id);
    if (!waiter) return;
    pending.delete(msg.id!);
    if (msg.error) waiter.reject(new Error(msg.error.message));
    else waiter.resolve(msg.result);
  });
  ws.on('close', () => {
    for (const waiter of pending.values()) waiter.reject(new Error('inspector closed'));
    pending.clear();
  });
  return {
    send: (method, params = {}) =>
      within(
        new Promise<any>((resolve, reject) => {
          const id = nextId++;
          pending.set(id, { resolve, reject });
          ws.send(JSON.stringify({ id, method, params }));
        }),
        60_000,
        `inspector ${method}`,
      ),
    close: () => ws.close(),
  };
}

export async function profilerOf(inspector: Inspector): Promise<Profiler> {
  await inspector.send('Profiler.enable');
  await inspector.send('Profiler.setSamplingInterval', { interval: 500 });
  return {
    start: async () => void (await inspector.send('Profiler.start')),
    stop: async () => (await inspector.send('Profiler.stop')).profile,
  };
}

/** Collects garbage in the inspected process (twice: weak references die in the second), then reads its memory. */
export async function memoryOf(inspector: Inspector): Promise<Memory> {
  await inspector.send('HeapProfiler.collectGarbage');
  await inspector.send('HeapProfiler.collectGarbage');
  const { result } = await inspector.send('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
  return JSON.parse(result.value as string) as Memory;
}

/** Profiles only the phases run `during` it, and merges them into one profile per `take`. */
export interface PhaseProfiler {
  /** Profiles `fn` on `profiler` (default: the one the phase profiler was made with). */
  during<T>(fn: () => Promise<T>, profiler?: Profiler): Promise<T>;
  /** The phases profiled since the last take, merged (undefined when none ran). */
  take(): Promise<unknown>;
}

interface CpuProfile {
  nodes: { id: number; callFrame: unknown; hitCount?: number; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export function phaseProfiler(main: Profiler): PhaseProfiler {
  let phases: CpuProfile[] = [];
  return {
    async during(fn, profiler = main) {
      await profiler.start();
      try {
        return await fn();
      } finally {
        phases.push((await profiler.stop()) as CpuProfile);
      }
    },
    async take() {
      const taken = phases;
      phases = [];
      if (taken.length === 0) return undefined;
      // Self times add up across phases: keep the first profile's tree, add the others' nodes with fresh ids.
      const merged: CpuProfile = { nodes: [], startTime: taken[0].startTime, endTime: taken[taken.length - 1].endTime };
      let offset = 0;
      for (const p of taken) {
        for (const node of p.nodes) merged.nodes.push({ ...node, id: node.id + offset, children: node.children?.map((c) => c + offset) });
        offset += Math.max(...p.nodes.map((n) => n.id));
      }
      return merged;
    },
  };
}
