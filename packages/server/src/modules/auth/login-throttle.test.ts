import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { addressKey, createLoginThrottle, loginPolicy, MemoryStore, type LoginThrottle } from './login-throttle.js';

const MINUTE = 60_000;

// The same behaviour whether counts live in this process or in Redis (when TEST_REDIS_URL is set).
const stores: ('memory' | 'redis')[] = process.env.TEST_REDIS_URL ? ['memory', 'redis'] : ['memory'];
const clients: Redis[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.quit()));
});

describe.each(stores)('the login throttle in %s', (store) => {
  /** A throttle with its own clock, and keys no other test (or earlier run) used. */
  const setup = () => {
    const clock = { now: Date.UTC(2026, 0, 1) };
    let redis: Redis | undefined;
    if (store === 'redis') {
      redis = new Redis(process.env.TEST_REDIS_URL!);
      clients.push(redis);
    }
    const throttle = createLoginThrottle({ policy: loginPolicy(5), redis, now: () => clock.now });
    const run = randomUUID();
    return { clock, throttle, key: (name: string) => `${name}:${run}` };
  };
  const failN = async (throttle: LoginThrottle, keys: string[], n: number) => {
    for (let i = 0; i < n; i++) {
      const verdict = await throttle.begin(keys);
      expect(verdict.ok).toBe(true);
      if (verdict.ok) await throttle.fail(verdict.attempt);
    }
  };

  it('locks a key after 5 failures in 15 minutes, for 15 minutes, then 30, then an hour at most', async () => {
    const { clock, throttle, key } = setup();
    const keys = [key('account')];
    await failN(throttle, keys, 4);
    clock.now += 16 * MINUTE;
    // Four more pass: the first four fell out of the window.
    await failN(throttle, keys, 4);
    const locks: number[] = [];
    for (let round = 0; round < 4; round++) {
      await failN(throttle, keys, round === 0 ? 1 : 5);
      const refused = await throttle.begin(keys);
      expect(refused.ok).toBe(false);
      if (refused.ok) return;
      locks.push(refused.retryAfterMs);
      clock.now += refused.retryAfterMs;
    }
    expect(locks).toEqual([15 * MINUTE, 30 * MINUTE, 60 * MINUTE, 60 * MINUTE]);
  });

  it('forgets a lock\'s length after a day without one', async () => {
    const { clock, throttle, key } = setup();
    const keys = [key('account')];
    await failN(throttle, keys, 5);
    clock.now += 15 * MINUTE;
    await failN(throttle, keys, 5);
    const second = await throttle.begin(keys);
    expect(second.ok ? 0 : second.retryAfterMs).toBe(30 * MINUTE);
    clock.now += 25 * 60 * MINUTE;
    await failN(throttle, keys, 5);
    const fresh = await throttle.begin(keys);
    expect(fresh.ok ? 0 : fresh.retryAfterMs).toBe(15 * MINUTE);
  });

  it('counts an attempt from its start: 5 in flight take the budget, and the 6th waits', async () => {
    const { throttle, key } = setup();
    const keys = [key('account')];
    const inFlight = await Promise.all(Array.from({ length: 5 }, () => throttle.begin(keys)));
    expect(inFlight.every((v) => v.ok)).toBe(true);
    const sixth = await throttle.begin(keys);
    expect(sixth).toEqual({ ok: false, retryAfterMs: 15 * MINUTE });
    // One succeeds: its place is free again.
    const first = inFlight[0];
    if (first.ok) await throttle.succeed(first.attempt, []);
    expect((await throttle.begin(keys)).ok).toBe(true);
  });

  it('clears the keys a success names and only releases its attempt on the others', async () => {
    const { throttle, key } = setup();
    const [account, address] = [key('account'), key('address')];
    await failN(throttle, [account, address], 4);
    const ok = await throttle.begin([account, address]);
    expect(ok.ok).toBe(true);
    if (ok.ok) await throttle.succeed(ok.attempt, [account]);
    // The account starts again; the address keeps its 4 failures.
    await failN(throttle, [address], 1);
    expect((await throttle.begin([address])).ok).toBe(false);
    await failN(throttle, [account], 4);
    expect((await throttle.begin([account])).ok).toBe(true);
  });

  it('is refused on any locked key of an attempt, and clear() lifts a lock', async () => {
    const { throttle, key } = setup();
    const [locked, free] = [key('locked'), key('free')];
    await failN(throttle, [locked], 5);
    expect((await throttle.begin([free, locked])).ok).toBe(false);
    expect((await throttle.begin([free])).ok).toBe(true);
    await throttle.clear([locked]);
    expect((await throttle.begin([locked])).ok).toBe(true);
  });
});

describe('the in-process store', () => {
  it('holds at most its number of keys, dropping the least recently used', async () => {
    const store = new MemoryStore(loginPolicy(5), 10);
    for (let i = 0; i < 50; i++) await store.begin([`k${i}`], `a${i}`, 1000);
    expect(store.size()).toBe(10);
  });

  it('never throttles while off (LOGIN_MAX_FAILURES=0)', async () => {
    const throttle = createLoginThrottle({ policy: loginPolicy(0) });
    for (let i = 0; i < 20; i++) {
      const verdict = await throttle.begin(['k']);
      expect(verdict.ok).toBe(true);
      if (verdict.ok) await throttle.fail(verdict.attempt);
    }
  });

  it('counts attempts in this process while Redis fails', async () => {
    const dead = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true });
    dead.on('error', () => {});
    const errors: unknown[] = [];
    const throttle = createLoginThrottle({ policy: loginPolicy(5), redis: dead, onStoreError: (e) => errors.push(e) });
    for (let i = 0; i < 5; i++) {
      const verdict = await throttle.begin(['k']);
      expect(verdict.ok).toBe(true);
      if (verdict.ok) await throttle.fail(verdict.attempt);
    }
    expect((await throttle.begin(['k'])).ok).toBe(false);
    expect(errors.length).toBeGreaterThan(0);
    dead.disconnect();
  });
});

describe('addressKey', () => {
  it('keys IPv4 (also IPv4-mapped) by address and IPv6 by its /64', () => {
    expect(addressKey('203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('2001:db8:aa:bb::1')).toBe('2001:db8:aa:bb::/64');
    expect(addressKey('2001:0db8:00aa:00bb:1:2:3:4')).toBe('2001:db8:aa:bb::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
  });
});
