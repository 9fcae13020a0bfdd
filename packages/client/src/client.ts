import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import type { AuthErrorPayload, ClientToServerEvents, ServerToClientEvents, SocketAuth } from '@fieldsync/protocol/events';
import type { ChangesEvent, Delta, PushResult } from '@fieldsync/protocol/sync';
import { backoffDelay, retryAfterDelay, withRetry, DEFAULT_BACKOFF, type BackoffOptions, type RetryInfo } from './backoff.js';
import { Emitter } from './emitter.js';
import { FieldsyncError } from './errors.js';
import { HttpTransport, type DeviceInfo, type FetchLike } from './http.js';
import { MemoryStore } from './memory-store.js';
import { idempotencyKey, newId, toWire } from './outbox.js';
import { checkQuery, runQuery, same } from './query.js';
import { Replica } from './replica.js';
import { recordKey, type Store, type StoreBatch } from './store.js';
import type {
  AckEvent,
  ChangeEvent,
  CollectionName,
  ConflictEvent,
  CreateInput,
  OutboxEntry,
  Query,
  RecordOf,
  SyncProgress,
  SyncRecord,
  SyncState,
  SyncSummary,
  UpdateInput,
  Message,
  MessageStatusEvent,
  PresenceEvent,
  TypingEvent,
} from './types.js';
import type { MessageCreate } from '@fieldsync/protocol/chat';

/** How to reach the server and who the device is. */
export interface ClientOptions {
  /** The server's base URL, e.g. `https://sync.example.com`. */
  url: string;
  /** An agent's API key (`X-API-Key`)... */
  apiKey?: string;
  /** ...or a user's access token, or a function answering a fresh one (called per request). */
  token?: string | (() => string | Promise<string>);
  /** This device's id (1-128 of letters, digits, `_ . : -`): the server keys idempotency and local ids by it. */
  deviceId: string;
  /** Where the replica and the outbox live; a fresh `MemoryStore` by default. */
  store?: Store;
  /** The `fetch` to use (the global one by default). */
  fetch?: FetchLike;
  /** Sync only these collections (all the user may see by default). */
  collections?: string[];
  /** Changes per push request (100; the server takes at most 1000). */
  batchSize?: number;
  /** Changes per pull page (1000; at most 5000). */
  pageSize?: number;
  /** Retry policy of pushes and pulls, and of the socket's reconnects. */
  backoff?: BackoffOptions;
  /** Source of jitter (Math.random). */
  random?: () => number;
  /** The clock that stamps local changes (Date.now): the conflict policies compare these. */
  clock?: () => number;
  /** Platform, app and OS version, network type: sent as headers and in the socket heartbeat. */
  deviceInfo?: DeviceInfo;
  /** A request with no answer after this long is abandoned and retried (30 000 ms). */
  requestTimeoutMs?: number;
  /** Go live at once (see `connect()`). */
  live?: boolean;
  /** In live mode, push local changes this long after the last one (50 ms). */
  autoSyncDelayMs?: number;
  /** In live mode, send a heartbeat this often (60 000 ms). */
  heartbeatIntervalMs?: number;
  /** Follow the browser's `online` / `offline` events (true; see `setNetworkAvailable`). */
  networkEvents?: boolean;
  /** Extra socket.io-client options (transports, path, ...). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
}

/** The events a client emits, for `client.on(...)`. */
export interface ClientEvents {
  /** A record's visible state changed (a local write, a pulled or live change, a refused change undone). */
  change: (event: ChangeEvent) => void;
  /** The server resolved a conflict about one of this device's changes (see `conflict.outcome`). */
  conflict: (event: ConflictEvent) => void;
  /** The server acknowledged a queued change (applied, replayed, resolved or refused). */
  acknowledged: (event: AckEvent) => void;
  /** The server refused a queued change for good (invalid, not found, forbidden, duplicate): it was dropped. */
  rejected: (event: AckEvent) => void;
  /** Status, live connection, checkpoint, pending count or pull progress changed. */
  syncStateChanged: (state: SyncState) => void;
  /** A push or pull failed and is retried after `delayMs`. */
  retry: (info: RetryInfo) => void;
  /** A background failure (live mode sync, socket authentication, the store). */
  error: (error: FieldsyncError) => void;
  /**
   * The server kept another record for one of this device's creates (a private conversation
   * of a pair that has one already): the local record is gone, queued changes that named it
   * now name `serverId` (a screen showing the local one should show that one).
   */
  idChanged: (event: { collection: string; localId: string; serverId: string }) => void;
  /** Live: a chat message of a conversation you take part in, sent by someone else (or your other device). */
  message: (message: Message) => void;
  /** Live: another participant started or stopped typing. */
  typing: (event: TypingEvent) => void;
  /** Live: a user of your team came online (first socket) or went offline (last socket). */
  presence: (event: PresenceEvent) => void;
  /** Live: a message you sent was delivered to or read by a participant. */
  messageStatus: (event: MessageStatusEvent) => void;
}

type LiveSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** Runs tasks one at a time, in order: every change to the replica's base goes through it. */
class Lane {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => T | Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** One live query: its last delivered result, compared with each new one. */
interface Watcher {
  query: Query<any>;
  callback: (records: any[]) => void;
  last: SyncRecord[] | undefined;
}

const MAX_BATCH = 1000;
/** Collections whose create the server may answer with another, existing record (`serverId`). */
const REMAPPABLE = new Set(['conversations']);
const MAX_PAGE = 5000;

/**
 * An offline-first Fieldsync device: a local replica the app reads and writes at once, an
 * outbox of changes that survives restarts (with a persistent store), `sync()` to exchange
 * them with the server, and a live mode that applies other devices' changes as they happen.
 * Create one with `createClient`.
 */
export class FieldsyncClient {
  /** This device's id. */
  readonly deviceId: string;
  private readonly opts: ClientOptions;
  private readonly http: HttpTransport;
  private readonly store: Store;
  private readonly replica = new Replica();
  private readonly events = new Emitter<ClientEvents>();
  private readonly lane = new Lane();
  private readonly closing = new AbortController();
  private readonly backoff: Required<BackoffOptions>;
  private readonly random: () => number;
  private readonly clock: () => number;
  private current: SyncState = { online: false, pending: 0, lastSyncedAt: null, checkpoint: 0, syncing: false, status: 'idle', live: 'off' };
  private readonly watchers = new Map<string, Set<Watcher>>();
  private readonly stale = new Set<string>();
  private refreshQueued = false;
  /** Aborted (and replaced) when the network is back: retry waits end early. */
  private wakeUp = new AbortController();
  private stopNetworkEvents?: () => void;
  private persisted: Promise<void> = Promise.resolve();
  private running?: Promise<SyncSummary>;
  private followUp?: Promise<SyncSummary>;
  private closed = false;

  // Live mode.
  private liveSocket?: LiveSocket;
  private liveOn = false;
  private autoSyncTimer?: ReturnType<typeof setTimeout>;
  private autoSyncFailures = 0;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private reconnectAttempts = 0;
  private heartbeatTimer?: ReturnType<typeof setInterval>;
  private shutdownHintMs?: number;

  /** Use `createClient`, which also loads the store. */
  constructor(opts: ClientOptions) {
    if (!opts.apiKey === !opts.token) throw new FieldsyncError('BAD_REQUEST', 'Give exactly one of apiKey and token');
    if (!/^[\w.:-]{1,128}$/.test(opts.deviceId)) throw new FieldsyncError('BAD_REQUEST', 'deviceId must be 1-128 of letters, digits, _ . : -');
    this.opts = opts;
    this.deviceId = opts.deviceId;
    this.store = opts.store ?? new MemoryStore();
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.random = opts.random ?? Math.random;
    this.clock = opts.clock ?? Date.now;
    this.http = new HttpTransport({
      url: opts.url,
      credentials: opts.apiKey ? { apiKey: opts.apiKey } : { token: opts.token! },
      deviceId: opts.deviceId,
      fetch: opts.fetch,
      deviceInfo: opts.deviceInfo,
      requestTimeoutMs: opts.requestTimeoutMs,
    });
  }

  /** Loads the store; refuses a store that belongs to another device. */
  async open(): Promise<void> {
    const snapshot = await this.store.load();
    const owner = snapshot.meta.deviceId;
    if (owner !== undefined && owner !== this.deviceId) {
      throw new FieldsyncError('STORE', `This store belongs to device ${String(owner)}, not ${this.deviceId}`);
    }
    this.replica.load(snapshot);
    if (owner === undefined) await this.persist({ meta: { deviceId: this.deviceId } });
    const lastSyncedAt = typeof snapshot.meta.lastSyncedAt === 'string' ? snapshot.meta.lastSyncedAt : null;
    this.setState({ checkpoint: this.replica.checkpoint, pending: this.replica.pending, lastSyncedAt });
    if (this.opts.networkEvents !== false) this.listenToNetwork();
    if (this.opts.live) this.connect();
  }

  // ---------------------------------------------------------------- reading

  /**
   * The record as this device sees it now (local changes included), or undefined when it does
   * not exist, was deleted or is not visible to this user. Records are shared with the client:
   * read them, change them through `update`.
   *
   * @example
   * const contact = await client.get('contacts', id);
   * console.log(contact?.firstName);
   */
  async get<C extends CollectionName>(collection: C, id: string): Promise<RecordOf<C> | undefined> {
    return this.replica.view(collection, id) as RecordOf<C> | undefined;
  }

  /**
   * The visible records of a collection (local changes included) that match `where`, sorted
   * by `orderBy`, at most `limit`. Runs on the device: no network, offline too.
   *
   * @example
   * const lees = await client.list('contacts', { where: { lastName: 'Lee' }, orderBy: ['firstName', 'asc'], limit: 20 });
   * const open = await client.list('items', { where: (item) => item.spaceId === spaceId && !item.isCompleted });
   */
  async list<C extends CollectionName>(collection: C, query?: Query<RecordOf<C>>): Promise<RecordOf<C>[]> {
    checkQuery(query);
    return runQuery(this.replica.list(collection) as RecordOf<C>[], query);
  }

  /**
   * A live query: `callback` gets the result of `list(collection, query)` at once (in a
   * microtask, after `watch` returned), then again each time a local write, a pull or a live
   * event changes that result, and never when it does not (results are compared by value).
   * Changes that arrive together (a pulled page, a live batch) give one callback. Answers the
   * function that stops it.
   *
   * @example
   * const stop = client.watch('contacts', { orderBy: ['lastName', 'asc'] }, (contacts) => render(contacts));
   * // later
   * stop();
   */
  watch<C extends CollectionName>(collection: C, query: Query<RecordOf<C>> | undefined, callback: (records: RecordOf<C>[]) => void): () => void {
    this.assertOpen();
    checkQuery(query);
    if (typeof callback !== 'function') throw new FieldsyncError('BAD_REQUEST', 'watch needs a callback');
    const watcher: Watcher = { query: query ?? {}, callback, last: undefined };
    let set = this.watchers.get(collection);
    if (!set) this.watchers.set(collection, (set = new Set()));
    set.add(watcher);
    this.invalidate(collection);
    return () => {
      set.delete(watcher);
      if (set.size === 0 && this.watchers.get(collection) === set) this.watchers.delete(collection);
    };
  }

  /** A collection's watched results may have changed: re-run them once, after the current task's changes. */
  private invalidate(collection: string): void {
    if (!this.watchers.has(collection)) return;
    this.stale.add(collection);
    if (this.refreshQueued) return;
    this.refreshQueued = true;
    queueMicrotask(() => {
      this.refreshQueued = false;
      const collections = [...this.stale];
      this.stale.clear();
      for (const collection of collections) {
        const set = this.watchers.get(collection);
        if (!set) continue;
        const all = this.replica.list(collection);
        for (const watcher of [...set]) {
          if (!set.has(watcher)) continue; // stopped by an earlier callback
          const result = runQuery(all, watcher.query);
          if (watcher.last !== undefined && same(result, watcher.last)) continue;
          watcher.last = result;
          try {
            watcher.callback([...result]);
          } catch (error) {
            this.events.onListenerError(error, 'watch');
          }
        }
      }
    });
  }

  /**
   * The changes waiting for the server, oldest first.
   *
   * @example
   * if (client.pendingChanges().length > 0) showBadge('not synced yet');
   */
  pendingChanges(): OutboxEntry[] {
    return this.replica.queued().map((e) => structuredClone(e));
  }

  /** Whether the record has local changes the server has not confirmed yet. */
  isPending(collection: string, id: string): boolean {
    return this.replica.queued().some((e) => e.collection === collection && e.id === id);
  }

  /**
   * Where the client stands (status, live connection, checkpoint, pending changes, progress).
   *
   * @example
   * const { status, live, pending } = client.state;
   */
  get state(): SyncState {
    return { ...this.current };
  }

  /** The live socket, when live mode is on (for diagnostics; the SDK owns it). */
  get socket(): LiveSocket | undefined {
    return this.liveSocket;
  }

  // ---------------------------------------------------------------- writing

  /**
   * Creates a record locally (visible at once, with a new UUID) and queues it for the server.
   * Resolves once the change is held in the store's outbox.
   *
   * @example
   * const contact = await client.create('contacts', { firstName: 'Ada', phonePrimary: '+14155550100' });
   * const space = await client.create('spaces', { name: 'Leads' });
   * await client.create('items', { spaceId: space.id, title: 'Call Ada' });
   */
  async create<C extends CollectionName>(collection: C, data: CreateInput<C>, opts: { id?: string } = {}): Promise<RecordOf<C>> {
    const id = opts.id ?? newId();
    if (this.replica.view(collection, id) || this.replica.baseRecord(collection, id)) {
      throw new FieldsyncError('DUPLICATE', `${collection} ${id} already exists`);
    }
    await this.write({ changeId: newId(), collection, id, operation: 'create', timestamp: this.clock(), data: { ...(data as object) } });
    return this.replica.view(collection, id) as RecordOf<C>;
  }

  /**
   * Changes some fields of a record locally and queues the change (only these fields are sent).
   *
   * @example
   * await client.update('contacts', contact.id, { notes: 'Called, call back Friday' });
   */
  async update<C extends CollectionName>(collection: C, id: string, patch: UpdateInput<C>): Promise<RecordOf<C>> {
    if (!this.replica.view(collection, id)) throw new FieldsyncError('NOT_FOUND', `No visible ${collection} ${id}`);
    await this.write({
      changeId: newId(),
      collection,
      id,
      operation: 'update',
      timestamp: this.clock(),
      baseVersion: this.replica.baseVersionOf(collection, id),
      data: { ...(patch as object) },
    });
    return this.replica.view(collection, id) as RecordOf<C>;
  }

  /**
   * Deletes a record locally and queues the delete (the server keeps a tombstone that reaches every device).
   *
   * @example
   * await client.delete('items', item.id);
   */
  async delete(collection: CollectionName, id: string): Promise<void> {
    if (!this.replica.view(collection, id)) throw new FieldsyncError('NOT_FOUND', `No visible ${collection} ${id}`);
    await this.write({
      changeId: newId(),
      collection,
      id,
      operation: 'delete',
      timestamp: this.clock(),
      baseVersion: this.replica.baseVersionOf(collection, id),
      data: {},
    });
  }

  // ---------------------------------------------------------------- chat

  /**
   * Sends a chat message: stored locally at once and queued like any change (offline too);
   * the server keeps it once per `clientMessageId`, so a re-send never duplicates it.
   *
   * @example
   * const message = await client.sendMessage(conversation.id, 'On my way to the customer');
   */
  async sendMessage(conversationId: string, content: string, opts: { type?: 'text' | 'image' | 'file'; attachments?: { fileId: string }[]; clientMessageId?: string } = {}): Promise<Message> {
    const data: MessageCreate = { conversationId, clientMessageId: opts.clientMessageId ?? newId(), content, type: opts.type ?? 'text' };
    if (opts.attachments) data.attachments = opts.attachments;
    return this.create('messages', data);
  }

  /**
   * Live: tells the other participants you are typing (nothing happens offline).
   *
   * @example
   * input.addEventListener('input', () => client.typing(conversation.id, true));
   */
  typing(conversationId: string, isTyping: boolean): void {
    (this.liveSocket?.emit as ((event: string, payload: unknown) => void) | undefined)?.call(this.liveSocket, 'typing', { conversationId, isTyping });
  }

  /**
   * Marks every message of a conversation up to `upToMessageId` read (senders see `read`).
   *
   * @example
   * await client.markRead(conversation.id, lastVisible.id);
   */
  async markRead(conversationId: string, upToMessageId: string): Promise<{ marked: number }> {
    return this.http.request('POST', `/api/conversations/${encodeURIComponent(conversationId)}/read`, { body: { upToMessageId } });
  }

  private async write(entry: OutboxEntry): Promise<void> {
    this.assertOpen();
    const before = this.replica.view(entry.collection, entry.id);
    this.replica.enqueue(entry);
    this.emitChange(entry.collection, entry.id, before, 'local', entry);
    this.setState({ pending: this.replica.pending });
    try {
      await this.persist({ enqueue: [entry] });
    } catch (error) {
      // Not held in the outbox: undo it, so nothing visible pretends otherwise.
      const shown = this.replica.view(entry.collection, entry.id);
      this.replica.drop(entry.changeId);
      this.emitChange(entry.collection, entry.id, shown, 'local');
      this.setState({ pending: this.replica.pending });
      throw error;
    }
    this.replica.markDurable(entry.changeId);
    this.scheduleAutoSync(this.opts.autoSyncDelayMs ?? 50);
  }

  // ---------------------------------------------------------------- sync

  /**
   * Pushes the outbox (in batches, each with an `Idempotency-Key`, retried with backoff),
   * then pulls until the server has nothing more. Concurrent calls share the work: the
   * promise resolves after a sync that started after the call.
   *
   * @example
   * const { pushed, pulled, conflicts } = await client.sync();
   */
  sync(): Promise<SyncSummary> {
    if (this.closed) return Promise.reject(new FieldsyncError('CLOSED', 'The client was closed'));
    if (!this.running) {
      this.running = this.runSync().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    this.followUp ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.followUp = undefined;
        return this.sync();
      });
    return this.followUp;
  }

  private async runSync(): Promise<SyncSummary> {
    const summary: SyncSummary = { pushed: 0, pulled: 0, conflicts: 0, rejected: 0, checkpoint: this.replica.checkpoint };
    try {
      await this.pushAll(summary);
      await this.pullAll(summary);
      await this.persisted;
      summary.checkpoint = this.replica.checkpoint;
      this.synced();
      return summary;
    } catch (error) {
      const e = error instanceof FieldsyncError ? error : new FieldsyncError('INTERNAL', String((error as Error)?.message ?? error), { cause: error });
      if (!this.closed) this.setState({ status: 'error', error: { code: e.code, message: e.message } });
      throw e;
    }
  }

  /** A sync or pull finished: the time is shown as "last synced" and kept for the next start. */
  private synced(): void {
    const lastSyncedAt = new Date().toISOString();
    this.setState({ status: 'idle', lastSyncedAt, error: undefined });
    void this.persist({ meta: { lastSyncedAt } });
  }

  private retryOptions() {
    return {
      backoff: this.backoff,
      random: this.random,
      signal: this.closing.signal,
      wake: () => this.wakeUp.signal,
      onRetry: (info: RetryInfo) => this.events.emit('retry', info),
    };
  }

  /**
   * Tells the client whether the device has a network, for platforms without browser events
   * (React Native's NetInfo): `true` ends the current retry wait and reconnects the live socket
   * at once; `false` drops a live socket the network took away, so `state.online` says so
   * now rather than after the socket's ping timeout. Browsers call it by themselves on
   * `online` / `offline` events (option `networkEvents`).
   *
   * @example
   * NetInfo.addEventListener(({ isConnected }) => client.setNetworkAvailable(isConnected !== false));
   */
  setNetworkAvailable(available: boolean): void {
    if (this.closed) return;
    const socket = this.liveSocket;
    if (!available) {
      if (socket?.connected) socket.io.engine?.close();
      return;
    }
    const wake = this.wakeUp;
    this.wakeUp = new AbortController();
    wake.abort();
    if (!this.liveOn || !socket) return;
    if (socket.connected) this.scheduleAutoSync(0);
    else {
      // A reconnection now, not at the end of socket.io's backoff.
      socket.disconnect();
      socket.connect();
    }
  }

  /** In a browser: follow its `online` / `offline` events. */
  private listenToNetwork(): void {
    const target = globalThis as unknown as { addEventListener?: (type: string, fn: () => void) => void; removeEventListener?: (type: string, fn: () => void) => void };
    if (typeof target.addEventListener !== 'function' || typeof target.removeEventListener !== 'function') return;
    const online = () => this.setNetworkAvailable(true);
    const offline = () => this.setNetworkAvailable(false);
    target.addEventListener('online', online);
    target.addEventListener('offline', offline);
    this.stopNetworkEvents = () => {
      target.removeEventListener!('online', online);
      target.removeEventListener!('offline', offline);
    };
  }

  private async pushAll(summary: SyncSummary): Promise<void> {
    let size = Math.min(Math.max(1, this.opts.batchSize ?? 100), MAX_BATCH);
    for (;;) {
      await this.persisted;
      const batch = this.replica.queued(true).slice(0, size);
      // A create the server may answer with another record (a private conversation that
      // exists already) ends its batch: the changes after it are sent once their references
      // are rewritten to the record the server chose.
      const remappable = batch.findIndex((e) => e.operation === 'create' && REMAPPABLE.has(e.collection));
      if (remappable >= 0) batch.splice(remappable + 1);
      if (batch.length === 0) return;
      this.setState({ status: 'pushing' });
      const body = { deviceId: this.deviceId, changes: batch.map(toWire) };
      const key = await idempotencyKey(body);
      let result: PushResult;
      try {
        result = await withRetry(
          'push',
          () => this.http.request<PushResult>('POST', '/api/sync', { body, headers: { 'idempotency-key': key }, signal: this.closing.signal }),
          this.retryOptions(),
        );
      } catch (error) {
        if (!(error instanceof FieldsyncError) || error.status !== 413) throw error;
        // Too large for the server: smaller batches; a single change that is too large can
        // never be accepted and must not block the queue, so it is refused like a bad change.
        if (batch.length > 1) {
          size = Math.ceil(batch.length / 2);
          continue;
        }
        const [entry] = batch;
        result = {
          acknowledged: [{ changeId: entry.changeId, localId: null, serverId: entry.id, entityType: entry.collection, operation: entry.operation, success: false, status: 'rejected', code: 'PAYLOAD_TOO_LARGE', error: error.message }],
          conflicts: [],
          serverUpdates: {},
          hasMore: false,
          syncVersion: 0,
          syncTimestamp: new Date().toISOString(),
        };
      }
      await this.lane.run(() => this.applyPushResult(batch, result, summary));
    }
  }

  /** Takes the acknowledgements of one batch: acknowledged changes leave the outbox, refused ones the view too. */
  private applyPushResult(batch: OutboxEntry[], result: PushResult, summary: SyncSummary): void {
    const at = Date.now();
    const byChangeId = new Map(result.acknowledged.filter((a) => a.changeId).map((a) => [a.changeId!, a]));
    const conflicts = [...result.conflicts];
    // Acks certain to own a conflict report still ahead: a replayed ("duplicate") one may take a report only when spare.
    let owed = result.acknowledged.filter((a) => a.status === 'conflict').length;
    const dequeue: string[] = [];
    const rebase: StoreBatch['rebase'] = [];
    const rewritten: OutboxEntry[] = [];
    const events: (() => void)[] = [];
    batch.forEach((entry, i) => {
      const ack = byChangeId.get(entry.changeId) ?? (result.acknowledged[i]?.changeId === undefined ? result.acknowledged[i] : undefined);
      if (!ack) return; // not answered: stays queued and goes again
      dequeue.push(entry.changeId);
      events.push(() => this.events.emit('acknowledged', { change: entry, ack, at }));
      if (ack.success && entry.operation === 'create' && ack.serverId && ack.serverId !== entry.id) {
        // The server named another record for this create (the private conversation of the
        // pair that exists already): the local copy goes; the pull brings that record.
        // Queued changes that name the local id (messages of the conversation) now name the
        // server's, so they land where the server keeps them.
        summary.pushed++;
        const before = this.replica.view(entry.collection, entry.id);
        this.replica.drop(entry.changeId);
        const serverId = ack.serverId;
        const moved = this.replica.rewriteReferences(entry.id, serverId);
        rewritten.push(...moved.map((m) => m.entry));
        events.push(() => {
          this.emitChange(entry.collection, entry.id, before, 'remote');
          for (const m of moved) this.emitChange(m.entry.collection, m.entry.id, m.before, 'remote');
          this.events.emit('idChanged', { collection: entry.collection, localId: entry.id, serverId });
        });
      } else if (ack.success) {
        summary.pushed++;
        rebase.push(...this.replica.acknowledge(entry.changeId, ack.version));
        // Conflict reports come in the order of their changes; a replayed change may carry its original one.
        const c = conflicts[0];
        const owns = ack.status === 'conflict' || (ack.status === 'duplicate' && conflicts.length > owed);
        if (ack.status === 'conflict') owed--;
        if (c && owns && c.id === ack.serverId && c.collection === entry.collection) {
          conflicts.shift();
          summary.conflicts++;
          events.push(() => this.events.emit('conflict', { change: entry, conflict: c }));
        }
      } else {
        summary.rejected++;
        const before = this.replica.view(entry.collection, entry.id);
        this.replica.drop(entry.changeId);
        events.push(() => {
          this.events.emit('rejected', { change: entry, ack, at });
          this.emitChange(entry.collection, entry.id, before, 'remote');
        });
      }
    });
    // A batch with no answer at all would be sent again forever.
    if (dequeue.length === 0) throw new FieldsyncError('BAD_RESPONSE', 'The server acknowledged none of the changes of a push');
    void this.persist({ dequeue, rebase, ...(rewritten.length > 0 ? { enqueue: rewritten } : {}) });
    this.setState({ pending: this.replica.pending });
    for (const emit of events) emit();
  }

  /**
   * Pulls from the checkpoint until `hasMore` is false, page by page; each page and its
   * checkpoint are applied and saved together.
   *
   * @example
   * await client.pull(); // catch up without pushing
   */
  async pull(): Promise<number> {
    this.assertOpen();
    await this.running?.catch(() => undefined);
    const summary: SyncSummary = { pushed: 0, pulled: 0, conflicts: 0, rejected: 0, checkpoint: 0 };
    try {
      await this.pullAll(summary);
      await this.persisted;
      this.synced();
      return summary.pulled;
    } catch (error) {
      const e = error instanceof FieldsyncError ? error : new FieldsyncError('INTERNAL', String((error as Error)?.message ?? error), { cause: error });
      if (!this.closed) this.setState({ status: 'error', error: { code: e.code, message: e.message } });
      throw e;
    }
  }

  private async pullAll(summary: SyncSummary): Promise<void> {
    const limit = Math.min(Math.max(1, this.opts.pageSize ?? 1000), MAX_PAGE);
    const start = this.replica.checkpoint;
    const phase: SyncProgress['phase'] = start === 0 ? 'initial' : 'catch-up';
    const collections = this.opts.collections?.length ? `&collections=${encodeURIComponent(this.opts.collections.join(','))}` : '';
    let received = 0;
    for (;;) {
      this.setState({ status: 'pulling' });
      const from = this.replica.checkpoint;
      const delta = await withRetry(
        'pull',
        () => this.http.request<Delta>('GET', `/api/sync/delta?version=${from}&limit=${limit}${collections}`, { signal: this.closing.signal }),
        this.retryOptions(),
      );
      await this.lane.run(() => this.applyRemote(delta.changes, delta.nextVersion));
      received += delta.changes.length;
      summary.pulled += delta.changes.length;
      // The server does not count what is ahead: estimate the total from the share of the version range done.
      const span = delta.latestVersion - start;
      const done = delta.nextVersion - start;
      const total = !delta.hasMore ? received : span > 0 && done > 0 ? Math.max(received + 1, Math.round((received * span) / done)) : received + 1;
      this.setState({ progress: { phase, received, total, done: !delta.hasMore } });
      if (!delta.hasMore) return;
    }
  }

  /**
   * Applies server changes above the checkpoint and moves the checkpoint to `upTo`. Changes at
   * or below the checkpoint are already applied (a live event may have overtaken a pull).
   */
  private applyRemote(changes: ChangesEvent['changes'], upTo: number): void {
    const checkpoint = this.replica.checkpoint;
    const fresh = changes.filter((c) => c.version > checkpoint);
    const touched = new Map<string, { collection: string; id: string; before: SyncRecord | undefined }>();
    const touch = (collection: string, id: string) => {
      const key = recordKey(collection, id);
      if (!touched.has(key)) touched.set(key, { collection, id, before: this.replica.view(collection, id) });
    };
    for (const c of fresh) touch(c.collection, c.id);
    // Records whose acknowledged changes the new checkpoint covers may look different too.
    for (const { collection, id } of this.replica.acknowledgedUpTo(upTo)) touch(collection, id);
    const put = fresh.map((c) => this.replica.applyRemote(c));
    this.replica.advance(upTo);
    if (put.length > 0 || upTo > checkpoint) void this.persist({ put, checkpoint: this.replica.checkpoint });
    for (const { collection, id, before } of touched.values()) this.emitChange(collection, id, before, 'remote');
    this.setState({ checkpoint: this.replica.checkpoint, pending: this.replica.pending });
  }

  // ---------------------------------------------------------------- live mode

  /**
   * Goes live: opens the socket, applies other devices' changes as they arrive (pulling when
   * an event does not continue from the checkpoint), syncs on every (re)connection and shortly
   * after every local change, and reconnects with backoff.
   *
   * @example
   * client.on('change', ({ collection, record }) => render(collection, record));
   * client.connect();
   */
  connect(): void {
    this.assertOpen();
    if (this.liveOn) return;
    this.liveOn = true;
    this.setState({ live: 'connecting' });
    // The handshake `auth` (SPEC §7); `{}` when no token could be had: the server then waits for
    // `authenticate`. The client reads `changes` alone: `seedEvents: false` spares it the
    // contact events that restate them.
    const auth = (cb: (data: SocketAuth | Record<string, never>) => void) => {
      const { apiKey, token } = this.opts;
      if (apiKey) return cb({ apiKey, deviceId: this.deviceId, seedEvents: false });
      Promise.resolve(typeof token === 'function' ? token() : token!).then(
        (t) => cb({ token: t, deviceId: this.deviceId, seedEvents: false }),
        () => cb({}),
      );
    };
    const socket: LiveSocket = io(this.opts.url, {
      auth,
      transports: ['websocket'],
      reconnectionDelay: this.backoff.baseMs,
      reconnectionDelayMax: this.backoff.maxMs,
      randomizationFactor: 0.5,
      ...this.opts.socketOptions,
    });
    this.liveSocket = socket;

    socket.on('authenticated', () => {
      this.reconnectAttempts = 0;
      this.shutdownHintMs = undefined;
      this.setState({ live: 'connected' });
      this.startHeartbeat(socket);
      // Catch up on what happened while disconnected; events queue behind it in the lane.
      this.scheduleAutoSync(0);
    });
    socket.on('changes', (event) => void this.lane.run(() => this.onChanges(event)));
    // Chat's live events (the messages themselves also arrive as `changes` of `messages`).
    const on = socket.on.bind(socket) as (event: string, listener: (payload: any) => void) => void;
    on('receive_message', ({ message }: { message: Message }) => this.events.emit('message', message));
    on('typing', (event: TypingEvent) => this.events.emit('typing', event));
    on('presence', (event: PresenceEvent) => this.events.emit('presence', event));
    on('message_status', (event: MessageStatusEvent) => this.events.emit('messageStatus', event));
    socket.on('server_shutdown', ({ retryAfterMs }) => {
      this.shutdownHintMs = retryAfterMs;
    });
    socket.on('disconnect', (reason) => {
      this.stopHeartbeat();
      if (!this.liveOn) return;
      this.setState({ live: 'connecting' });
      // The server closed it (shutdown, deploy): socket.io does not come back on its own.
      if (reason === 'io server disconnect') this.reconnectLater(this.shutdownHintMs);
    });
    socket.on('connect_error', (error) => {
      if (!this.liveOn || socket.active) return; // a transport error: socket.io retries by itself
      // Refused by the server's handshake check.
      const data = (error as Error & { data?: Partial<AuthErrorPayload> }).data;
      const code = data?.error ?? 'UNAUTHORIZED';
      if ((code === 'UNAUTHORIZED' || code === 'FORBIDDEN') && this.opts.apiKey) {
        this.events.emit('error', new FieldsyncError(code, `Live connection refused: ${error.message}`));
        this.disconnect();
        return;
      }
      this.reconnectLater();
    });
  }

  /**
   * Leaves live mode: closes the socket and stops background syncs. Local writes keep
   * queueing; `sync()` still works.
   *
   * @example
   * onAppBackgrounded(() => client.disconnect());
   */
  disconnect(): void {
    this.liveOn = false;
    clearTimeout(this.autoSyncTimer);
    clearTimeout(this.reconnectTimer);
    this.autoSyncTimer = undefined;
    this.stopHeartbeat();
    const socket = this.liveSocket;
    this.liveSocket = undefined;
    if (socket) {
      socket.removeAllListeners();
      socket.disconnect();
    }
    if (!this.closed) this.setState({ live: 'off' });
  }

  /** A `changes` event: applied when it continues from the checkpoint, else the gap is pulled. */
  private onChanges(event: ChangesEvent): void {
    const checkpoint = this.replica.checkpoint;
    if (event.toVersion <= checkpoint) return;
    if (event.fromVersion > checkpoint) {
      this.scheduleAutoSync(0);
      return;
    }
    this.applyRemote(event.changes, event.toVersion);
  }

  private reconnectLater(hintMs?: number): void {
    clearTimeout(this.reconnectTimer);
    const delay = hintMs !== undefined ? retryAfterDelay(hintMs, this.backoff, this.random) : backoffDelay(this.reconnectAttempts++, this.backoff, this.random);
    this.reconnectTimer = setTimeout(() => {
      if (this.liveOn && this.liveSocket && !this.liveSocket.connected) this.liveSocket.connect();
    }, delay);
  }

  private startHeartbeat(socket: LiveSocket): void {
    this.stopHeartbeat();
    const info = this.opts.deviceInfo;
    if (!info) return;
    const beat = () => socket.emit('heartbeat', { ...info });
    beat();
    this.heartbeatTimer = setInterval(beat, this.opts.heartbeatIntervalMs ?? 60_000);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  /** In live mode and connected: a sync after `delayMs`; a failed one is tried again with backoff. */
  private scheduleAutoSync(delayMs: number): void {
    if (!this.liveOn || this.closed || !this.liveSocket?.connected) return;
    if (this.autoSyncTimer) {
      if (delayMs > 0) return;
      clearTimeout(this.autoSyncTimer);
    }
    this.autoSyncTimer = setTimeout(() => {
      this.autoSyncTimer = undefined;
      this.sync().then(
        () => {
          this.autoSyncFailures = 0;
        },
        (error: FieldsyncError) => {
          if (this.closed || error.code === 'CLOSED') return;
          this.events.emit('error', error);
          if (error.retryable) this.scheduleAutoSync(backoffDelay(this.autoSyncFailures++, this.backoff, this.random));
        },
      );
    }, delayMs);
  }

  // ---------------------------------------------------------------- events and life cycle

  /**
   * Subscribes to an event; returns the function that unsubscribes.
   *
   * @example
   * const off = client.on('syncStateChanged', (s) => {
   *   if (s.progress && !s.progress.done) console.log(`${s.progress.received} of ~${s.progress.total}`);
   * });
   * client.on('conflict', ({ conflict }) => console.log(conflict.collection, conflict.outcome));
   */
  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): () => void {
    return this.events.on(event, listener);
  }

  off<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): void {
    this.events.off(event, listener);
  }

  /**
   * Stops live mode and background work, waits for the store to be written, and closes it.
   * Queued changes stay in the store for the next client on it.
   *
   * @example
   * process.on('SIGTERM', () => client.close().then(() => process.exit(0)));
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.disconnect();
    this.closed = true;
    this.stopNetworkEvents?.();
    this.watchers.clear();
    this.closing.abort();
    await this.running?.catch(() => undefined);
    await this.followUp?.catch(() => undefined);
    await this.persisted;
    await this.store.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new FieldsyncError('CLOSED', 'The client was closed');
  }

  /** Writes a batch after every earlier one (the store sees writes one at a time, in order). */
  private persist(batch: StoreBatch): Promise<void> {
    const done = this.persisted.then(() => this.store.write(batch));
    this.persisted = done.catch((error) => {
      this.events.emit('error', error instanceof FieldsyncError ? error : new FieldsyncError('STORE', String(error?.message ?? error), { cause: error }));
    });
    return done;
  }

  private emitChange(collection: string, id: string, before: SyncRecord | undefined, source: ChangeEvent['source'], change?: OutboxEntry): void {
    const watched = this.watchers.has(collection);
    if (!watched && !this.events.has('change')) return;
    const record = this.replica.view(collection, id);
    if (same(before, record)) return;
    if (watched) this.invalidate(collection);
    this.events.emit('change', { collection, id, op: record ? 'upsert' : 'delete', record, previous: before, source, ...(change ? { change } : {}) });
  }

  private setState(patch: Partial<SyncState>): void {
    const next = { ...this.current, ...patch };
    next.online = next.live === 'connected';
    next.syncing = next.status === 'pushing' || next.status === 'pulling';
    if (same(next, this.current)) return;
    this.current = next;
    this.events.emit('syncStateChanged', { ...next });
  }
}

/**
 * Creates a device client and loads its store (its replica, checkpoint and outbox).
 *
 * @example
 * import { createClient, FileStore } from '@fieldsync/client';
 *
 * const client = await createClient({
 *   url: 'https://sync.example.com',
 *   apiKey: process.env.FIELDSYNC_KEY!,
 *   deviceId: 'phone-42',
 *   store: new FileStore('./fieldsync/phone-42.jsonl'),
 * });
 * await client.sync();            // initial sync (progress in `syncStateChanged`)
 * client.connect();               // live from now on
 * await client.create('contacts', { firstName: 'Ada', phonePrimary: '+14155550100' });
 */
export async function createClient(opts: ClientOptions): Promise<FieldsyncClient> {
  const client = new FieldsyncClient(opts);
  await client.open();
  return client;
}
