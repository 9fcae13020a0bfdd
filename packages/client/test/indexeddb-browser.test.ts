import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * IndexedDbStore in a real browser (Debian's Chromium through playwright-core): the store
 * bundled for browsers as an app bundles it, on a page of its own origin; what it holds
 * survives a reload, and a batch IndexedDB refuses part-way leaves nothing behind.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
const ORIGIN = 'http://store.fieldsync.test';
const ROOT = join(import.meta.dirname, '..', '..', '..');

let browser: Browser;
let bundle: string;

beforeAll(async () => {
  const out = await build({
    stdin: {
      contents: "import { IndexedDbStore } from '@fieldsync/client'; window.IndexedDbStore = IndexedDbStore;",
      resolveDir: join(ROOT, 'packages', 'client'),
      sourcefile: 'page.ts',
    },
    absWorkingDir: ROOT,
    bundle: true,
    format: 'iife',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
  });
  bundle = out.outputFiles[0].text;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
}, 60_000);
afterAll(async () => {
  await browser?.close();
});

/** A page of the test origin with the bundled store on `window.IndexedDbStore`. */
async function page(): Promise<Page> {
  const context = await browser.newContext();
  await context.route(`${ORIGIN}/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/store.js') return route.fulfill({ contentType: 'text/javascript', body: bundle });
    return route.fulfill({ contentType: 'text/html', body: '<!doctype html><script src="/store.js"></script>' });
  });
  const p = await context.newPage();
  await p.goto(`${ORIGIN}/`);
  return p;
}

const entry = (n: number) => ({ changeId: `c${n}`, collection: 'contacts', id: `r${n}`, operation: 'create', timestamp: n, data: { firstName: `N${n}` } });
const record = (n: number) => ({ collection: 'contacts', id: `r${n}`, data: { id: `r${n}`, version: n, isDeleted: false, firstName: `N${n}` } });

describe('IndexedDbStore in Chromium', () => {
  it('keeps records, checkpoint, meta and the outbox in order across a reload', async () => {
    const p = await page();
    const first = await p.evaluate(
      async ({ entries, records }) => {
        const store = new (window as any).IndexedDbStore('device-1');
        const empty = await store.load();
        await store.write({ meta: { deviceId: 'd1' }, enqueue: entries.slice(0, 3) });
        await store.write({ dequeue: ['c2'], rebase: [{ changeId: 'c3', baseVersion: 7 }], put: records, checkpoint: 9 });
        await store.write({ enqueue: [entries[3]] });
        await store.close();
        return empty;
      },
      { entries: [1, 2, 3, 4].map(entry), records: [record(1), record(2)] },
    );
    expect(first).toEqual({ checkpoint: 0, records: [], outbox: [], meta: {} });
    await p.reload();
    const loaded = await p.evaluate(async () => {
      const store = new (window as any).IndexedDbStore('device-1');
      const snapshot = await store.load();
      await store.close();
      return snapshot;
    });
    expect(loaded).toEqual({
      checkpoint: 9,
      records: [record(1), record(2)],
      outbox: [entry(1), { ...entry(3), baseVersion: 7 }, entry(4)],
      meta: { deviceId: 'd1' },
    });
    await p.context().close();
  });

  it('applies nothing of a batch the browser refuses part-way', async () => {
    const p = await page();
    const result = await p.evaluate(
      async ({ first, second }) => {
        const store = new (window as any).IndexedDbStore('atomic');
        await store.load();
        await store.write({ checkpoint: 3, enqueue: [first] });
        let code: string | undefined;
        try {
          // A value IndexedDB cannot clone (a function) in the second record of the batch.
          await store.write({ checkpoint: 4, put: [second, { ...second, id: 'bad', data: { ...second.data, id: 'bad', fn: () => 1 } }], dequeue: ['c1'] });
        } catch (error) {
          code = (error as { code?: string }).code;
        }
        await store.close();
        const again = new (window as any).IndexedDbStore('atomic');
        const snapshot = await again.load();
        await again.close();
        return { code, snapshot };
      },
      { first: entry(1), second: record(2) },
    );
    expect(result).toEqual({ code: 'STORE', snapshot: { checkpoint: 3, records: [], outbox: [entry(1)], meta: {} } });
    await p.context().close();
  });
});
