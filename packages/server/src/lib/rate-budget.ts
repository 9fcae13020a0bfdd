import type { Redis } from 'ioredis';

/** One use counted against a budget: how many uses the window holds now, and its time left. */
export interface BudgetUse {
  current: number;
  ttl: number;
}

/**
 * Fixed-window budgets per key (a credential, an address), shared by HTTP requests and socket
 * events, so a caller has one RATE_LIMIT_PER_MINUTE budget whatever the transport. In Redis
 * when configured (every instance counts into the same window), in memory otherwise. It is
 * also the store of @fastify/rate-limit (`incr`, `child`), so the HTTP limit counts here too.
 */
export class RateBudget {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: { windowMs: number; redis?: Redis; prefix?: string },
  ) {
    if (!opts.redis) {
      this.sweeper = setInterval(() => this.sweep(), opts.windowMs);
      this.sweeper.unref();
    }
  }

  /** Counts one use of `key`; a Redis failure counts nothing and lets the use through (fail open). */
  async use(key: string): Promise<BudgetUse> {
    const { redis, windowMs, prefix = 'fieldsync-rl:' } = this.opts;
    if (redis) {
      try {
        const [current, ttl] = (await redis.eval(INCR_SCRIPT, 1, prefix + key, windowMs)) as [number, number];
        return { current, ttl: ttl > 0 ? ttl : windowMs };
      } catch {
        return { current: 0, ttl: windowMs };
      }
    }
    const now = Date.now();
    let window = this.windows.get(key);
    if (!window || window.resetAt <= now) {
      window = { count: 0, resetAt: now + windowMs };
      this.windows.set(key, window);
    }
    window.count++;
    return { current: window.count, ttl: window.resetAt - now };
  }

  /** `use` as @fastify/rate-limit's store calls it. */
  incr(key: string, cb: (error: Error | null, result?: BudgetUse) => void): void {
    this.use(key).then(
      (result) => cb(null, result),
      (error: Error) => cb(error),
    );
  }

  /** The plugin asks per route for a store: the same budget serves every route. */
  child(): RateBudget {
    return this;
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key);
  }
}

/** INCR, and start the window on the first use. */
const INCR_SCRIPT = `
local current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {current, redis.call('PTTL', KEYS[1])}`;
