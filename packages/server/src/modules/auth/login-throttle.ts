import { isIP } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * How failed password checks are throttled (SPEC §2, docs/security.md). Each key (an account,
 * a client address) may fail `maxFailures` times within `windowMs`; then it is locked: every
 * attempt on it gets 429 without a password check. The first lock lasts `firstLockMs`, each
 * further lock within `memoryMs` of the last twice as long as the one before, up to `maxLockMs`.
 */
export interface ThrottlePolicy {
  /** 0 turns the throttle off. */
  maxFailures: number;
  windowMs: number;
  firstLockMs: number;
  maxLockMs: number;
  /** How long a key's earlier locks count towards the length of its next one. */
  memoryMs: number;
}

const MINUTE = 60_000;

/** SPEC §2: 5 failures in 15 minutes; locks of 15 minutes, 30, then an hour. */
export const loginPolicy = (maxFailures: number): ThrottlePolicy => ({
  maxFailures,
  windowMs: 15 * MINUTE,
  firstLockMs: 15 * MINUTE,
  maxLockMs: 60 * MINUTE,
  memoryMs: 24 * 60 * MINUTE,
});

/** An admitted attempt: counted as a failure on each of its keys until it succeeds. */
export interface Attempt {
  readonly keys: string[];
  readonly id: string;
  readonly store: ThrottleStore;
}

export type Verdict = { ok: true; attempt: Attempt } | { ok: false; retryAfterMs: number };

export interface LoginThrottle {
  /**
   * Admits an attempt on every key, counting it as a failure from now on (so parallel attempts
   * cannot outrun the count), or says how long to wait when any key is locked or its budget is
   * taken by attempts in flight.
   */
  begin(keys: string[]): Promise<Verdict>;
  /** The attempt failed: it stays counted; a key that reaches the limit is locked. */
  fail(attempt: Attempt): Promise<void>;
  /** The attempt succeeded: it no longer counts; the keys of `forget` (the account) lose their failures and locks. */
  succeed(attempt: Attempt, forget: string[]): Promise<void>;
  /** Forgets the failures and locks of `keys` (an admin set the account's password). */
  clear(keys: string[]): Promise<void>;
}

/** Where counts live: this process, or Redis when instances share them. */
export interface ThrottleStore {
  /** 0 when admitted (and counted), else the wait in ms. */
  begin(keys: string[], id: string, now: number): Promise<number>;
  fail(keys: string[], id: string, now: number): Promise<void>;
  succeed(release: string[], forget: string[], id: string): Promise<void>;
}

/** The length of a key's next lock, after `strikes` recent ones. */
const lockMs = (policy: ThrottlePolicy, strikes: number) => Math.min(policy.firstLockMs * 2 ** strikes, policy.maxLockMs);

/**
 * The throttle over Redis when given (counts shared by every instance), else in this process.
 * While Redis fails, attempts are counted in this process instead (still throttled, per
 * instance) rather than refused or let through unchecked.
 */
export function createLoginThrottle(opts: {
  policy: ThrottlePolicy;
  redis?: Redis;
  now?: () => number;
  onStoreError?: (error: unknown) => void;
}): LoginThrottle {
  const { policy } = opts;
  const now = opts.now ?? (() => Date.now());
  const memory = new MemoryStore(policy);
  const shared = opts.redis ? new RedisStore(opts.redis, policy) : undefined;
  const off = policy.maxFailures <= 0;

  const withFallback = async <T>(run: (store: ThrottleStore) => Promise<T>, store: ThrottleStore): Promise<T> => {
    if (store === memory) return run(memory);
    try {
      return await run(store);
    } catch (error) {
      opts.onStoreError?.(error);
      return run(memory);
    }
  };

  return {
    async begin(keys) {
      const id = randomUUID();
      if (off) return { ok: true, attempt: { keys: [], id, store: memory } };
      let admittedBy: ThrottleStore = memory;
      const wait = await withFallback(async (store) => {
        const result = await store.begin(keys, id, now());
        admittedBy = store;
        return result;
      }, shared ?? memory);
      return wait > 0 ? { ok: false, retryAfterMs: wait } : { ok: true, attempt: { keys, id, store: admittedBy } };
    },
    async fail(attempt) {
      if (attempt.keys.length === 0) return;
      await withFallback((store) => store.fail(attempt.keys, attempt.id, now()), attempt.store);
    },
    async succeed(attempt, forget) {
      if (attempt.keys.length === 0) return;
      const release = attempt.keys.filter((k) => !forget.includes(k));
      await withFallback((store) => store.succeed(release, forget, attempt.id), attempt.store);
    },
    async clear(keys) {
      if (off || keys.length === 0) return;
      await memory.succeed([], keys, '');
      if (shared) await withFallback((store) => store.succeed([], keys, ''), shared);
    },
  };
}

interface Entry {
  /** Attempt id -> when it began: failures, and attempts still in flight. */
  attempts: Map<string, number>;
  lockedUntil: number;
  /** Locks so far, counted while each follows the last within `memoryMs`. */
  strikes: number;
  lastLockAt: number;
}

/** Counts in this process; bounded (stale keys are swept, the oldest dropped beyond `maxKeys`). */
export class MemoryStore implements ThrottleStore {
  private readonly entries = new Map<string, Entry>();
  private operations = 0;

  constructor(
    private readonly policy: ThrottlePolicy,
    private readonly maxKeys = 100_000,
  ) {}

  private strikesOf(entry: Entry, now: number) {
    return now - entry.lastLockAt > this.policy.memoryMs ? 0 : entry.strikes;
  }

  private prune(entry: Entry, now: number) {
    for (const [id, at] of entry.attempts) if (at <= now - this.policy.windowMs) entry.attempts.delete(id);
  }

  async begin(keys: string[], id: string, now: number): Promise<number> {
    let wait = 0;
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (!entry) continue;
      if (entry.lockedUntil > now) {
        wait = Math.max(wait, entry.lockedUntil - now);
        continue;
      }
      this.prune(entry, now);
      // The budget is taken by attempts in flight: if they fail, this is the lock they set.
      if (entry.attempts.size >= this.policy.maxFailures) wait = Math.max(wait, lockMs(this.policy, this.strikesOf(entry, now)));
    }
    if (wait > 0) return wait;
    for (const key of keys) {
      let entry = this.entries.get(key);
      if (entry) this.entries.delete(key); // re-inserted last: the Map's order is least recently used first
      else entry = { attempts: new Map(), lockedUntil: 0, strikes: 0, lastLockAt: 0 };
      entry.attempts.set(id, now);
      this.entries.set(key, entry);
    }
    if (++this.operations % 1000 === 0) this.sweep(now);
    // Over the cap, the least recently used keys go first.
    for (const key of this.entries.keys()) {
      if (this.entries.size <= this.maxKeys) break;
      this.entries.delete(key);
    }
    return 0;
  }

  async fail(keys: string[], id: string, now: number): Promise<void> {
    for (const key of keys) {
      const entry = this.entries.get(key);
      // Not counted any more: a lock set meanwhile cleared the window.
      if (!entry?.attempts.has(id)) continue;
      this.prune(entry, now);
      if (entry.attempts.size < this.policy.maxFailures || entry.lockedUntil > now) continue;
      const strikes = this.strikesOf(entry, now);
      entry.lockedUntil = now + lockMs(this.policy, strikes);
      entry.strikes = strikes + 1;
      entry.lastLockAt = now;
      entry.attempts.clear();
    }
  }

  async succeed(release: string[], forget: string[], id: string): Promise<void> {
    for (const key of forget) this.entries.delete(key);
    for (const key of release) this.entries.get(key)?.attempts.delete(id);
  }

  /** Keys held now. */
  size(): number {
    return this.entries.size;
  }

  /** Drops keys that hold nothing any more: no recent attempt, no lock, no lock to remember. */
  private sweep(now: number) {
    for (const [key, entry] of this.entries) {
      this.prune(entry, now);
      if (entry.attempts.size === 0 && entry.lockedUntil <= now && now - entry.lastLockAt > this.policy.memoryMs) this.entries.delete(key);
    }
  }
}

// Each throttle key is two Redis keys: a sorted set of attempts (member: attempt id, score:
// when it began) and a hash {until, strikes, last} of its lock. Times are the server's clock,
// passed in; Redis expiry only cleans up.
const COMMON = `
local now, window, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first, cap, memory = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local function strikes(s)
  local last = tonumber(redis.call('HGET', s, 'last') or '0')
  if now - last > memory then return 0 end
  return tonumber(redis.call('HGET', s, 'strikes') or '0')
end
local function lockms(n) return math.min(first * 2 ^ n, cap) end
`;

const BEGIN = `${COMMON}
local wait = 0
for i = 1, #KEYS, 2 do
  local a, s = KEYS[i], KEYS[i + 1]
  local locked = tonumber(redis.call('HGET', s, 'until') or '0')
  if locked > now then
    wait = math.max(wait, locked - now)
  else
    redis.call('ZREMRANGEBYSCORE', a, '-inf', now - window)
    if redis.call('ZCARD', a) >= max then wait = math.max(wait, lockms(strikes(s))) end
  end
end
if wait > 0 then return wait end
for i = 1, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[i], window)
end
return 0
`;

const FAIL = `${COMMON}
for i = 1, #KEYS, 2 do
  local a, s = KEYS[i], KEYS[i + 1]
  if redis.call('ZSCORE', a, ARGV[4]) then
    redis.call('ZREMRANGEBYSCORE', a, '-inf', now - window)
    local locked = tonumber(redis.call('HGET', s, 'until') or '0')
    if redis.call('ZCARD', a) >= max and locked <= now then
      local n = strikes(s)
      local ms = lockms(n)
      redis.call('HSET', s, 'until', now + ms, 'strikes', n + 1, 'last', now)
      redis.call('PEXPIRE', s, ms + memory)
      redis.call('DEL', a)
    end
  end
end
return 0
`;

type ThrottleCommand = (numKeys: number, ...args: (string | number)[]) => Promise<number>;

/** Counts in Redis, shared by every instance; each step is one atomic script. */
class RedisStore implements ThrottleStore {
  private readonly commands: { fsThrottleBegin: ThrottleCommand; fsThrottleFail: ThrottleCommand };

  constructor(
    private readonly redis: Redis,
    private readonly policy: ThrottlePolicy,
  ) {
    redis.defineCommand('fsThrottleBegin', { lua: BEGIN });
    redis.defineCommand('fsThrottleFail', { lua: FAIL });
    this.commands = redis as unknown as RedisStore['commands'];
  }

  private keysOf(keys: string[]) {
    return keys.flatMap((k) => [`fieldsync-login:${k}:a`, `fieldsync-login:${k}:s`]);
  }

  private args(id: string, now: number) {
    const p = this.policy;
    return [now, p.windowMs, p.maxFailures, id, p.firstLockMs, p.maxLockMs, p.memoryMs];
  }

  async begin(keys: string[], id: string, now: number): Promise<number> {
    const redisKeys = this.keysOf(keys);
    return Number(await this.commands.fsThrottleBegin(redisKeys.length, ...redisKeys, ...this.args(id, now)));
  }

  async fail(keys: string[], id: string, now: number): Promise<void> {
    const redisKeys = this.keysOf(keys);
    await this.commands.fsThrottleFail(redisKeys.length, ...redisKeys, ...this.args(id, now));
  }

  async succeed(release: string[], forget: string[], id: string): Promise<void> {
    const multi = this.redis.multi();
    for (const key of this.keysOf(forget)) multi.del(key);
    for (const key of release) multi.zrem(`fieldsync-login:${key}:a`, id);
    await multi.exec();
  }
}

/**
 * The throttle key of a client address. An IPv6 client usually holds a whole /64, so its
 * addresses share one key; an IPv4-mapped address is the IPv4 address.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1];
  if (isIP(address) !== 6) return address;
  const [head, tail] = address.split('%')[0].toLowerCase().split('::');
  const groups = (part: string | undefined) =>
    part ? part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : [];
  const left = groups(head);
  const right = groups(tail);
  const all = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return `${all.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
