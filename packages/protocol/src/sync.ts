import { Type, type Static } from 'typebox';

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
export interface ChangesEvent {
  fromVersion: number;
  toVersion: number;
  changes: Change[];
}

export const MAX_PUSH_CHANGES = 1000;

/** One queued offline change of a push (SPEC §4, seed offline-first-sync). */
export const PushChange = Type.Object(
  {
    changeId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    localId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    id: Type.Optional(Type.String({ maxLength: 64 })),
    entityType: Type.String({ minLength: 1, maxLength: 64 }),
    operation: Type.String({ maxLength: 16 }),
    timestamp: Type.Union([Type.String({ maxLength: 64 }), Type.Integer({ minimum: 0 })]),
    baseVersion: Type.Optional(Type.Integer({ minimum: 0 })),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type PushChange = Static<typeof PushChange>;

export const PushBody = Type.Object(
  {
    deviceId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\w.:-]+$' }),
    lastSyncVersion: Type.Optional(Type.Integer({ minimum: 0 })),
    // Items are checked one by one by the engine, so one bad change does not sink the batch.
    changes: Type.Array(Type.Unknown(), { maxItems: MAX_PUSH_CHANGES }),
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
  /** For a rejected change: NOT_FOUND, FORBIDDEN, VALIDATION_FAILED, DUPLICATE or VERSION_MISMATCH. */
  code: Type.Optional(Type.String()),
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
