import 'fake-indexeddb/auto';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import initSqlJs, { type Database, type SqlJsStatic } from 'sql.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStore, IndexedDbStore, MemoryStore, SqliteStore, type OutboxEntry, type SqlExecutor, type SqlRunner, type Store } from '../src/node.js';

let dir: string;
let SQL: SqlJsStatic;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fieldsync-store-'));
  SQL = await initSqlJs();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const entry = (n: number): OutboxEntry => ({ changeId: `c${n}`, collection: 'contacts', id: `r${n}`, operation: 'create', timestamp: n, data: { firstName: `N${n}` } });
const record = (n: number) => ({ collection: 'contacts', id: `r${n}`, data: { id: `r${n}`, version: n, isDeleted: false, firstName: `N${n}` } });

/** An executor over sql.js (WASM SQLite): what a React Native app writes over op-sqlite or expo-sqlite. */
export function sqlJsExecutor(db: Database): SqlExecutor {
  const runner: SqlRunner = {
    async execute(sql, params = []) {
      const statement = db.prepare(sql);
      try {
        statement.bind(params as never);
        const rows: Record<string, unknown>[] = [];
        while (statement.step()) rows.push(statement.getAsObject());
        return { rows };
      } finally {
        statement.free();
      }
    },
  };
  let tail: Promise<unknown> = Promise.resolve();
  return {
    ...runner,
    transaction(fn) {
      const run = tail.then(async () => {
        db.run('BEGIN');
        try {
          const result = await fn(runner);
          db.run('COMMIT');
          return result;
        } catch (error) {
          db.run('ROLLBACK');
          throw error;
        }
      });
      tail = run.catch(() => undefined);
      return run;
    },
  };
}

/** A SQLite database that outlives its stores, as a file on a phone does (sql.js keeps it in memory: exported and re-opened on each "restart"). */
function sqliteDevice() {
  let bytes: Uint8Array | undefined;
  let db: Database | undefined;
  return {
    open(opts?: { tablePrefix?: string }) {
      if (db) {
        bytes = db.export();
        db.close();
      }
      db = new SQL.Database(bytes);
      return new SqliteStore(sqlJsExecutor(db), opts);
    },
    get db() {
      return db!;
    },
  };
}

let idbCount = 0;

/** Every store, as a way to open "the same store" again after a restart. */
const STORES: [string, () => () => Store][] = [
  ['MemoryStore', () => {
    const store = new MemoryStore();
    return () => store;
  }],
  ['FileStore', () => {
    const path = join(dir, `contract-${Math.random().toString(36).slice(2)}.jsonl`);
    return () => new FileStore(path, { fsync: false });
  }],
  ['IndexedDbStore', () => {
    const name = `contract-${++idbCount}`;
    return () => new IndexedDbStore(name);
  }],
  ['SqliteStore', () => {
    const device = sqliteDevice();
    return () => device.open();
  }],
];

describe.each(STORES)('the store contract: %s', (_name, makeDevice) => {
  it('starts empty, applies batches in order and whole, and gives everything back after a restart, outbox order included', async () => {
    const open = makeDevice();
    const store = open();
    expect(await store.load()).toEqual({ checkpoint: 0, records: [], outbox: [], meta: {} });
    await store.write({ meta: { deviceId: 'd1' }, enqueue: [entry(1), entry(2), entry(3)] });
    await store.write({ dequeue: ['c2'], rebase: [{ changeId: 'c3', baseVersion: 7 }], put: [record(1)], checkpoint: 9 });
    await store.write({ enqueue: [entry(4)], put: [{ ...record(1), data: { ...record(1).data, version: 10, firstName: 'Changed' } }], meta: { lastSyncedAt: '2026-01-02T03:04:05.000Z' } });
    await store.close();
    const again = open();
    const loaded = await again.load();
    await again.close();
    expect(loaded).toEqual({
      checkpoint: 9,
      records: [{ ...record(1), data: { ...record(1).data, version: 10, firstName: 'Changed' } }],
      outbox: [entry(1), { ...entry(3), baseVersion: 7 }, entry(4)],
      meta: { deviceId: 'd1', lastSyncedAt: '2026-01-02T03:04:05.000Z' },
    });
  });

  it('replaces a queued change enqueued again in place (a reference rewritten), keeping the outbox order', async () => {
    const open = makeDevice();
    const store = open();
    await store.load();
    await store.write({ enqueue: [entry(1), entry(2), entry(3)] });
    await store.write({ enqueue: [{ ...entry(2), data: { firstName: 'Rewritten' } }], dequeue: ['c1'] });
    await store.close();
    const again = open();
    const loaded = await again.load();
    await again.close();
    expect(loaded.outbox).toEqual([{ ...entry(2), data: { firstName: 'Rewritten' } }, entry(3)]);
  });

  it('keeps an outbox of hundreds of changes in order, and pages of records', async () => {
    const open = makeDevice();
    const store = open();
    await store.load();
    for (let i = 1; i <= 300; i++) await store.write({ enqueue: [entry(i)] });
    await store.write({ put: Array.from({ length: 500 }, (_, i) => record(i + 1)), checkpoint: 500, dequeue: ['c1', 'c300'] });
    await store.close();
    const again = open();
    const loaded = await again.load();
    await again.close();
    expect(loaded.outbox.map((e) => e.changeId)).toEqual(Array.from({ length: 298 }, (_, i) => `c${i + 2}`));
    expect(loaded.records).toHaveLength(500);
    expect(loaded.checkpoint).toBe(500);
  });
});

describe('FileStore', () => {
  it('drops a last line a crash cut short, and keeps appending after it', async () => {
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

  it('refuses a file damaged in the middle rather than lose what follows', async () => {
    const path = join(dir, 'bad.jsonl');
    await writeFile(path, '{"b":{"checkpoint":1}}\nnot json\n{"b":{"checkpoint":2}}\n');
    await expect(new FileStore(path).load()).rejects.toMatchObject({ code: 'STORE' });
  });

  it('compacts its log into one snapshot line', async () => {
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

describe('IndexedDbStore', () => {
  it('applies nothing of a batch that fails part-way (one transaction)', async () => {
    const store = new IndexedDbStore('atomic');
    await store.load();
    await store.write({ checkpoint: 3, enqueue: [entry(1)] });
    // A value IndexedDB cannot store (a function) fails the third request of the batch.
    const bad = { ...record(2), data: { ...record(2).data, callback: () => 1 } } as never;
    await expect(store.write({ checkpoint: 4, put: [record(1), bad], dequeue: ['c1'] })).rejects.toMatchObject({ code: 'STORE' });
    await store.close();
    const again = new IndexedDbStore('atomic');
    expect(await again.load()).toMatchObject({ checkpoint: 3, records: [], outbox: [entry(1)] });
    await again.close();
  });

  it('is gone after destroy (sign-out on a shared device)', async () => {
    const store = new IndexedDbStore('to-destroy');
    await store.load();
    await store.write({ enqueue: [entry(1)], checkpoint: 2 });
    await store.close();
    await IndexedDbStore.destroy('to-destroy');
    const again = new IndexedDbStore('to-destroy');
    expect(await again.load()).toEqual({ checkpoint: 0, records: [], outbox: [], meta: {} });
    await again.close();
  });
});

describe('SqliteStore', () => {
  it('applies nothing of a batch that fails part-way (one transaction)', async () => {
    const device = sqliteDevice();
    const store = device.open();
    await store.load();
    await store.write({ checkpoint: 3, enqueue: [entry(1)] });
    // A value JSON cannot hold (a BigInt) fails the batch after its checkpoint was written.
    const bad = { ...record(2), data: { ...record(2).data, big: 1n } } as never;
    await expect(store.write({ checkpoint: 4, put: [record(1), bad], dequeue: ['c1'] })).rejects.toMatchObject({ code: 'STORE' });
    const again = device.open();
    expect(await again.load()).toMatchObject({ checkpoint: 3, records: [], outbox: [entry(1)] });
  });

  it('keeps two stores apart in one database by table prefix, and refuses a prefix that is not an identifier', async () => {
    const device = sqliteDevice();
    const a = device.open({ tablePrefix: 'a_' });
    await a.load();
    await a.write({ checkpoint: 5, enqueue: [entry(1)] });
    const b = new SqliteStore(sqlJsExecutor(device.db), { tablePrefix: 'b_' });
    expect(await b.load()).toEqual({ checkpoint: 0, records: [], outbox: [], meta: {} });
    expect((await a.load()).checkpoint).toBe(5);
    expect(() => new SqliteStore(sqlJsExecutor(device.db), { tablePrefix: 'x; DROP TABLE a_records; --' })).toThrow(/identifier/);
  });
});
