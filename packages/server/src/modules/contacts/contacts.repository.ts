import type { Contact, HistoryEntry } from '@fieldsync/protocol/contacts';
import type { Queryable } from '../../db/db.js';
import { CONTACT_WIRE_SQL, isoSql } from './contacts.collection.js';

export async function findContact(db: Queryable, tenantId: string, id: string, includeDeleted = false): Promise<Contact | undefined> {
  const { rows } = await db.query<{ data: Contact }>(
    `SELECT ${CONTACT_WIRE_SQL} AS data FROM contacts r WHERE r.tenant_id = $1 AND r.id = $2 ${includeDeleted ? '' : 'AND NOT r.is_deleted'}`,
    [tenantId, id],
  );
  return rows[0]?.data;
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
