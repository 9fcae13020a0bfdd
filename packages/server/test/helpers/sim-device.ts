import type { ApiResponse, TestApp } from './test-app.js';

/** A small deterministic PRNG (mulberry32): the same seed gives the same run. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)];
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** `k` distinct elements of `items`, in a random order. */
  sample<T>(items: readonly T[], k: number): T[] {
    const pool = [...items];
    const out: T[] = [];
    while (out.length < k && pool.length > 0) out.push(pool.splice(this.int(pool.length), 1)[0]);
    return out;
  }
}

/** One queued offline change, exactly as POST /api/sync takes it. */
export interface SimChange {
  changeId: string;
  localId?: string;
  id?: string;
  entityType: string;
  operation: 'create' | 'update' | 'delete';
  timestamp: number;
  baseVersion?: number;
  data?: Record<string, unknown>;
}

export interface SimAck {
  changeId?: string;
  localId: string | null;
  serverId: string | null;
  operation: string;
  success: boolean;
  status: string;
  version?: number;
  code?: string;
  error?: string;
}

interface SimDelta {
  changes: { collection: string; op: 'upsert' | 'delete'; id: string; version: number; data: Record<string, unknown> }[];
  nextVersion: number;
  hasMore: boolean;
}

/** How a device names a record it knows: by server id once synced, else by its local id. */
export type SimRef = { collection: string; id: string } | { collection: string; localId: string };

export interface SyncOptions {
  /** Send lastSyncVersion and apply the answer's serverUpdates before pulling. */
  useServerUpdates?: boolean;
  /** The push reaches the server but its answer is lost: the outbox stays for a retry. */
  loseResponse?: boolean;
  /** Page size of the delta pulls. */
  pageLimit?: number;
}

export interface SyncResult {
  /** The changes sent and their acks, when the answer arrived. */
  sent: SimChange[];
  acks?: SimAck[];
  lost: boolean;
  pulledPages: number;
}

const keyOf = (collection: string, id: string) => `${collection}:${id}`;

/**
 * A simulated offline-first device: a local store of the records it may see (server ids,
 * live ones only), records created offline and not yet acknowledged (by local id), an outbox
 * of queued changes and a checkpoint. It edits offline and syncs like the client SDK: push the
 * outbox (baseVersion = the version it last saw), map local ids to server ids from the acks,
 * then pull until hasMore is false.
 */
export class SimDevice {
  /** Live records by `collection:id`, as last pulled plus this device's own unsynced edits. */
  readonly store = new Map<string, Record<string, unknown>>();
  /** Records created offline, not yet acknowledged, by local id. */
  readonly pending = new Map<string, { collection: string; data: Record<string, unknown>; deleted: boolean }>();
  readonly outbox: SimChange[] = [];
  /** localId -> serverId, from create acks. */
  readonly serverIds = new Map<string, string>();
  /** Records this device has seen deleted: none may come back. */
  readonly tombstones = new Set<string>();
  checkpoint = 0;
  private changeSeq = 0;
  private localSeq = 0;

  constructor(
    readonly name: string,
    readonly deviceId: string,
    readonly apiKey: string,
    private readonly app: TestApp,
  ) {}

  private async call(method: string, path: string, body?: unknown): Promise<ApiResponse> {
    const res = await this.app.api(method, path, { key: this.apiKey, body });
    if (res.status !== 200) throw new Error(`${this.name}: ${method} ${path} answered ${res.status}: ${res.text.slice(0, 500)}`);
    return res;
  }

  private queue(change: Omit<SimChange, 'changeId'>): SimChange {
    const full = { changeId: `${this.deviceId}-${++this.changeSeq}`, ...change };
    this.outbox.push(full);
    return full;
  }

  /** Records this device can currently edit: synced live ones and its own pending creates. */
  editable(collections: readonly string[]): SimRef[] {
    const refs: SimRef[] = [];
    for (const key of this.store.keys()) {
      const [collection, id] = key.split(':');
      if (collections.includes(collection)) refs.push({ collection, id });
    }
    for (const [localId, p] of this.pending) if (!p.deleted && collections.includes(p.collection)) refs.push({ collection: p.collection, localId });
    return refs;
  }

  /** Creates a record offline under a new local id. */
  create(collection: string, data: Record<string, unknown>, timestamp: number): SimChange {
    const localId = `${this.name}-l${++this.localSeq}`;
    this.pending.set(localId, { collection, data: { ...data }, deleted: false });
    return this.queue({ localId, entityType: collection, operation: 'create', timestamp, data });
  }

  /** Edits a record offline: only the fields it changes, against the version it last saw. */
  update(ref: SimRef, fields: Record<string, unknown>, timestamp: number): SimChange {
    if ('localId' in ref) {
      const p = this.pending.get(ref.localId)!;
      Object.assign(p.data, fields);
      // It has seen no server version of the record yet: base 0, so the server compares the
      // change with every write of the record (see the report on updates without baseVersion).
      return this.queue({ localId: ref.localId, entityType: ref.collection, operation: 'update', timestamp, baseVersion: 0, data: fields });
    }
    const key = keyOf(ref.collection, ref.id);
    const current = this.store.get(key)!;
    this.store.set(key, { ...current, ...fields });
    return this.queue({ id: ref.id, entityType: ref.collection, operation: 'update', timestamp, baseVersion: current.version as number, data: fields });
  }

  /** Deletes a record offline. */
  remove(ref: SimRef, timestamp: number): SimChange {
    if ('localId' in ref) {
      this.pending.get(ref.localId)!.deleted = true;
      return this.queue({ localId: ref.localId, entityType: ref.collection, operation: 'delete', timestamp, baseVersion: 0 });
    }
    const key = keyOf(ref.collection, ref.id);
    const current = this.store.get(key)!;
    this.store.delete(key);
    return this.queue({ id: ref.id, entityType: ref.collection, operation: 'delete', timestamp, baseVersion: current.version as number });
  }

  private applyRecord(collection: string, data: Record<string, unknown>, deleted: boolean) {
    const key = keyOf(collection, data.id as string);
    if (deleted) {
      this.store.delete(key);
      this.tombstones.add(key);
      return;
    }
    if (this.tombstones.has(key)) throw new Error(`${this.name}: deleted record ${key} came back at version ${data.version}`);
    this.store.set(key, data);
  }

  /** Pushes the outbox (when there is one) and pulls until up to date. */
  async sync(opts: SyncOptions = {}): Promise<SyncResult> {
    const sent = [...this.outbox];
    let pulledPages = 0;
    let acks: SimAck[] | undefined;
    let upToDate = false;
    if (sent.length > 0 || opts.useServerUpdates) {
      const res = await this.call('POST', '/api/sync', {
        deviceId: this.deviceId,
        changes: sent,
        ...(opts.useServerUpdates ? { lastSyncVersion: this.checkpoint } : {}),
      });
      if (opts.loseResponse) return { sent, lost: true, pulledPages };
      const answer = res.body.data as { acknowledged: SimAck[]; serverUpdates: Record<string, Record<string, unknown>[]>; hasMore: boolean; syncVersion: number };
      acks = answer.acknowledged;
      if (acks.length !== sent.length) throw new Error(`${this.name}: ${acks.length} acks for ${sent.length} changes`);
      this.outbox.splice(0, sent.length);
      sent.forEach((change, i) => {
        const ack = acks![i];
        if (change.operation !== 'create' || !change.localId || !ack.success) return;
        const known = this.serverIds.get(change.localId);
        if (known && known !== ack.serverId) throw new Error(`${this.name}: localId ${change.localId} acknowledged as ${ack.serverId}, earlier ${known}`);
        this.serverIds.set(change.localId, ack.serverId!);
        this.pending.delete(change.localId);
      });
      if (opts.useServerUpdates) {
        for (const [collection, records] of Object.entries(answer.serverUpdates)) {
          for (const data of records) this.applyRecord(collection, data, data.isDeleted === true);
        }
        if (!answer.hasMore) {
          this.checkpoint = answer.syncVersion;
          upToDate = true;
        }
      }
    }
    while (!upToDate) {
      const limit = opts.pageLimit ?? 1000;
      const res = await this.call('GET', `/api/sync/delta?version=${this.checkpoint}&limit=${limit}&deviceId=${this.deviceId}`);
      const delta = res.body.data as SimDelta;
      pulledPages++;
      let last = this.checkpoint;
      for (const change of delta.changes) {
        if (change.version <= last) throw new Error(`${this.name}: pull out of version order at ${change.version}`);
        last = change.version;
        this.applyRecord(change.collection, change.data, change.op === 'delete');
      }
      this.checkpoint = delta.nextVersion;
      upToDate = !delta.hasMore;
    }
    return { sent, acks, lost: false, pulledPages };
  }
}
