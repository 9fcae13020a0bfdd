import { Type, type Static } from 'typebox';
import { Text, Uuid } from './envelope.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const DateTime = Type.String({ format: 'date-time', maxLength: 64 });
/** A required name or title: not blank (one non-space character at least), no NUL bytes. */
const Name = (maxLength: number) => Type.String({ minLength: 1, maxLength, pattern: '^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$' });

export const Collaborator = Type.Object(
  { userId: Uuid, role: Type.Union([Type.Literal('viewer'), Type.Literal('editor')]) },
  { additionalProperties: false },
);
export type Collaborator = Static<typeof Collaborator>;

const display = {
  icon: Type.Optional(Nullable(Text(64))),
  color: Type.Optional(Nullable(Text(32))),
  isVisible: Type.Optional(Type.Boolean()),
  order: Type.Optional(Type.Number({ minimum: -1e15, maximum: 1e15 })),
};

export const SpaceCreate = Type.Object(
  { name: Name(200), ...display, collaborators: Type.Optional(Type.Array(Collaborator, { maxItems: 200 })) },
  { additionalProperties: false },
);
export type SpaceCreate = Static<typeof SpaceCreate>;
export const SpaceUpdate = Type.Partial(SpaceCreate, { additionalProperties: false });
export type SpaceUpdate = Static<typeof SpaceUpdate>;

export const CategoryCreate = Type.Object({ spaceId: Uuid, name: Name(200), ...display }, { additionalProperties: false });
export type CategoryCreate = Static<typeof CategoryCreate>;
export const CategoryUpdate = Type.Partial(Type.Omit(CategoryCreate, ['spaceId']), { additionalProperties: false });
export type CategoryUpdate = Static<typeof CategoryUpdate>;

export const ItemType = Type.Union(['custom', 'movie', 'book', 'place', 'contact'].map((t) => Type.Literal(t)));

export const ItemCreate = Type.Object(
  {
    spaceId: Uuid,
    categoryId: Type.Optional(Type.Union([Uuid, Type.Null()])),
    title: Name(500),
    description: Type.Optional(Nullable(Text(10_000))),
    notes: Type.Optional(Nullable(Text(10_000))),
    type: Type.Optional(ItemType),
    refId: Type.Optional(Nullable(Text(200))),
    isCompleted: Type.Optional(Type.Boolean()),
    completedAt: Type.Optional(Type.Union([DateTime, Type.Null()])),
    priority: Type.Optional(Nullable(Text(32))),
    order: Type.Optional(Type.Number({ minimum: -1e15, maximum: 1e15 })),
    tags: Type.Optional(Type.Array(Text(64, 1), { maxItems: 50 })),
    dueDate: Type.Optional(Type.Union([DateTime, Type.Null()])),
  },
  { additionalProperties: false },
);
export type ItemCreate = Static<typeof ItemCreate>;
export const ItemUpdate = Type.Partial(Type.Omit(ItemCreate, ['spaceId']), { additionalProperties: false });
export type ItemUpdate = Static<typeof ItemUpdate>;

const Base = {
  id: Type.String(),
  version: Type.Integer(),
  isDeleted: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
};
const DisplayOut = {
  icon: Type.Union([Type.String(), Type.Null()]),
  color: Type.Union([Type.String(), Type.Null()]),
  isVisible: Type.Boolean(),
  order: Type.Number(),
};

export const Space = Type.Object({ ...Base, ownerId: Type.String(), name: Type.String(), ...DisplayOut, collaborators: Type.Array(Collaborator) });
export type Space = Static<typeof Space>;
export const Category = Type.Object({ ...Base, spaceId: Type.String(), name: Type.String(), ...DisplayOut });
export type Category = Static<typeof Category>;
export const Item = Type.Object({
  ...Base,
  spaceId: Type.String(),
  categoryId: Type.Union([Type.String(), Type.Null()]),
  title: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  notes: Type.Union([Type.String(), Type.Null()]),
  type: Type.String(),
  refId: Type.Union([Type.String(), Type.Null()]),
  isCompleted: Type.Boolean(),
  completedAt: Type.Union([Type.String(), Type.Null()]),
  completedBy: Type.Union([Type.Object({ userId: Type.String(), deviceId: Type.Union([Type.String(), Type.Null()]) }), Type.Null()]),
  priority: Type.Union([Type.String(), Type.Null()]),
  order: Type.Number(),
  tags: Type.Array(Type.String()),
  dueDate: Type.Union([Type.String(), Type.Null()]),
});
export type Item = Static<typeof Item>;

/** A record of the same device named by its local id (push only; the server resolves it, in this batch or an earlier one). */
const LocalId = Type.String({ minLength: 1, maxLength: 128 });
const LocalRef = Type.Optional(Type.Union([LocalId, Type.Null()]));

/** A category create in a push: its space by `spaceId`, or by `spaceLocalId` when the device created the space. */
export const CategoryPushCreate = Type.Union([
  Type.Object({ ...CategoryCreate.properties, spaceLocalId: LocalRef }, { additionalProperties: false }),
  Type.Object({ ...Type.Omit(CategoryCreate, ['spaceId']).properties, spaceLocalId: LocalId }, { additionalProperties: false }),
]);

/** An item create in a push: its space by `spaceId` or `spaceLocalId`, its category by `categoryId` or `categoryLocalId`. */
export const ItemPushCreate = Type.Union([
  Type.Object({ ...ItemCreate.properties, spaceLocalId: LocalRef, categoryLocalId: LocalRef }, { additionalProperties: false }),
  Type.Object({ ...Type.Omit(ItemCreate, ['spaceId']).properties, spaceLocalId: LocalId, categoryLocalId: LocalRef }, { additionalProperties: false }),
]);

/** An item update in a push: its category may be named by `categoryLocalId`. */
export const ItemPushUpdate = Type.Object({ ...ItemUpdate.properties, categoryLocalId: LocalRef }, { additionalProperties: false });
