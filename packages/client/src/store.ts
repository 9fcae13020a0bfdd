import type { OutboxEntry, SyncRecord } from './types.js';

/** One record as the server last sent it (tombstones included). */
export interface StoredRecord {
  collection: string;
  id: string;
  data: SyncRecord;
}

/** Everything a device keeps between runs. */
export interface StoreSnapshot {
  /** The server version the records are complete up to. */
  checkpoint: number;
  records: StoredRecord[];
  /** Changes not yet acknowledged, oldest first. */
  outbox: OutboxEntry[];
  /** Small facts of the SDK (the device id the store belongs to). */
  meta: Record<string, unknown>;
}

/**
 * One atomic set of mutations: a store applies all of it or none of it (a pulled page and
 * its checkpoint, or a push's acknowledgements, must never be half-saved).
 */
export interface StoreBatch {
  checkpoint?: number;
  /** Records to insert or replace. */
  put?: StoredRecord[];
  /** Changes to append to the outbox; one whose changeId is queued already replaces it in place (same position). */
  enqueue?: OutboxEntry[];
  /** Changes to drop from the outbox (acknowledged), by changeId. */
  dequeue?: string[];
  /** Base versions learnt for queued changes (an update of a record created offline). */
  rebase?: { changeId: string; baseVersion: number }[];
  meta?: Record<string, unknown>;
}

/**
 * Where a device keeps its replica and its outbox. The client holds the working state in
 * memory and calls `write` for every mutation, one call at a time, in order; a change is
 * "held in the outbox" once the `write` that enqueued it has resolved.
 *
 * @example
 * // A store that keeps nothing (each start is a fresh device):
 * const store: Store = {
 *   async load() { return { checkpoint: 0, records: [], outbox: [], meta: {} }; },
 *   async write() {},
 *   async close() {},
 * };
 */
export interface Store {
  /** Reads everything persisted; called once, before any `write`. */
  load(): Promise<StoreSnapshot>;
  /** Persists one batch atomically; resolves once it is durable. */
  write(batch: StoreBatch): Promise<void>;
  close(): Promise<void>;
}

/** The in-memory form of a snapshot that batches apply to. */
export interface SnapshotState {
  checkpoint: number;
  records: Map<string, StoredRecord>;
  outbox: Map<string, OutboxEntry>;
  meta: Record<string, unknown>;
}

export const recordKey = (collection: string, id: string) => `${collection}\u0000${id}`;

export function emptyState(): SnapshotState {
  return { checkpoint: 0, records: new Map(), outbox: new Map(), meta: {} };
}

/** Applies `batch` to `state` (shared by the store implementations). */
export function applyBatch(state: SnapshotState, batch: StoreBatch): void {
  if (batch.checkpoint !== undefined) state.checkpoint = batch.checkpoint;
  for (const r of batch.put ?? []) state.records.set(recordKey(r.collection, r.id), r);
  for (const e of batch.enqueue ?? []) state.outbox.set(e.changeId, e);
  for (const changeId of batch.dequeue ?? []) state.outbox.delete(changeId);
  for (const { changeId, baseVersion } of batch.rebase ?? []) {
    const entry = state.outbox.get(changeId);
    if (entry) state.outbox.set(changeId, { ...entry, baseVersion });
  }
  if (batch.meta) Object.assign(state.meta, batch.meta);
}

export function stateFromSnapshot(snapshot: StoreSnapshot): SnapshotState {
  const state = emptyState();
  state.checkpoint = snapshot.checkpoint;
  for (const r of snapshot.records) state.records.set(recordKey(r.collection, r.id), r);
  for (const e of snapshot.outbox) state.outbox.set(e.changeId, e);
  state.meta = { ...snapshot.meta };
  return state;
}

/** A plain snapshot of `state` (Map insertion order keeps the outbox oldest first). */
export function snapshotOf(state: SnapshotState): StoreSnapshot {
  return { checkpoint: state.checkpoint, records: [...state.records.values()], outbox: [...state.outbox.values()], meta: { ...state.meta } };
}
