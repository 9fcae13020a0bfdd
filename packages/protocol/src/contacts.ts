import { Type, type Static } from 'typebox';
import { Text, Uuid } from './envelope.js';

export const PreferredChannel = Type.Union([
  Type.Literal('phone'),
  Type.Literal('sms'),
  Type.Literal('email'),
  Type.Literal('whatsapp'),
]);

const Nullable = <T extends ReturnType<typeof Text>>(t: T) => Type.Union([t, Type.Null()]);

/** Writable contact fields; the server owns id, version, tombstone, times and creator. */
export const ContactFields = {
  firstName: Text(100, 1),
  lastName: Nullable(Text(100)),
  phonePrimary: Text(40, 1),
  phoneSecondary: Nullable(Text(40)),
  email: Nullable(Type.String({ maxLength: 254, format: 'email' })),
  company: Nullable(Text(200)),
  notes: Nullable(Text(10_000)),
  externalId: Nullable(Text(200)),
  doNotCall: Type.Boolean(),
  preferredChannel: Type.Union([PreferredChannel, Type.Null()]),
  photoFileId: Type.Union([Uuid, Type.Null()]),
};

export const ContactCreate = Type.Object(
  {
    firstName: ContactFields.firstName,
    phonePrimary: ContactFields.phonePrimary,
    lastName: Type.Optional(ContactFields.lastName),
    phoneSecondary: Type.Optional(ContactFields.phoneSecondary),
    email: Type.Optional(ContactFields.email),
    company: Type.Optional(ContactFields.company),
    notes: Type.Optional(ContactFields.notes),
    externalId: Type.Optional(ContactFields.externalId),
    doNotCall: Type.Optional(ContactFields.doNotCall),
    preferredChannel: Type.Optional(ContactFields.preferredChannel),
    photoFileId: Type.Optional(ContactFields.photoFileId),
  },
  { additionalProperties: false },
);
export type ContactCreate = Static<typeof ContactCreate>;

/** The fields of a contact update, all optional. */
export const ContactUpdate = Type.Partial(ContactCreate, { additionalProperties: false });
export type ContactUpdate = Static<typeof ContactUpdate>;

/** A partial update; `version` asks for optimistic concurrency (409 when stale). */
export const ContactPatch = Type.Object(
  { ...ContactUpdate.properties, version: Type.Optional(Type.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);
export type ContactPatch = Static<typeof ContactPatch>;

/** PUT replaces every writable field (omitted optional fields become null / false). */
export const ContactReplace = Type.Object(
  { ...ContactCreate.properties, version: Type.Optional(Type.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);
export type ContactReplace = Static<typeof ContactReplace>;

export const Contact = Type.Object({
  id: Uuid,
  version: Type.Integer(),
  firstName: Type.String(),
  lastName: Type.Union([Type.String(), Type.Null()]),
  phonePrimary: Type.String(),
  phoneSecondary: Type.Union([Type.String(), Type.Null()]),
  email: Type.Union([Type.String(), Type.Null()]),
  company: Type.Union([Type.String(), Type.Null()]),
  notes: Type.Union([Type.String(), Type.Null()]),
  externalId: Type.Union([Type.String(), Type.Null()]),
  doNotCall: Type.Boolean(),
  preferredChannel: Type.Union([Type.String(), Type.Null()]),
  photoFileId: Type.Union([Type.String(), Type.Null()]),
  createdByAgent: Type.Union([Type.String(), Type.Null()]),
  isDeleted: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type Contact = Static<typeof Contact>;

export const ContactListQuery = Type.Object(
  {
    search: Type.Optional(Text(200)),
    page: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
    agent: Type.Optional(Text(64)),
    updatedSince: Type.Optional(Type.String({ format: 'date-time' })),
    includeDeleted: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type ContactListQuery = Static<typeof ContactListQuery>;

export const HistoryEntry = Type.Object({
  action: Type.String(),
  version: Type.Integer(),
  changes: Type.Record(Type.String(), Type.Object({ from: Type.Unknown(), to: Type.Unknown() })),
  agentCode: Type.Union([Type.String(), Type.Null()]),
  deviceId: Type.Union([Type.String(), Type.Null()]),
  at: Type.String(),
});
export type HistoryEntry = Static<typeof HistoryEntry>;

export const BulkResult = Type.Object({
  results: Type.Array(
    Type.Object({
      index: Type.Integer(),
      success: Type.Boolean(),
      id: Type.Optional(Type.String()),
      error: Type.Optional(Type.String()),
    }),
  ),
  created: Type.Integer(),
  failed: Type.Integer(),
});
export type BulkResult = Static<typeof BulkResult>;

export const ImportResult = Type.Object({
  rows: Type.Integer(),
  created: Type.Integer(),
  failed: Type.Integer(),
  errors: Type.Array(Type.Object({ row: Type.Integer(), error: Type.String() })),
  errorsTruncated: Type.Boolean(),
});
export type ImportResult = Static<typeof ImportResult>;
