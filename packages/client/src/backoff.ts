import { FieldsyncError } from './errors.js';

/** How retries wait: exponential, capped, with jitter. */
export interface BackoffOptions {
  /** The first delay's ceiling, in ms (500). */
  baseMs?: number;
  /** The largest delay, in ms (30 000). */
  maxMs?: number;
  /** Tries per call, the first included, before giving up (8). `Infinity` retries forever. */
  maxAttempts?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { baseMs: 500, maxMs: 30_000, maxAttempts: 8 };

/**
 * The wait before retry number `attempt` (0 for the first retry): "equal jitter", half of the
 * exponential step fixed and half random, so delays grow for sure but a fleet that failed
 * together does not retry together.
 *
 * @example
 * backoffDelay(0, { baseMs: 500 }); // 250..500 ms
 * backoffDelay(3, { baseMs: 500 }); // 2000..4000 ms
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const { baseMs, maxMs } = { ...DEFAULT_BACKOFF, ...opts };
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * (step / 2));
}

/**
 * The wait the server asked for (`Retry-After`) plus a little jitter, so clients told the same
 * number do not come back in the same millisecond.
 */
export function retryAfterDelay(retryAfterMs: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const { baseMs } = { ...DEFAULT_BACKOFF, ...opts };
  return Math.round(retryAfterMs + random() * Math.min(baseMs, 1000));
}

/** Parses a `Retry-After` header (seconds or an HTTP date) into milliseconds from `now`. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/**
 * Resolves after `ms`, or early when `wake` aborts (the network is back); rejects with a
 * `CLOSED` error as soon as `signal` aborts.
 */
export function sleep(ms: number, signal?: AbortSignal, wake?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new FieldsyncError('CLOSED', 'The client was closed'));
    if (wake?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      wake?.removeEventListener('abort', onWake);
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    const onAbort = () => {
      done();
      reject(new FieldsyncError('CLOSED', 'The client was closed'));
    };
    const onWake = () => {
      done();
      resolve();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    wake?.addEventListener('abort', onWake, { once: true });
  });
}

/** One retry about to happen: what failed and how long the SDK waits. */
export interface RetryInfo {
  /** What was being done: `push`, `pull`. */
  operation: string;
  /** 1 for the first retry. */
  attempt: number;
  delayMs: number;
  /** The error code (`NETWORK`, `RATE_LIMITED`, `INTERNAL`, ...). */
  code: string;
  status?: number;
}

/**
 * Runs `fn` until it succeeds, retrying retryable `FieldsyncError`s (see `retryable`) with
 * `backoffDelay`, or the server's `Retry-After` when it sent one. Other errors, and the last
 * one once `maxAttempts` tries failed, are thrown.
 *
 * @example
 * const data = await withRetry('report', () => upload(report), { backoff: { maxAttempts: 5 } });
 */
export async function withRetry<T>(
  operation: string,
  fn: () => Promise<T>,
  opts: { backoff?: BackoffOptions; random?: () => number; signal?: AbortSignal; wake?: () => AbortSignal; onRetry?: (info: RetryInfo) => void } = {},
): Promise<T> {
  const backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof FieldsyncError) || !error.retryable || attempt >= backoff.maxAttempts || opts.signal?.aborted) throw error;
      const delayMs =
        error.retryAfterMs !== undefined
          ? retryAfterDelay(error.retryAfterMs, backoff, opts.random)
          : backoffDelay(attempt - 1, backoff, opts.random);
      opts.onRetry?.({ operation, attempt, delayMs, code: error.code, status: error.status });
      await sleep(delayMs, opts.signal, opts.wake?.());
    }
  }
}
