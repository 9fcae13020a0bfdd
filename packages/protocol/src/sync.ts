import { ConversationCreate, ConversationUpdate, MessageEdit, MessagePushCreate } from './chat.js';
import { Type, type Static, type TSchema } from 'typebox';
import { ContactCreate, ContactUpdate } from './contacts.js';
import { Uuid, VALIDATED_BY } from './envelope.js';
import { ChangeErrorCodeSchema } from './errors.js';
import { CategoryPushCreate, CategoryUpdate, ItemPushCreate, ItemPushUpdate, SpaceCreate, SpaceUpdate } from './lists.js';
import {
  CallSessionPushCreate,
  CallSessionUpdate,
  ProjectContactPushCreate,
  ProjectContactUpdate,
  ProjectCreate,
  ProjectUpdate,
  TerminalSessionPushCreate,
  TerminalSessionUpdate,
} from './outreach.js';

/** One change of a delta pull or a `changes` event. */
export const Change = Type.Object({
  collection: Type.String(),
  op: Type.Union([Type.Literal('upsert'), Type.Literal('delete')]),
  id: Type.String(),
  version: Type.Integer(),
  data: Type.Record(Type.String(), Type.Unknown()),
});
export type Change = Static<typeof Change>;

export const DeltaQuery = Type.Object(
  {
    version: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000, default: 1000 })),
    collections: Type.Optional(Type.String({ maxLength: 500, pattern: '^[A-Za-z, ]*$' })),
    deviceId: Type.Optional(Type.String({ maxLength: 128, pattern: '^[\\w.:-]+$' })),
  },
  { additionalProperties: false },
);
export type DeltaQuery = Static<typeof DeltaQuery>;

export const Delta = Type.Object({
  changes: Type.Array(Change),
  latestVersion: Type.Integer(),
  nextVersion: Type.Integer(),
  hasMore: Type.Boolean(),
});
export type Delta = Static<typeof Delta>;

/** Socket `changes` event: the changes of versions (fromVersion, toVersion], in order. */
export const ChangesEvent = Type.Object({
  fromVersion: Type.Integer(),
  toVersion: Type.Integer(),
  changes: Type.Array(Change),
});
export type ChangesEvent = Static<typeof ChangesEvent>;

export const MAX_PUSH_CHANGES = 1000;

/** What identifies and orders a change, whatever its entity type. */
const ChangeMeta = {
  changeId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Identifies the change: a re-sent change gets its original result.' })),
  localId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "The device's own id of the record; the ack maps it to `serverId`." })),
  timestamp: Type.Union([Type.String({ maxLength: 64 }), Type.Integer({ minimum: 0 })], {
    description: 'When the change was made on the device: RFC 3339, or epoch milliseconds.',
  }),
  baseVersion: Type.Optional(Type.Integer({ minimum: 0, description: 'The record version the device had when it made the change (conflict detection).' })),
};

/**
 * One queued offline change as the push engine first reads it (SPEC §4, seed
 * offline-first-sync): the fields every change has; `data` is then checked against the
 * entity type's own schema (see `SyncChange` for the shapes per entity type).
 */
export const PushChange = Type.Object(
  {
    ...ChangeMeta,
    id: Type.Optional(Type.String({ maxLength: 64 })),
    entityType: Type.String({ minLength: 1, maxLength: 64 }),
    operation: Type.String({ maxLength: 16 }),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type PushChange = Static<typeof PushChange>;

export type SyncOperation = 'create' | 'update' | 'delete';

/** How a push names one entity type: its collection, the seed's singular name, what a create and an update carry. */
export interface SyncEntity<
  Name extends string = string,
  Alias extends string = string,
  Create extends TSchema = TSchema,
  Update extends TSchema = TSchema,
  Op extends SyncOperation = SyncOperation,
> {
  name: Name;
  alias: Alias;
  /** `data` of a create. */
  create: Create;
  /** `data` of an update: only the fields that change. */
  update: Update;
  /** The operations devices may push (call sessions: create only). */
  operations: readonly Op[];
  /** References a change may make by the local id of a record the same device created: field -> local field. */
  localRefs?: Readonly<Record<string, string>>;
}

const ALL_OPERATIONS = ['create', 'update', 'delete'] as const;

/** Declares an entity type of the push; every operation unless `operations` says otherwise. */
export function syncEntity<N extends string, A extends string, C extends TSchema, U extends TSchema, O extends SyncOperation = SyncOperation>(
  def: Omit<SyncEntity<N, A, C, U, O>, 'operations'> & { operations?: readonly O[] },
): SyncEntity<N, A, C, U, O> {
  return { ...def, operations: def.operations ?? (ALL_OPERATIONS as unknown as readonly O[]) };
}

/**
 * Every entity type a push accepts. Adding a synced collection to the protocol is one line
 * here (the server's collection registry is checked against this list by a test).
 */
export const SYNC_ENTITIES = [
  syncEntity({ name: 'contacts', alias: 'contact', create: ContactCreate, update: ContactUpdate }),
  syncEntity({ name: 'spaces', alias: 'space', create: SpaceCreate, update: SpaceUpdate }),
  syncEntity({ name: 'categories', alias: 'category', create: CategoryPushCreate, update: CategoryUpdate, localRefs: { spaceId: 'spaceLocalId' } }),
  syncEntity({
    name: 'items',
    alias: 'item',
    create: ItemPushCreate,
    update: ItemPushUpdate,
    localRefs: { spaceId: 'spaceLocalId', categoryId: 'categoryLocalId' },
  }),
  syncEntity({ name: 'conversations', alias: 'conversation', create: ConversationCreate, update: ConversationUpdate, operations: ['create', 'update'] }),
  syncEntity({
    name: 'messages',
    alias: 'message',
    create: MessagePushCreate,
    update: MessageEdit,
    localRefs: { conversationId: 'conversationLocalId' },
  }),
  syncEntity({ name: 'projects', alias: 'project', create: ProjectCreate, update: ProjectUpdate, operations: ['create', 'update'] }),
  syncEntity({
    name: 'projectContacts',
    alias: 'projectContact',
    create: ProjectContactPushCreate,
    update: ProjectContactUpdate,
    operations: ['create', 'update'],
    localRefs: { contactId: 'contactLocalId' },
  }),
  // Append only: a call or terminal session is created once and never changed (SPEC §9).
  syncEntity({
    name: 'callSessions',
    alias: 'callSession',
    create: CallSessionPushCreate,
    update: CallSessionUpdate,
    operations: ['create'],
    localRefs: { contactId: 'contactLocalId' },
  }),
  syncEntity({
    name: 'terminalSessions',
    alias: 'terminalSession',
    create: TerminalSessionPushCreate,
    update: TerminalSessionUpdate,
    operations: ['create'],
    localRefs: { contactId: 'contactLocalId' },
  }),
] as const;

type Meta = Static<ReturnType<typeof metaObject>>;
const metaObject = () => Type.Object({ ...ChangeMeta, id: Type.Optional(Uuid) });

/** The change shapes of one entity type: one per operation it accepts. */
type ChangesOf<E> =
  E extends SyncEntity<infer N, infer A, infer C, infer U, infer O>
    ?
        | ('create' extends O ? Meta & { entityType: N | A; operation: 'create'; data: Static<C> } : never)
        | ('update' extends O ? Meta & { entityType: N | A; operation: 'update'; data: Static<U> } : never)
        | ('delete' extends O ? Meta & { entityType: N | A; operation: 'delete'; data?: Record<string, unknown> } : never)
    : never;

/** One change of a push, typed by its `entityType` (plural or singular) and `operation`. */
export type SyncChange = ChangesOf<(typeof SYNC_ENTITIES)[number]>;

function changeSchemas(entity: SyncEntity): TSchema[] {
  const entityType = Type.Unsafe<string>({ type: 'string', enum: [entity.name, entity.alias], description: 'The collection, plural or singular.' });
  const data: Record<SyncOperation, TSchema> = {
    create: entity.create,
    update: entity.update,
    delete: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Ignored: a delete carries no fields.' })),
  };
  return entity.operations.map((operation) =>
    Type.Object(
      { ...ChangeMeta, id: Type.Optional(Uuid), entityType, operation: Type.Literal(operation), data: data[operation] },
      { additionalProperties: false, title: `${entity.name} ${operation}` },
    ),
  );
}

/**
 * The shapes of a change, one per entity type and operation (`entityType` names the entity
 * type, plural or singular; `operation` the variant). Checked per change by the push engine.
 */
export const SyncChange = Type.Unsafe<SyncChange>(
  Type.Union(SYNC_ENTITIES.flatMap(changeSchemas), {
    [VALIDATED_BY]: 'push engine, change by change',
    description:
      'A change, by `entityType` and `operation`. Each is checked on its own: one that does not match gets its own `VALIDATION_FAILED` ack and the others still apply.',
  }),
);

export const PushBody = Type.Object(
  {
    deviceId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\w.:-]+$' }),
    lastSyncVersion: Type.Optional(Type.Integer({ minimum: 0 })),
    changes: Type.Array(SyncChange, { maxItems: MAX_PUSH_CHANGES }),
  },
  { additionalProperties: false },
);
export type PushBody = Static<typeof PushBody>;

export const PushAck = Type.Object({
  changeId: Type.Optional(Type.String()),
  localId: Type.Union([Type.String(), Type.Null()]),
  serverId: Type.Union([Type.String(), Type.Null()]),
  entityType: Type.String(),
  operation: Type.String(),
  success: Type.Boolean(),
  /** applied | duplicate | conflict | rejected */
  status: Type.String(),
  version: Type.Optional(Type.Integer()),
  /** For a rejected change: why, as a per-change code of the error catalogue. */
  code: Type.Optional(ChangeErrorCodeSchema),
  error: Type.Optional(Type.String()),
});
export type PushAck = Static<typeof PushAck>;

export const ConflictReport = Type.Object({
  localId: Type.Union([Type.String(), Type.Null()]),
  id: Type.String(),
  collection: Type.String(),
  strategy: Type.String(),
  outcome: Type.String(),
  serverRecord: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  conflictId: Type.Optional(Type.String()),
});
export type ConflictReport = Static<typeof ConflictReport>;

export const PushResult = Type.Object({
  acknowledged: Type.Array(PushAck),
  conflicts: Type.Array(ConflictReport),
  serverUpdates: Type.Record(Type.String(), Type.Array(Type.Record(Type.String(), Type.Unknown()))),
  hasMore: Type.Boolean(),
  syncVersion: Type.Integer(),
  syncTimestamp: Type.String(),
});
export type PushResult = Static<typeof PushResult>;
