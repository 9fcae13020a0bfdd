import type { Contact, HistoryEntry } from '@fieldsync/protocol/contacts';
import type { Queryable } from '../../db/db.js';
import type { AuditEntry } from '../../sync/audit.js';
import { CONTACT_COLUMNS, CONTACT_WIRE_SQL, isoSql, type ContactField } from './contacts.collection.js';

/** A contact row to insert: wire fields already validated and normalised. */
export type NewContactRow = Partial<Record<ContactField, unknown>> & {
  id?: string;
  version: number;
  createdByAgent: string | null;
};

export async function findContact(db: Queryable, tenantId: string, id: string, includeDeleted = false): Promise<Contact | undefined> {
  const { rows } = await db.query<{ data: Contact }>(
    `SELECT ${CONTACT_WIRE_SQL} AS data FROM contacts r WHERE r.tenant_id = $1 AND r.id = $2 ${includeDeleted ? '' : 'AND NOT r.is_deleted'}`,
    [tenantId, id],
  );
  return rows[0]?.data;
}

/** Live contacts owning any of `phones`, as phone -> id. */
export async function findLiveIdsByPhones(db: Queryable, tenantId: string, phones: string[]): Promise<Map<string, string>> {
  if (phones.length === 0) return new Map();
  const { rows } = await db.query<{ id: string; phone_primary: string }>(
    'SELECT id, phone_primary FROM contacts WHERE tenant_id = $1 AND phone_primary = ANY($2::text[]) AND NOT is_deleted',
    [tenantId, phones],
  );
  return new Map(rows.map((r) => [r.phone_primary, r.id]));
}

const AUDITED = Object.entries(CONTACT_COLUMNS);
const AUDITED_COLUMNS = AUDITED.map(([, column]) => `r.${column}`).join(', ');
/** The fields a create gave a value, in field order (a create's changed_fields). */
const CREATE_FIELDS_SQL = `array_remove(ARRAY[${AUDITED.map(([field, column]) => `CASE WHEN ins.${column} IS NOT NULL THEN '${field}' END`).join(', ')}], NULL)`;
/** `{field: {from: null, to: value}}` for each of them: what diffRecords says of a create. */
const CREATE_CHANGES_SQL = AUDITED.map(
  ([field, column]) => `CASE WHEN ins.${column} IS NOT NULL THEN jsonb_build_object('${field}', jsonb_build_object('from', NULL, 'to', ins.${column})) ELSE '{}'::jsonb END`,
).join(' || ');

/**
 * Inserts contacts and their "create" audit entries in one statement and returns their wire
 * form in input order. The audit entry of a create lists every field given a value, from null
 * (what diffRecords says for a record that did not exist), built in SQL from the stored row:
 * an import of 1,000 rows sends them once and parses nothing back but the records.
 */
export async function insertContacts(tx: Queryable, tenantId: string, rows: NewContactRow[], actor: Pick<AuditEntry, 'userId' | 'agentCode' | 'deviceId'> = {}): Promise<Contact[]> {
  if (rows.length === 0) return [];
  const payload = rows.map((row, ordinal) => ({
    ordinal,
    id: row.id ?? null,
    version: row.version,
    created_by_agent: row.createdByAgent,
    first_name: row.firstName,
    last_name: row.lastName ?? null,
    phone_primary: row.phonePrimary,
    phone_secondary: row.phoneSecondary ?? null,
    email: row.email ?? null,
    company: row.company ?? null,
    notes: row.notes ?? null,
    external_id: row.externalId ?? null,
    do_not_call: row.doNotCall ?? false,
    preferred_channel: row.preferredChannel ?? null,
    photo_file_id: row.photoFileId ?? null,
  }));
  const { rows: inserted } = await tx.query<{ data: Contact }>(
    `WITH input AS (
       SELECT * FROM jsonb_to_recordset($2::jsonb) AS i(ordinal int, id uuid, version bigint, created_by_agent text,
         first_name text, last_name text, phone_primary text, phone_secondary text, email text, company text,
         notes text, external_id text, do_not_call boolean, preferred_channel text, photo_file_id uuid)
     ), ins AS (
       INSERT INTO contacts AS r (id, tenant_id, version, created_by_agent, first_name, last_name, phone_primary,
         phone_secondary, email, company, notes, external_id, do_not_call, preferred_channel, photo_file_id)
       SELECT coalesce(i.id, gen_random_uuid()), $1, i.version, i.created_by_agent, i.first_name, i.last_name,
         i.phone_primary, i.phone_secondary, i.email, i.company, i.notes, i.external_id, i.do_not_call,
         i.preferred_channel, i.photo_file_id
       FROM input i ORDER BY i.ordinal
       RETURNING r.id, r.version, ${AUDITED_COLUMNS}, ${CONTACT_WIRE_SQL} AS data
     ), audited AS (
       INSERT INTO audit_log (tenant_id, collection, record_id, version, action, changed_fields, changes, user_id, agent_code, device_id)
       SELECT $1, 'contacts', ins.id, ins.version, 'create', ${CREATE_FIELDS_SQL}, ${CREATE_CHANGES_SQL}, $3, $4, $5 FROM ins
     )
     SELECT data FROM ins ORDER BY version`,
    [tenantId, JSON.stringify(payload), actor.userId ?? null, actor.agentCode ?? null, actor.deviceId ?? null],
  );
  return inserted.map((r) => r.data);
}

/** Sets the given fields (wire names) and the new version; returns the updated wire record. */
export async function updateContact(
  tx: Queryable,
  tenantId: string,
  id: string,
  fields: Partial<Record<ContactField, unknown>>,
  version: number,
): Promise<Contact> {
  const params: unknown[] = [tenantId, id, version];
  const sets = Object.entries(fields).map(([field, value]) => {
    params.push(value);
    return `${CONTACT_COLUMNS[field as ContactField]} = $${params.length}`;
  });
  const { rows } = await tx.query<{ data: Contact }>(
    `UPDATE contacts r SET ${[...sets, 'version = $3', 'updated_at = now()'].join(', ')}
      WHERE r.tenant_id = $1 AND r.id = $2 RETURNING ${CONTACT_WIRE_SQL} AS data`,
    params,
  );
  return rows[0].data;
}

export async function tombstoneContact(tx: Queryable, tenantId: string, id: string, version: number): Promise<Contact> {
  const { rows } = await tx.query<{ data: Contact }>(
    `UPDATE contacts r SET is_deleted = true, version = $3, updated_at = now()
      WHERE r.tenant_id = $1 AND r.id = $2 RETURNING ${CONTACT_WIRE_SQL} AS data`,
    [tenantId, id, version],
  );
  return rows[0].data;
}

export interface ContactFilter {
  /** Lower-cased text to find in names, email, company. */
  text?: string;
  /** Digits to find in the phones. */
  phoneDigits?: string;
  agent?: string;
  updatedSince?: string;
  includeDeleted?: boolean;
}

const likeEscape = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);

function filterSql(tenantId: string, filter: ContactFilter): { where: string; params: unknown[] } {
  const params: unknown[] = [tenantId];
  const clauses = ['r.tenant_id = $1'];
  if (!filter.includeDeleted) clauses.push('NOT r.is_deleted');
  if (filter.text !== undefined && filter.phoneDigits !== undefined) {
    params.push(`%${likeEscape(filter.text)}%`, `%${filter.phoneDigits}%`);
    clauses.push(`(r.search_text LIKE $${params.length - 1} OR r.search_text LIKE $${params.length})`);
  } else if (filter.text !== undefined) {
    params.push(`%${likeEscape(filter.text)}%`);
    clauses.push(`r.search_text LIKE $${params.length}`);
  }
  if (filter.agent !== undefined) {
    params.push(filter.agent);
    clauses.push(`r.created_by_agent = $${params.length}`);
  }
  if (filter.updatedSince !== undefined) {
    params.push(filter.updatedSince);
    clauses.push(`r.updated_at > $${params.length}`);
  }
  return { where: clauses.join(' AND '), params };
}

export async function listContacts(
  db: Queryable,
  tenantId: string,
  filter: ContactFilter,
  page: { offset: number; limit: number },
): Promise<{ items: Contact[]; total: number }> {
  const { where, params } = filterSql(tenantId, filter);
  const [items, count] = await Promise.all([
    db.query<{ data: Contact }>(
      `SELECT ${CONTACT_WIRE_SQL} AS data FROM contacts r WHERE ${where}
        ORDER BY r.updated_at DESC, r.id LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
      [...params, page.limit, page.offset],
    ),
    db.query<{ total: number }>(`SELECT count(*)::int AS total FROM contacts r WHERE ${where}`, params),
  ]);
  return { items: items.rows.map((r) => r.data), total: count.rows[0].total };
}

export async function contactHistory(db: Queryable, tenantId: string, id: string): Promise<HistoryEntry[]> {
  const { rows } = await db.query<HistoryEntry>(
    `SELECT action, version, changes, agent_code AS "agentCode", device_id AS "deviceId", ${isoSql('at')} AS at
       FROM audit_log WHERE tenant_id = $1 AND collection = 'contacts' AND record_id = $2 ORDER BY version`,
    [tenantId, id],
  );
  return rows;
}

/** One page of live contacts after `afterId` in id order: the export walks these. */
export async function contactsAfter(db: Queryable, tenantId: string, afterId: string | null, limit: number): Promise<Contact[]> {
  const { rows } = await db.query<{ data: Contact }>(
    `SELECT ${CONTACT_WIRE_SQL} AS data FROM contacts r
      WHERE r.tenant_id = $1 AND NOT r.is_deleted AND ($2::uuid IS NULL OR r.id > $2::uuid)
      ORDER BY r.id LIMIT $3`,
    [tenantId, afterId, limit],
  );
  return rows.map((r) => r.data);
}
