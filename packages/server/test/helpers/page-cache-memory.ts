// Run as a child process: node --expose-gc --import tsx page-cache-memory.ts <scenario> <budgetBytes> <pages>
// Fills a PageCache the way the pull route does (the page is cached, then encoded for
// sending), with other short-lived buffers allocated in between as a busy server does, and
// prints what the cache holds against what the heap grew by, as one JSON line.
import { randomUUID } from 'node:crypto';
import { PageCache } from '../../src/sync/page-cache.js';
import { deltaEnvelopeBytes, pageOf } from '../../src/sync/pull.js';

const [scenario = 'empty', budgetArg = '2097152', pagesArg = '20000'] = process.argv.slice(2);
const budget = Number(budgetArg);
const pages = Number(pagesArg);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const retained = () => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};

/** The changes of a page: none, or records of about `chars` characters, some not ASCII. */
function changesOf(i: number): { found: number; changes: string } {
  if (scenario === 'empty') return { found: 0, changes: '' };
  const chars = i % 50 === 0 ? 20_000 : 500 + (i % 7) * 400;
  const name = i % 3 === 0 ? 'Zoë Łukasiewicz' : 'Ada Lovelace';
  const record = JSON.stringify({ collection: 'contacts', op: 'upsert', id: randomUUID(), version: i, data: { firstName: name, notes: 'n'.repeat(chars) } });
  return { found: 1, changes: record };
}

const tenant = randomUUID();
const cache = new PageCache(budget);
const baseline = retained();
let noise = 0;
for (let i = 0; i < pages; i++) {
  const since = 1000 + i;
  const { found, changes } = changesOf(i);
  const page = pageOf({ latest: since + 1, found, last_version: found ? since + 1 : null, changes }, { since, limit: 1000 });
  cache.set(`${tenant}|contacts,spaces,categories,items|${randomUUID()}|${since}|1000`, page);
  deltaEnvelopeBytes(page);
  // Other requests between two pulls: short-lived buffers from the same pool.
  for (let j = 0; j < 3; j++) noise += Buffer.from(`{"success":true,"data":${'x'.repeat(200 + j * 300)}}`).length;
}
const grown = retained() - baseline;
const stats = cache.stats();
process.stdout.write(`${JSON.stringify({ scenario, budget, pages, noise, entries: stats.entries, accounted: stats.bytes, grown })}\n`);
