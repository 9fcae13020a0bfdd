import type { Queryable } from '../db/db.js';

/** One record change as the audit log keeps it: which fields went from what to what. */
export interface AuditEntry {
  tenantId: string;
  collection: string;
  recordId: string;
  version: number;
  action: 'create' | 'update' | 'delete';
  changes: Record<string, { from: unknown; to: unknown }>;
  userId?: string;
  agentCode?: string;
  deviceId?: string;
  /** When the change was made (ISO): a push's clamped client time; receipt time when absent. */
  at?: string;
}

/** SQL: inserts the audit entries of the JSON array in parameter `param` (see auditPayload). */
export const AUDIT_INSERT_SQL = (param: string) =>
  `INSERT INTO audit_log (tenant_id, collection, record_id, version, action, changed_fields, changes, user_id, agent_code, device_id, change_ts)
   SELECT e.tenant_id, e.collection, e.record_id, e.version, e.action,
          ARRAY(SELECT jsonb_object_keys(e.changes)), e.changes, e.user_id, e.agent_code, e.device_id, coalesce(e.at, now())
     FROM jsonb_to_recordset(${param}::jsonb) AS e(tenant_id uuid, collection text, record_id uuid, version bigint,
          action text, changes jsonb, user_id uuid, agent_code text, device_id text, at timestamptz)`;

/** The parameter AUDIT_INSERT_SQL reads: the entries as a JSON array of rows. */
export function auditPayload(entries: AuditEntry[]): string {
  return JSON.stringify(
    entries.map((e) => ({
      tenant_id: e.tenantId,
      collection: e.collection,
      record_id: e.recordId,
      version: e.version,
      action: e.action,
      changes: e.changes,
      user_id: e.userId ?? null,
      agent_code: e.agentCode ?? null,
      device_id: e.deviceId ?? null,
      at: e.at ?? null,
    })),
  );
}

/** Appends audit entries in one statement, inside the writer's transaction. */
export async function appendAudit(tx: Queryable, entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await tx.query(AUDIT_INSERT_SQL('$1'), [auditPayload(entries)]);
}

/** The field-level difference between two wire records, for the audit log. */
export function diffRecords(
  before: Record<string, unknown> | undefined,
  after: Record<string, unknown>,
  fields: readonly string[],
): Record<string, { from: unknown; to: unknown }> {
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const field of fields) {
    const from = before?.[field] ?? null;
    const to = after[field] ?? null;
    const same = from === to || (typeof from === 'object' && typeof to === 'object' && JSON.stringify(from) === JSON.stringify(to));
    if (!same) changes[field] = { from, to };
  }
  return changes;
}
