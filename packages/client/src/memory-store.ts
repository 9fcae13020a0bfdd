import { applyBatch, emptyState, snapshotOf, type SnapshotState, type Store, type StoreBatch, type StoreSnapshot } from './store.js';

/**
 * A store in memory. It outlives the clients that use it: a new client on the same
 * `MemoryStore` starts from what the previous one left (a restart without a disk), so it is
 * also the store of tests and simulations. Reads return copies.
 *
 * @example
 * const store = new MemoryStore();
 * const client = await createClient({ url, apiKey, deviceId: 'phone-1', store });
 */
export class MemoryStore implements Store {
  private state: SnapshotState = emptyState();

  async load(): Promise<StoreSnapshot> {
    return structuredClone(snapshotOf(this.state));
  }

  async write(batch: StoreBatch): Promise<void> {
    applyBatch(this.state, structuredClone(batch));
  }

  async close(): Promise<void> {}

  /** A copy of what the store holds now. */
  snapshot(): StoreSnapshot {
    return structuredClone(snapshotOf(this.state));
  }
}
