import type { Alert } from '@fieldsync/protocol/fleet';
import type { Queryable } from '../../db/db.js';
import { isoSql } from '../contacts/contacts.collection.js';
import type { Condition } from './alerts.rules.js';

const ALERT_SQL = `SELECT id, tenant_id AS "tenantId", type, severity, message, device_id AS "deviceId", value, threshold,
    ${isoSql('created_at')} AS "createdAt", CASE WHEN resolved_at IS NULL THEN NULL ELSE ${isoSql('resolved_at')} END AS "resolvedAt"
  FROM alerts`;

export type AlertRow = Omit<Alert, 'deviceId'> & { tenantId: string; deviceId: string | null };

/** Active alerts of every tenant. */
export async function findActive(db: Queryable): Promise<AlertRow[]> {
  return (await db.query<AlertRow>(`${ALERT_SQL} WHERE resolved_at IS NULL`)).rows;
}

/** A tenant's alerts, newest first. */
export async function listAlerts(db: Queryable, tenantId: string, status: 'active' | 'resolved', limit: number): Promise<AlertRow[]> {
  const { rows } = await db.query<AlertRow>(
    `${ALERT_SQL} WHERE tenant_id = $1 AND (resolved_at IS NULL) = $2 ORDER BY created_at DESC, id LIMIT $3`,
    [tenantId, status === 'active', limit],
  );
  return rows;
}

const conditionsJson = (conditions: Condition[]) =>
  JSON.stringify(
    conditions.map((c) => ({
      tenant_id: c.tenantId,
      type: c.type,
      severity: c.severity,
      message: c.message,
      device_id: c.deviceId ?? null,
      value: c.value,
      threshold: c.threshold,
    })),
  );

/** Raises alerts; one already active for the same tenant, type and device (another instance's) is left alone. Returns those raised. */
export async function insertAlerts(db: Queryable, conditions: Condition[]): Promise<AlertRow[]> {
  if (conditions.length === 0) return [];
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO alerts (id, tenant_id, type, severity, message, device_id, value, threshold)
     SELECT gen_random_uuid(), c.tenant_id, c.type, c.severity, c.message, c.device_id, c.value, c.threshold
       FROM jsonb_to_recordset($1::jsonb) AS c(tenant_id uuid, type text, severity text, message text, device_id text,
         value double precision, threshold double precision)
     ON CONFLICT (tenant_id, type, coalesce(device_id, '')) WHERE resolved_at IS NULL DO NOTHING
     RETURNING id`,
    [conditionsJson(conditions)],
  );
  if (rows.length === 0) return [];
  return (await db.query<AlertRow>(`${ALERT_SQL} WHERE id = ANY($1::uuid[])`, [rows.map((r) => r.id)])).rows;
}

/** Updates active alerts in place (their value moved, or their severity). */
export async function updateAlerts(db: Queryable, conditions: (Condition & { id: string })[]): Promise<void> {
  if (conditions.length === 0) return;
  await db.query(
    `UPDATE alerts a SET severity = c.severity, message = c.message, value = c.value, threshold = c.threshold, updated_at = now()
       FROM jsonb_to_recordset($1::jsonb) AS c(id uuid, severity text, message text, value double precision, threshold double precision)
      WHERE a.id = c.id AND a.resolved_at IS NULL`,
    [JSON.stringify(conditions.map((c) => ({ id: c.id, severity: c.severity, message: c.message, value: c.value, threshold: c.threshold })))],
  );
}

/** Resolves active alerts; returns those this call resolved (not another instance). */
export async function resolveAlerts(db: Queryable, ids: string[]): Promise<AlertRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<{ id: string }>(
    'UPDATE alerts SET resolved_at = now(), updated_at = now() WHERE id = ANY($1::uuid[]) AND resolved_at IS NULL RETURNING id',
    [ids],
  );
  if (rows.length === 0) return [];
  return (await db.query<AlertRow>(`${ALERT_SQL} WHERE id = ANY($1::uuid[])`, [rows.map((r) => r.id)])).rows;
}

/** Removes alerts resolved before `before` (ms). */
export async function deleteResolvedBefore(db: Queryable, before: number): Promise<void> {
  await db.query('DELETE FROM alerts WHERE resolved_at < to_timestamp($1 / 1000.0)', [before]);
}
