import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStore, MemoryStore, type OutboxEntry, type Store } from '../src/node.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fieldsync-store-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const entry = (n: number): OutboxEntry => ({ changeId: `c${n}`, collection: 'contacts', id: `r${n}`, operation: 'create', timestamp: n, data: { firstName: `N${n}` } });
const record = (n: number) => ({ collection: 'contacts', id: `r${n}`, data: { id: `r${n}`, version: n, isDeleted: false, firstName: `N${n}` } });

/** The same behaviour from both stores: batches apply in order, whole. */
async function exercise(open: () => Store) {
  const store = open();
  expect(await store.load()).toEqual({ checkpoint: 0, records: [], outbox: [], meta: {} });
  await store.write({ meta: { deviceId: 'd1' }, enqueue: [entry(1), entry(2), entry(3)] });
  await store.write({ dequeue: ['c2'], rebase: [{ changeId: 'c3', baseVersion: 7 }], put: [record(1)], checkpoint: 9 });
  await store.close();
  const again = open();
  const loaded = await again.load();
  await again.close();
  return loaded;
}

describe('stores', () => {
  const expected = {
    checkpoint: 9,
    records: [record(1)],
    outbox: [entry(1), { ...entry(3), baseVersion: 7 }],
    meta: { deviceId: 'd1' },
  };

  it('MemoryStore keeps everything for the next client on it', async () => {
    const store = new MemoryStore();
    expect(await exercise(() => store)).toEqual(expected);
  });

  it('FileStore keeps everything across a restart, outbox order included', async () => {
    const path = join(dir, 'a.jsonl');
    expect(await exercise(() => new FileStore(path))).toEqual(expected);
  });

  it('FileStore drops a last line a crash cut short, and keeps appending after it', async () => {
    const path = join(dir, 'torn.jsonl');
    const store = new FileStore(path);
    await store.load();
    await store.write({ enqueue: [entry(1)] });
    await store.close();
    await appendFile(path, '{"b":{"enqueue":[{"changeId":"c2","coll'); // the crash
    const again = new FileStore(path);
    expect((await again.load()).outbox).toEqual([entry(1)]);
    await again.write({ enqueue: [entry(3)] });
    await again.close();
    const third = new FileStore(path);
    expect((await third.load()).outbox).toEqual([entry(1), entry(3)]);
    await third.close();
  });

  it('FileStore refuses a file damaged in the middle rather than lose what follows', async () => {
    const path = join(dir, 'bad.jsonl');
    await writeFile(path, '{"b":{"checkpoint":1}}\nnot json\n{"b":{"checkpoint":2}}\n');
    await expect(new FileStore(path).load()).rejects.toMatchObject({ code: 'STORE' });
  });

  it('FileStore compacts its log into one snapshot line', async () => {
    const path = join(dir, 'compact.jsonl');
    const store = new FileStore(path, { compactAfter: 5, fsync: false });
    await store.load();
    for (let i = 1; i <= 12; i++) await store.write({ put: [record(i)], checkpoint: i });
    await store.close();
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    expect(lines.length).toBeLessThan(5);
    const again = new FileStore(path);
    const loaded = await again.load();
    await again.close();
    expect(loaded.checkpoint).toBe(12);
    expect(loaded.records).toHaveLength(12);
  });
});
