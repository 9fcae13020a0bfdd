import { wallNow } from './stats.js';

/** What a closed-loop run measured. */
export interface LoopResult {
  /** Operations that succeeded inside the measured window. */
  ops: number;
  /** Units they carried (changes, records); equals ops when each op is one unit. */
  units: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  /** Latency of each successful operation in the window, ms. */
  latencies: number[];
}

/**
 * Runs `concurrency` callers, each repeating `op` back to back (a closed loop, like devices
 * that send their next request when the last one is answered), for `warmupMs` unmeasured then
 * `durationMs` measured. Bounded: no op starts after the deadline, and at most `maxOps`.
 * `op` returns how many units it carried.
 */
export async function closedLoop(opts: {
  concurrency: number;
  durationMs: number;
  warmupMs?: number;
  maxOps?: number;
  op: (caller: number) => Promise<number>;
}): Promise<LoopResult> {
  const warmupEnd = wallNow() + (opts.warmupMs ?? 0);
  const deadline = warmupEnd + opts.durationMs;
  const maxOps = opts.maxOps ?? 10_000_000;
  const result: LoopResult = { ops: 0, units: 0, errors: 0, elapsedMs: 0, latencies: [] };
  let started = 0;
  let windowStart = Number.NaN;
  let windowEnd = warmupEnd;
  const caller = async (i: number) => {
    while (started < maxOps) {
      const t0 = wallNow();
      if (t0 >= deadline) break;
      started++;
      try {
        const units = await opts.op(i);
        const t1 = wallNow();
        if (t0 >= warmupEnd) {
          if (Number.isNaN(windowStart)) windowStart = warmupEnd;
          result.ops++;
          result.units += units;
          result.latencies.push(t1 - t0);
          windowEnd = Math.max(windowEnd, t1);
        }
      } catch (error) {
        result.errors++;
        result.firstError ??= (error as Error).message;
        if (result.errors > 1000) break;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, i) => caller(i)));
  result.elapsedMs = Number.isNaN(windowStart) ? 0 : windowEnd - windowStart;
  return result;
}

/** Runs `op` `count` times one after the other after `warmup` unmeasured runs; latencies in ms. */
export async function sequential(count: number, warmup: number, op: (i: number) => Promise<unknown>): Promise<{ latencies: number[]; elapsedMs: number }> {
  for (let i = 0; i < warmup; i++) await op(-1 - i);
  const latencies: number[] = [];
  const start = wallNow();
  for (let i = 0; i < count; i++) {
    const t0 = wallNow();
    await op(i);
    latencies.push(wallNow() - t0);
  }
  return { latencies, elapsedMs: wallNow() - start };
}

/**
 * Where each request of a pull load starts: `same`, every request at `since` (devices of a
 * team at one checkpoint: after the first, the server answers from its page cache); or
 * `distinct`, a checkpoint no other request of the run used, stepping back from `since` by
 * `stride` from `offset` (so several load processes never meet), so every pull runs the query.
 */
export type CheckpointMode = 'same' | 'distinct';

/** How far back distinct checkpoints reach before they wrap: within the 100k-record data set. */
const DISTINCT_SPAN = 60_000;

export function checkpoints(since: number, mode: CheckpointMode, offset = 0, stride = 1): () => number {
  let n = offset;
  return () => {
    if (mode === 'same') return since;
    const back = n % DISTINCT_SPAN;
    n += stride;
    return Math.max(0, since - back);
  };
}
