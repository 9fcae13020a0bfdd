import { ContactCreate, ContactUpdate } from '@fieldsync/protocol/contacts';
import type { Queryable } from '../../db/db.js';
import type { AppliedChange, CollectionDef, FieldDef } from '../../sync/collections.js';
import { normaliseContactFields } from './contacts.normalise.js';

/** ISO-8601 UTC with milliseconds, as JSON everywhere else in the API. */
export const isoSql = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * The wire form of a contact row `r`: the database keeps it in `contacts.wire` on every write
 * (migration 0012, `contact_wire`), so REST, pull and events agree and nothing builds it twice.
 */
export const CONTACT_WIRE_SQL = '(r.wire)::json';

const text = (column: string): FieldDef => ({ column, type: 'text' });

/** Above this many contacts in one commit, devices get only `changes`, not an event per contact. */
export const MAX_CONTACT_EVENTS = 100;

const CONTACT_EVENTS = {
  create: ['contact_created', 'createdBy'],
  update: ['contact_updated', 'updatedBy'],
  delete: ['contact_deleted', 'deletedBy'],
} as const;

/** The seed's events for written contacts: `contact_created {contact, version, createdBy}` and kin. */
export function contactEvents(applied: AppliedChange[], agentCode: string | undefined) {
  if (applied.length > MAX_CONTACT_EVENTS) return [];
  return applied.map(({ op, after }) => {
    const [name, by] = CONTACT_EVENTS[op];
    return { name, payload: { contact: after, version: after.version, [by]: agentCode ?? null }, restates: true };
  });
}

/** Contacts as the sync engine sees them: tenant-wide, primary phone unique among live ones. */
export function contactsCollection(opts: {
  defaultRegion: string;
  /** Which of the ids are ready files of the tenant (a photo must name one). */
  existingFiles?: (tx: Queryable, tenantId: string, ids: string[]) => Promise<Set<string>>;
}): CollectionDef {
  return {
    name: 'contacts',
    aliases: ['contact'],
    table: 'contacts',
    wireSql: CONTACT_WIRE_SQL,
    wireText: 'r.wire',
    scope: { kind: 'tenant' },
    write: {
      fields: {
        firstName: text('first_name'),
        lastName: text('last_name'),
        phonePrimary: text('phone_primary'),
        phoneSecondary: text('phone_secondary'),
        email: text('email'),
        company: text('company'),
        notes: text('notes'),
        externalId: text('external_id'),
        doNotCall: { column: 'do_not_call', type: 'boolean' },
        preferredChannel: text('preferred_channel'),
        photoFileId: { column: 'photo_file_id', type: 'uuid' },
        createdByAgent: { column: 'created_by_agent', type: 'text', audit: false },
      },
      createSchema: ContactCreate,
      updateSchema: ContactUpdate,
      operations: ['create', 'update', 'delete'],
      defaults: {
        lastName: null,
        phoneSecondary: null,
        email: null,
        company: null,
        notes: null,
        externalId: null,
        doNotCall: false,
        preferredChannel: null,
        photoFileId: null,
      },
      unique: ['phonePrimary'],
      external: opts.existingFiles ? [{ field: 'photoFileId', what: 'an uploaded file', existing: opts.existingFiles }] : [],
      normalise: (fields) => normaliseContactFields(fields, opts.defaultRegion),
      prepare: (op, fields, _before, ctx) => (op === 'create' ? Object.assign({}, fields, { createdByAgent: ctx.agentCode }) : fields),
      events: (applied, ctx) => contactEvents(applied, ctx.agentCode),
    },
  };
}

/** Writable wire fields and their columns: the only names that reach SQL. */
export const CONTACT_COLUMNS = {
  firstName: 'first_name',
  lastName: 'last_name',
  phonePrimary: 'phone_primary',
  phoneSecondary: 'phone_secondary',
  email: 'email',
  company: 'company',
  notes: 'notes',
  externalId: 'external_id',
  doNotCall: 'do_not_call',
  preferredChannel: 'preferred_channel',
  photoFileId: 'photo_file_id',
} as const;

export type ContactField = keyof typeof CONTACT_COLUMNS;
export const CONTACT_FIELDS = Object.keys(CONTACT_COLUMNS) as ContactField[];
