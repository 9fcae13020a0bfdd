import type { Contact, ContactCreate, ContactUpdate } from '@fieldsync/protocol/contacts';
import type { Category, CategoryCreate, CategoryUpdate, Item, ItemCreate, ItemUpdate, Space, SpaceCreate, SpaceUpdate } from '@fieldsync/protocol/lists';
import type {
  CallSession,
  CallSessionCreate,
  Project,
  ProjectContact,
  ProjectContactCreate,
  ProjectContactUpdate,
  ProjectCreate,
  ProjectUpdate,
  TerminalSession as TerminalSessionView,
  TerminalSessionCreate,
} from '@fieldsync/protocol/outreach';
import type { ConflictReport, PushAck, SyncChange } from '@fieldsync/protocol/sync';
import type { ErrorCode } from '@fieldsync/protocol/errors';
import type {
  Conversation,
  ConversationCreate,
  ConversationUpdate,
  DirectoryUser,
  Message,
  MessageCreate,
  MessageEdit,
  MessageStatusEvent,
  PresenceEvent,
  TypingEvent,
} from '@fieldsync/protocol/chat';

/** A terminal session as synced (REST answers add `active`, computed at read time). */
export type TerminalSession = Omit<TerminalSessionView, 'active'>;

export type { Contact, Category, Item, Space, Project, ProjectContact, CallSession, ConflictReport, PushAck, SyncChange, ErrorCode };
export type { Conversation, DirectoryUser, Message, MessageStatusEvent, PresenceEvent, TypingEvent };

/** Every synced record: the server's fields plus the collection's own. */
export interface SyncRecord {
  id: string;
  /** The server version this state has; 0 for a record created here and not yet synced. */
  version: number;
  isDeleted: boolean;
  [field: string]: unknown;
}

/** The collections the SDK knows the shape of; any other name works with `SyncRecord`. */
export interface CollectionTypes {
  contacts: Contact;
  spaces: Space;
  categories: Category;
  items: Item;
  /** The team directory (read-only: the server writes it). */
  users: DirectoryUser;
  conversations: Conversation;
  messages: Message;
  projects: Project;
  projectContacts: ProjectContact;
  /** Append only: create, never update or delete. */
  callSessions: CallSession;
  /** Append only: create, never update or delete. */
  terminalSessions: TerminalSession;
}

/** A collection name: one of `CollectionTypes` or any other synced collection. */
export type CollectionName = keyof CollectionTypes | (string & {});

/** The record type of collection `C`. */
export type RecordOf<C extends string> = C extends keyof CollectionTypes ? CollectionTypes[C] : SyncRecord;

/** The body of a new space (the protocol's create schema). */
export type SpaceInput = SpaceCreate;
/** The body of a new category. */
export type CategoryInput = CategoryCreate;
/** The body of a new item. */
export type ItemInput = ItemCreate;

/** The body of a create, by collection. */
interface CreateInputs {
  contacts: ContactCreate;
  spaces: SpaceCreate;
  categories: CategoryCreate;
  items: ItemCreate;
  conversations: ConversationCreate;
  messages: MessageCreate;
  projects: ProjectCreate;
  projectContacts: ProjectContactCreate;
  callSessions: CallSessionCreate;
  terminalSessions: TerminalSessionCreate;
}

/** The body of an update (only the fields that change), by collection; append-only ones take none. */
interface UpdateInputs {
  contacts: ContactUpdate;
  spaces: SpaceUpdate;
  categories: CategoryUpdate;
  items: ItemUpdate;
  conversations: ConversationUpdate;
  messages: MessageEdit;
  projects: ProjectUpdate;
  projectContacts: ProjectContactUpdate;
  callSessions: never;
  terminalSessions: never;
}

/** What `create(collection, ...)` takes. */
export type CreateInput<C extends string> = C extends keyof CreateInputs ? CreateInputs[C] : Record<string, unknown>;

/** What `update(collection, id, ...)` takes: only the fields that change. */
export type UpdateInput<C extends string> = C extends keyof UpdateInputs ? UpdateInputs[C] : Record<string, unknown>;

/** One queued local change, as the outbox keeps it until the server acknowledges it. */
export interface OutboxEntry {
  /** Identifies the change to the server: a re-sent change gets its original result. */
  changeId: string;
  collection: string;
  /** The record's id (a client-generated UUID for a create). */
  id: string;
  operation: 'create' | 'update' | 'delete';
  /** When the user made the change (epoch ms): what the conflict policies compare. */
  timestamp: number;
  /** The record version the device had seen when the change was made. */
  baseVersion?: number;
  /** The fields set (all of them for a create; only the changed ones for an update). */
  data: Record<string, unknown>;
}

/** Progress of a pull: records received so far of the (estimated) total. */
export interface SyncProgress {
  /** `initial` for a pull from nothing (version 0), `catch-up` otherwise. */
  phase: 'initial' | 'catch-up';
  received: number;
  /**
   * The total the pull will reach. The server does not count records ahead of a page, so this
   * is estimated from how far through the version range the pull is, and exact once `done`.
   */
  total: number;
  done: boolean;
}

/** Where the client stands; emitted as `syncStateChanged` whenever it changes. */
export interface SyncState {
  /** The live socket is connected and authenticated: other devices' changes arrive as they happen. */
  online: boolean;
  /** Local changes not yet acknowledged by the server ("changes waiting"). */
  pending: number;
  /** When a sync (push and pull) or a pull last finished without error (ISO), kept across restarts; null before the first. */
  lastSyncedAt: string | null;
  /** The server version everything up to which this device has applied. */
  checkpoint: number;
  /** A push or a pull is under way (see `progress` for a pull's). */
  syncing: boolean;
  /** `idle`, `pushing` or `pulling`; `error` after a sync failed (see `error`). */
  status: 'idle' | 'pushing' | 'pulling' | 'error';
  /** The live socket: `off` when live mode is not on, `connecting` while (re)connecting. */
  live: 'off' | 'connecting' | 'connected';
  /** The current (or last) pull's progress. */
  progress?: SyncProgress;
  /** Why the last sync failed, until one succeeds. */
  error?: { code: string; message: string };
}

/** An equality filter: every field given must equal the record's (`{ spaceId, isCompleted: false }`). */
export type Where<R> = { [K in keyof R]?: R[K] } & Record<string, unknown>;

/**
 * What `list` and `watch` return: the visible records of one collection that match `where`,
 * sorted by `orderBy` (then by id, so equal keys keep a stable order), at most `limit`.
 *
 * @example
 * const leads = await client.list('contacts', { where: { company: 'Acme' }, orderBy: ['lastName', 'asc'], limit: 50 });
 */
export interface Query<R = SyncRecord> {
  /** An equality object, or a predicate for anything else (ranges, search). */
  where?: Where<R> | ((record: R) => boolean);
  /** `[field, 'asc' | 'desc']`: strings compare by locale, numbers and booleans by value, missing values last. */
  orderBy?: [field: keyof R & string, direction: 'asc' | 'desc'] | [field: string, direction: 'asc' | 'desc'];
  /** At most this many records (after sorting). */
  limit?: number;
}

/** A record's visible state changed, here or on the server. */
export interface ChangeEvent<R extends SyncRecord = SyncRecord> {
  collection: string;
  id: string;
  /** `delete` when the record is gone (deleted, or no longer visible to this user). */
  op: 'upsert' | 'delete';
  /** The new visible state; `undefined` after a delete. */
  record: R | undefined;
  previous: R | undefined;
  /** `local` for this device's own writes, `remote` for what the server sent (or refused). */
  source: 'local' | 'remote';
  /** For a local write: the queued change that made it. */
  change?: OutboxEntry;
}

/** The server decided a conflict about one of this device's changes. */
export interface ConflictEvent {
  change: OutboxEntry;
  conflict: ConflictReport;
}

/** The server acknowledged (applied, replayed, resolved or refused) one queued change. */
export interface AckEvent {
  change: OutboxEntry;
  ack: PushAck;
  /** When the answer arrived (epoch ms). */
  at: number;
}

/** What one `sync()` did. */
export interface SyncSummary {
  /** Changes the server acknowledged. */
  pushed: number;
  /** Changes received from the server. */
  pulled: number;
  conflicts: number;
  rejected: number;
  checkpoint: number;
}
