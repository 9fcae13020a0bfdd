import { deleteDB, openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { FieldsyncError } from './errors.js';
import type { Store, StoreBatch, StoreSnapshot, StoredRecord } from './store.js';
import type { OutboxEntry } from './types.js';

/** The database's layout: records by `[collection, id]`, the outbox by changeId (ordered by `seq`), small facts by key. */
interface FieldsyncDb extends DBSchema {
  records: { key: [string, string]; value: StoredRecord };
  outbox: { key: string; value: { seq: number; entry: OutboxEntry } };
  meta: { key: string; value: unknown };
}

export interface IndexedDbStoreOptions {
  /**
   * The transaction durability (`strict`): `strict` resolves a write once the browser has
   * flushed it to disk, so a change the app was told is queued survives a crash or power loss;
   * `relaxed` is faster and survives a tab or browser restart but maybe not an OS crash.
   */
  durability?: 'strict' | 'relaxed' | 'default';
}

const CHECKPOINT = 'checkpoint';
const META = 'meta:';

/**
 * A store for browsers: the replica, the checkpoint and the outbox in an IndexedDB database
 * of that name (through `idb`). Each batch is one IndexedDB transaction, so it is applied whole
 * or not at all; everything survives reloads, closed tabs and restarts. Two tabs of one app
 * should use two device ids (and two names): a store belongs to one device.
 *
 * @example
 * import { createClient, IndexedDbStore } from '@fieldsync/client';
 *
 * const client = await createClient({ url: location.origin, token, deviceId, store: new IndexedDbStore(`fieldsync-${deviceId}`) });
 */
export class IndexedDbStore implements Store {
  private db?: IDBPDatabase<FieldsyncDb>;
  private seq = 0;

  constructor(
    readonly name: string,
    private readonly opts: IndexedDbStoreOptions = {},
  ) {
    if (typeof name !== 'string' || name.length === 0) throw new FieldsyncError('BAD_REQUEST', 'IndexedDbStore needs a database name');
  }

  async load(): Promise<StoreSnapshot> {
    if (!(globalThis as { indexedDB?: IDBFactory }).indexedDB) throw new FieldsyncError('STORE', 'IndexedDB is not available here (IndexedDbStore is for browsers)');
    try {
      this.db = await openDB<FieldsyncDb>(this.name, 1, {
        upgrade(db) {
          db.createObjectStore('records');
          db.createObjectStore('outbox');
          db.createObjectStore('meta');
        },
        blocking: () => this.db?.close(), // a newer version of the app wants to upgrade: let it
      });
    } catch (cause) {
      throw new FieldsyncError('STORE', `Cannot open IndexedDB database ${this.name}: ${(cause as Error)?.message ?? cause}`, { cause });
    }
    const tx = this.db.transaction(['records', 'outbox', 'meta'], 'readonly');
    const [records, queued, metaKeys, metaValues] = await Promise.all([
      tx.objectStore('records').getAll(),
      tx.objectStore('outbox').getAll(),
      tx.objectStore('meta').getAllKeys(),
      tx.objectStore('meta').getAll(),
    ]);
    await tx.done;
    queued.sort((a, b) => a.seq - b.seq);
    this.seq = queued.length > 0 ? queued[queued.length - 1].seq : 0;
    const snapshot: StoreSnapshot = { checkpoint: 0, records, outbox: queued.map((q) => q.entry), meta: {} };
    metaKeys.forEach((key, i) => {
      if (key === CHECKPOINT) snapshot.checkpoint = metaValues[i] as number;
      else if (key.startsWith(META)) snapshot.meta[key.slice(META.length)] = metaValues[i];
    });
    return snapshot;
  }

  async write(batch: StoreBatch): Promise<void> {
    const db = this.db;
    if (!db) throw new FieldsyncError('STORE', 'IndexedDbStore.write before load');
    const tx = db.transaction(['records', 'outbox', 'meta'], 'readwrite', { durability: this.opts.durability ?? 'strict' });
    const records = tx.objectStore('records');
    const outbox = tx.objectStore('outbox');
    const meta = tx.objectStore('meta');
    // Requests are queued at once and run in order; awaiting only `tx.done` keeps the transaction alive.
    const requests: Promise<unknown>[] = [];
    try {
      if (batch.checkpoint !== undefined) requests.push(meta.put(batch.checkpoint, CHECKPOINT));
      for (const r of batch.put ?? []) requests.push(records.put(r, [r.collection, r.id]));
      for (const entry of batch.enqueue ?? []) {
        // Requests complete in order, so sequence numbers are taken in the batch's order; a change queued already keeps its place.
        requests.push(outbox.get(entry.changeId).then((queued) => outbox.put({ seq: queued?.seq ?? ++this.seq, entry }, entry.changeId)));
      }
      for (const changeId of batch.dequeue ?? []) requests.push(outbox.delete(changeId));
      for (const { changeId, baseVersion } of batch.rebase ?? []) {
        requests.push(
          outbox.get(changeId).then((queued) => (queued ? outbox.put({ seq: queued.seq, entry: { ...queued.entry, baseVersion } }, changeId) : undefined)),
        );
      }
      for (const [key, value] of Object.entries(batch.meta ?? {})) requests.push(meta.put(value, META + key));
      await Promise.all([...requests, tx.done]);
    } catch (cause) {
      // A request refused (a value that cannot be stored, the quota): nothing of the batch stays.
      try {
        tx.abort();
      } catch {
        // already finished or aborted
      }
      await tx.done.catch(() => undefined);
      for (const request of requests) request.catch(() => undefined);
      throw new FieldsyncError('STORE', `IndexedDB write failed: ${(cause as Error)?.message ?? cause}`, { cause });
    }
  }

  async close(): Promise<void> {
    this.db?.close();
    this.db = undefined;
  }

  /**
   * Deletes the whole database (sign-out on a shared device). Close the client first.
   *
   * @example
   * await client.close();
   * await IndexedDbStore.destroy('fieldsync-phone-1');
   */
  static async destroy(name: string): Promise<void> {
    await deleteDB(name);
  }
}
