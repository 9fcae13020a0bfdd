import { describe, expect, it } from 'vitest';
import { costOf, DOORKEEPER_KEYS, PageCache } from './page-cache.js';
import { emptyPage, type PulledPage } from './pull.js';

const page = (latestVersion: number, chars: number): PulledPage => ({
  ...emptyPage(latestVersion, 0),
  count: 1,
  changesJson: `[${'x'.repeat(chars - 2)}]`,
});

describe('PageCache', () => {
  it('serves a page only at the latest version it was read at', () => {
    const p = page(7, 100);
    const cache = new PageCache(100 * costOf('k', p));
    cache.set('k', p);
    expect(cache.get('k', 7)).toBe(p);
    expect(cache.get('k', 8)).toBeUndefined();
    expect(cache.get('other', 7)).toBeUndefined();
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: costOf('k', p), hits: 1, misses: 2 });
    // has() says whether asking for the version is worth it, at any version, and counts nothing.
    expect([cache.has('k'), cache.has('other')]).toEqual([true, false]);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('keeps within its budget, dropping the least recently used pages first', () => {
    const budget = 10 * costOf('a', page(1, 100));
    const cache = new PageCache(budget);
    for (const key of ['a', 'b', 'c', 'd']) cache.set(key, page(1, 100));
    expect(cache.get('a', 1)).toBeDefined(); // a is now the most recently used
    for (const key of ['e', 'f', 'g', 'h', 'i', 'j', 'k']) cache.set(key, page(1, 100));
    expect(cache.stats().bytes).toBeLessThanOrEqual(budget);
    expect(cache.stats().entries).toBe(10);
    expect(cache.get('a', 1)).toBeDefined();
    expect(cache.get('b', 1)).toBeUndefined();
    expect(cache.get('k', 1)).toBeDefined();
  });

  it('replaces a key without counting it twice, and does not keep a page over an eighth of the budget', () => {
    const big = page(2, 5000);
    const cache = new PageCache(8 * costOf('big', big) - 1);
    cache.set('k', page(1, 100));
    cache.set('k', page(2, 50));
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: costOf('k', page(2, 50)) });
    expect(cache.get('k', 2)?.latestVersion).toBe(2);
    cache.set('big', big);
    expect(cache.get('big', 2)).toBeUndefined();
    expect(cache.stats().entries).toBe(1);
  });

  it('keeps an offered page from the second offer of its key on, remembering a bounded number of keys offered once', () => {
    const cache = new PageCache(100 * costOf('k', page(1, 100)));
    cache.offer('k', page(1, 100));
    expect(cache.has('k')).toBe(false);
    cache.offer('k', page(2, 100));
    expect(cache.get('k', 2)?.latestVersion).toBe(2);
    // Kept pages are replaced at once.
    cache.offer('k', page(3, 100));
    expect(cache.get('k', 3)?.latestVersion).toBe(3);
    // A key offered once is forgotten after DOORKEEPER_KEYS others.
    cache.offer('once', page(1, 100));
    for (let i = 0; i < DOORKEEPER_KEYS; i++) cache.offer(`other ${i}`, page(1, 100));
    cache.offer('once', page(1, 100));
    expect(cache.has('once')).toBe(false);
    cache.offer('once', page(1, 100));
    expect(cache.has('once')).toBe(true);
    expect(cache.stats().entries).toBe(2);
  });

  it('charges an empty page what it costs, not the 2 characters of its JSON', () => {
    const empty = emptyPage(9, 3);
    const key = `${'t'.repeat(36)}|contacts,spaces,categories,items|${'u'.repeat(36)}|3|1000`;
    // The key, the page object and map entry, and the bytes sent: a short answer's buffer
    // keeps a whole pool slab alive.
    expect(costOf(key, empty)).toBeGreaterThan(key.length + Buffer.poolSize);
    // Text that is not ASCII costs two bytes a character, and is sent as more bytes still.
    const ascii = page(1, 10_000);
    const accented = { ...ascii, changesJson: `[${'é'.repeat(9998)}]` };
    expect(costOf('k', accented) - costOf('k', ascii)).toBeGreaterThanOrEqual(2 * 9998);
  });
});
