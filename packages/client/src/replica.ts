import type { Change } from '@fieldsync/protocol/sync';
import { recordKey, type StoreSnapshot, type StoredRecord } from './store.js';
import type { OutboxEntry, SyncRecord } from './types.js';

/** A local change: queued (in the outbox) or acknowledged and shown until the pull catches up. */
interface LocalChange {
  entry: OutboxEntry;
  /** Its `write` to the store has resolved: it may be pushed. */
  durable: boolean;
  /** Acknowledged by the server at this version: kept in the view until the checkpoint reaches it. */
  ackedAt?: number;
}

/**
 * The device's copy of the data: the records as the server last sent them (the base), plus
 * this device's own changes on top (the overlay). What the app sees is the base with the
 * overlay re-applied, so a server change never hides a local edit not yet pushed, and a
 * pushed edit stays visible until the pull that returns its result.
 */
export class Replica {
  checkpoint = 0;
  private readonly base = new Map<string, StoredRecord>();
  /** Local changes by changeId, oldest first (a Map keeps insertion order). */
  private readonly local = new Map<string, LocalChange>();
  private readonly localByKey = new Map<string, LocalChange[]>();
  private readonly ids = new Map<string, Set<string>>();
  private queuedCount = 0;

  load(snapshot: StoreSnapshot): void {
    this.checkpoint = snapshot.checkpoint;
    for (const r of snapshot.records) this.putBase(r);
    for (const entry of snapshot.outbox) this.addLocal({ entry, durable: true });
  }

  /** The visible state of a record: undefined when absent or deleted. */
  view(collection: string, id: string): SyncRecord | undefined {
    const key = recordKey(collection, id);
    let record: SyncRecord | undefined = this.base.get(key)?.data;
    // Deletes are final: nothing local brings a deleted record back.
    if (record?.isDeleted) return undefined;
    for (const change of this.localByKey.get(key) ?? []) {
      const { operation, data } = change.entry;
      if (operation === 'create') record ??= { ...data, id, version: 0, isDeleted: false };
      else if (operation === 'update') record = record ? { ...record, ...data } : undefined;
      else return undefined;
    }
    return record;
  }

  /** Every visible record of `collection`. */
  list(collection: string): SyncRecord[] {
    const out: SyncRecord[] = [];
    for (const id of this.ids.get(collection) ?? []) {
      const record = this.view(collection, id);
      if (record) out.push(record);
    }
    return out;
  }

  /** The base record, tombstones included (what the server last said). */
  baseRecord(collection: string, id: string): SyncRecord | undefined {
    return this.base.get(recordKey(collection, id))?.data;
  }

  /** Every base record (tombstones included). */
  baseRecords(): StoredRecord[] {
    return [...this.base.values()];
  }

  /**
   * The version a new change of the record is based on: the base record's, else the version
   * the server gave this device's own acknowledged create; undefined for a record only this
   * device knows yet (it is filled in when the create is acknowledged).
   */
  baseVersionOf(collection: string, id: string): number | undefined {
    const base = this.base.get(recordKey(collection, id));
    if (base) return base.data.version;
    let version: number | undefined;
    for (const change of this.localByKey.get(recordKey(collection, id)) ?? []) {
      if (change.ackedAt !== undefined) version = Math.max(version ?? 0, change.ackedAt);
    }
    return version;
  }

  enqueue(entry: OutboxEntry): void {
    this.addLocal({ entry, durable: false });
  }

  markDurable(changeId: string): void {
    const change = this.local.get(changeId);
    if (change) change.durable = true;
  }

  /** Queued changes, oldest first; `durableOnly` stops at the first one not yet saved. */
  queued(durableOnly = false): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    for (const change of this.local.values()) {
      if (change.ackedAt !== undefined) continue;
      if (durableOnly && !change.durable) break;
      out.push(change.entry);
    }
    return out;
  }

  /** Changes queued (not acknowledged). */
  get pending(): number {
    return this.queuedCount;
  }

  /**
   * The server took the change (applied, replayed or resolved it) at `version`: it leaves the
   * outbox but stays in the view until the checkpoint reaches that version. Later queued
   * changes of a record created offline learn their base version here.
   */
  acknowledge(changeId: string, version: number | undefined): { changeId: string; baseVersion: number }[] {
    const change = this.local.get(changeId);
    if (!change) return [];
    if (version === undefined || version <= this.checkpoint) {
      this.removeLocal(change);
      return [];
    }
    change.ackedAt = version;
    this.queuedCount--;
    const rebased: { changeId: string; baseVersion: number }[] = [];
    const key = recordKey(change.entry.collection, change.entry.id);
    for (const later of this.localByKey.get(key) ?? []) {
      if (later.ackedAt === undefined && later.entry.baseVersion === undefined && later.entry.operation !== 'create') {
        later.entry = { ...later.entry, baseVersion: version };
        rebased.push({ changeId: later.entry.changeId, baseVersion: version });
      }
    }
    return rebased;
  }

  /**
   * Queued changes whose fields name record `from` (a top-level value equal to it) now name
   * `to`; answers them, with their record's view before, for saving and change events.
   */
  rewriteReferences(from: string, to: string): { entry: OutboxEntry; before: SyncRecord | undefined }[] {
    const out: { entry: OutboxEntry; before: SyncRecord | undefined }[] = [];
    for (const change of this.local.values()) {
      if (change.ackedAt !== undefined) continue;
      const data = change.entry.data;
      if (!Object.values(data).includes(from)) continue;
      const before = this.view(change.entry.collection, change.entry.id);
      const next = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v === from ? to : v]));
      change.entry = { ...change.entry, data: next };
      out.push({ entry: change.entry, before });
    }
    return out;
  }

  /** The server refused the change: it leaves the outbox and the view. */
  drop(changeId: string): void {
    const change = this.local.get(changeId);
    if (change) this.removeLocal(change);
  }

  /** Applies one server change to the base; answers the stored record. */
  applyRemote(change: Change): StoredRecord {
    const deleted = change.op === 'delete';
    const data = { ...change.data, id: change.id, isDeleted: deleted || change.data.isDeleted === true } as SyncRecord;
    if (typeof data.version !== 'number') data.version = change.version;
    const stored: StoredRecord = { collection: change.collection, id: change.id, data };
    this.putBase(stored);
    return stored;
  }

  /** The records with acknowledged changes at or below `version` (what `advance(version)` drops). */
  acknowledgedUpTo(version: number): { collection: string; id: string }[] {
    const out: { collection: string; id: string }[] = [];
    for (const c of this.local.values()) {
      if (c.ackedAt !== undefined && c.ackedAt <= Math.max(version, this.checkpoint)) out.push({ collection: c.entry.collection, id: c.entry.id });
    }
    return out;
  }

  /** Moves the checkpoint; acknowledged changes it covers leave the view. Answers their record keys. */
  advance(checkpoint: number): { collection: string; id: string }[] {
    this.checkpoint = Math.max(this.checkpoint, checkpoint);
    const done = [...this.local.values()].filter((c) => c.ackedAt !== undefined && c.ackedAt <= this.checkpoint);
    for (const change of done) this.removeLocal(change);
    return done.map((c) => ({ collection: c.entry.collection, id: c.entry.id }));
  }

  private putBase(record: StoredRecord) {
    this.base.set(recordKey(record.collection, record.id), record);
    this.idsOf(record.collection).add(record.id);
  }

  private addLocal(change: LocalChange) {
    this.local.set(change.entry.changeId, change);
    if (change.ackedAt === undefined) this.queuedCount++;
    const key = recordKey(change.entry.collection, change.entry.id);
    const list = this.localByKey.get(key);
    if (list) list.push(change);
    else this.localByKey.set(key, [change]);
    this.idsOf(change.entry.collection).add(change.entry.id);
  }

  private removeLocal(change: LocalChange) {
    this.local.delete(change.entry.changeId);
    if (change.ackedAt === undefined) this.queuedCount--;
    const key = recordKey(change.entry.collection, change.entry.id);
    const list = this.localByKey.get(key) ?? [];
    const j = list.indexOf(change);
    if (j >= 0) list.splice(j, 1);
    if (list.length === 0) {
      this.localByKey.delete(key);
      if (!this.base.has(key)) this.ids.get(change.entry.collection)?.delete(change.entry.id);
    }
  }

  private idsOf(collection: string): Set<string> {
    let set = this.ids.get(collection);
    if (!set) this.ids.set(collection, (set = new Set()));
    return set;
  }
}
