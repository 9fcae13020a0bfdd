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
    version: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
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
