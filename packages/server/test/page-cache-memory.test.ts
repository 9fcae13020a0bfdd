import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('./helpers/page-cache-memory.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Measured {
  budget: number;
  pages: number;
  entries: number;
  accounted: number;
  grown: number;
}

/** Fills a cache of `budget` bytes with `pages` pages in a child process that can measure its heap. */
function measure(scenario: 'empty' | 'mixed', budget: number, pages: number): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', SCRIPT, scenario, String(budget), String(pages)], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code}: ${err}`))));
  });
}

const BUDGET = 2 * 2 ** 20;

describe('PULL_CACHE_MB bounds the memory the page cache really holds', () => {
  // 20,000 pages are ~70 MB when each is counted as its JSON only: far past the budget.
  it.each(['empty', 'mixed'] as const)(
    'a cache of 2 MiB filled with 20,000 %s pages (sent, between other requests) grows the heap by at most its budget',
    async (scenario) => {
      const m = await measure(scenario, BUDGET, 20_000);
      expect(m.accounted).toBeLessThanOrEqual(BUDGET);
      expect(m.entries).toBeGreaterThan(50);
      expect(m.entries).toBeLessThan(m.pages);
      // What the heap and the buffers outside it grew by while the cache was filled (after GC).
      // A little slack for the Map's table and the allocator's rounding.
      expect(m.grown).toBeLessThanOrEqual(BUDGET * 1.1 + 256 * 1024);
      // Per entry, the accounting is at least what an entry was measured to cost: the budget
      // holds whatever the number of entries.
      expect(m.accounted / m.entries).toBeGreaterThanOrEqual((0.9 * m.grown) / m.entries);
    },
    60_000,
  );
});
