/**
 * The Fieldsync client SDK: an offline-first device replica with an outbox, batched
 * idempotent pushes, paged pulls and live updates over Socket.IO.
 *
 * @example
 * import { createClient, IndexedDbStore } from '@fieldsync/client';
 *
 * const client = await createClient({ url, apiKey, deviceId: 'phone-1', store: new IndexedDbStore('fieldsync') });
 * client.on('change', (e) => console.log(e.collection, e.op, e.id));
 * await client.sync();
 * client.connect();
 */
export { createClient, FieldsyncClient, type ClientOptions, type ClientEvents } from './client.js';
export { FieldsyncError } from './errors.js';
export { MemoryStore } from './memory-store.js';
export { IndexedDbStore, type IndexedDbStoreOptions } from './indexeddb-store.js';
export { SqliteStore, type SqlExecutor, type SqlRunner, type SqliteStoreOptions } from './sqlite-store.js';
export type { Store, StoreBatch, StoreSnapshot, StoredRecord } from './store.js';
export { backoffDelay, retryAfterDelay, parseRetryAfter, withRetry, DEFAULT_BACKOFF, type BackoffOptions, type RetryInfo } from './backoff.js';
export type { DeviceInfo, FetchLike } from './http.js';
export type {
  AckEvent,
  CallSession,
  Category,
  CategoryInput,
  ChangeEvent,
  CollectionName,
  CollectionTypes,
  ConflictEvent,
  ConflictReport,
  Contact,
  Conversation,
  CreateInput,
  DirectoryUser,
  Message,
  MessageStatusEvent,
  PresenceEvent,
  TypingEvent,
  ErrorCode,
  Item,
  ItemInput,
  OutboxEntry,
  Project,
  ProjectContact,
  PushAck,
  Query,
  RecordOf,
  Space,
  SpaceInput,
  SyncChange,
  SyncProgress,
  SyncRecord,
  SyncState,
  SyncSummary,
  TerminalSession,
  UpdateInput,
  Where,
} from './types.js';
