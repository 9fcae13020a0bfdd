import { describe, expect, it } from 'vitest';
import { PageCache } from './page-cache.js';
import { emptyPage, type PulledPage } from './pull.js';

const page = (latestVersion: number, chars: number): PulledPage => ({
  ...emptyPage(latestVersion, 0),
  count: 1,
  changesJson: `[${'x'.repeat(chars - 2)}]`,
});

describe('PageCache', () => {
  it('serves a page only at the latest version it was read at', () => {
    const cache = new PageCache(10_000);
    const p = page(7, 100);
    cache.set('k', p);
    expect(cache.get('k', 7)).toBe(p);
    expect(cache.get('k', 8)).toBeUndefined();
    expect(cache.get('other', 7)).toBeUndefined();
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: 200, hits: 1, misses: 2 });
    // has() says whether asking for the version is worth it, at any version, and counts nothing.
    expect([cache.has('k'), cache.has('other')]).toEqual([true, false]);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('keeps within its budget, dropping the least recently used pages first', () => {
    const cache = new PageCache(2000);
    for (const key of ['a', 'b', 'c', 'd']) cache.set(key, page(1, 100));
    expect(cache.get('a', 1)).toBeDefined(); // a is now the most recently used
    for (const key of ['e', 'f', 'g', 'h', 'i', 'j', 'k']) cache.set(key, page(1, 100));
    expect(cache.stats().bytes).toBeLessThanOrEqual(2000);
    expect(cache.get('a', 1)).toBeDefined();
    expect(cache.get('b', 1)).toBeUndefined();
    expect(cache.get('k', 1)).toBeDefined();
  });

  it('replaces a key without counting it twice, and does not keep a page over an eighth of the budget', () => {
    const cache = new PageCache(1600);
    cache.set('k', page(1, 100));
    cache.set('k', page(2, 50));
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: 100 });
    expect(cache.get('k', 2)?.latestVersion).toBe(2);
    cache.set('big', page(2, 101));
    expect(cache.get('big', 2)).toBeUndefined();
    expect(cache.stats().bytes).toBe(100);
  });
});
