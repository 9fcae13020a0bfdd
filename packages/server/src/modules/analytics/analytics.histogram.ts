/**
 * Latencies as counts in fixed log-scale buckets: bucket 0 holds <= 1 ms, bucket i holds
 * (1.1^(i-1), 1.1^i] ms, the last one everything longer (about 23 minutes and up). Counts of
 * instances and minutes add up element by element, and a percentile read from the sum is
 * within 10% of the true one.
 */
export const HIST_BUCKETS = 160;
const GROWTH = 1.1;
const LOG_GROWTH = Math.log(GROWTH);

/** The bucket of a latency in milliseconds. */
export function bucketOf(ms: number): number {
  if (!(ms > 1)) return 0;
  return Math.min(HIST_BUCKETS - 1, Math.ceil(Math.log(ms) / LOG_GROWTH - 1e-9));
}

/** An empty histogram. */
export const emptyHist = (): number[] => new Array<number>(HIST_BUCKETS).fill(0);

/** Adds `from` into `into`. */
export function addHist(into: number[], from: readonly number[]): void {
  for (let i = 0; i < HIST_BUCKETS; i++) into[i] += Number(from[i] ?? 0);
}

/** The `q` quantile (0-1) in milliseconds: the upper bound of its bucket, rounded to 0.1 ms; null when empty. */
export function quantile(hist: readonly number[], q: number): number | null {
  let total = 0;
  for (const n of hist) total += Number(n);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += Number(hist[i]);
    if (seen >= rank) return Math.round(GROWTH ** i * 10) / 10;
  }
  return Math.round(GROWTH ** (hist.length - 1) * 10) / 10;
}
