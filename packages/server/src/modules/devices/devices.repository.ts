import type { Device } from '@fieldsync/protocol/devices';
import type { Queryable } from '../../db/db.js';
import { isoSql } from '../contacts/contacts.collection.js';

/** What one flush writes for a device: the latest facts, and counters to add. */
export interface DeviceUpdate {
  tenantId: string;
  deviceId: string;
  userId?: string;
  agentCode?: string;
  platform?: string;
  appVersion?: string;
  osVersion?: string;
  networkType?: string;
  battery?: number;
  lastSyncVersion?: number;
  lastSyncAt?: string;
  /** Absent for a delivery alone (the device was not seen: its socket was written to). */
  lastSeenAt?: string;
  syncStatus?: string;
  addChanges: number;
  addSyncs: number;
  addErrors: number;
}

/** Upserts many devices in one statement; absent facts keep their stored value. */
export async function upsertDevices(db: Queryable, updates: DeviceUpdate[]): Promise<void> {
  if (updates.length === 0) return;
  await db.query(
    `INSERT INTO devices AS d (tenant_id, device_id, user_id, agent_code, platform, app_version, os_version, network_type,
       battery, last_sync_version, last_sync_at, last_seen_at, sync_status, changes_count, sync_count, error_count)
     SELECT u.tenant_id, u.device_id, u.user_id, u.agent_code, u.platform, u.app_version, u.os_version, u.network_type,
       u.battery, coalesce(u.last_sync_version, 0), u.last_sync_at, u.last_seen_at, coalesce(u.sync_status, 'never'),
       u.add_changes, u.add_syncs, u.add_errors
     FROM jsonb_to_recordset($1::jsonb) AS u(tenant_id uuid, device_id text, user_id uuid, agent_code text, platform text,
       app_version text, os_version text, network_type text, battery real, last_sync_version bigint,
       last_sync_at timestamptz, last_seen_at timestamptz, sync_status text, add_changes bigint, add_syncs bigint,
       add_errors bigint)
     ON CONFLICT (tenant_id, device_id) DO UPDATE SET
       user_id = coalesce(EXCLUDED.user_id, d.user_id),
       agent_code = coalesce(EXCLUDED.agent_code, d.agent_code),
       platform = coalesce(EXCLUDED.platform, d.platform),
       app_version = coalesce(EXCLUDED.app_version, d.app_version),
       os_version = coalesce(EXCLUDED.os_version, d.os_version),
       network_type = coalesce(EXCLUDED.network_type, d.network_type),
       battery = coalesce(EXCLUDED.battery, d.battery),
       last_sync_version = greatest(d.last_sync_version, EXCLUDED.last_sync_version),
       last_sync_at = coalesce(EXCLUDED.last_sync_at, d.last_sync_at),
       last_seen_at = coalesce(greatest(EXCLUDED.last_seen_at, d.last_seen_at), d.last_seen_at, EXCLUDED.last_seen_at),
       sync_status = CASE WHEN EXCLUDED.last_sync_at IS NULL THEN d.sync_status ELSE EXCLUDED.sync_status END,
       changes_count = d.changes_count + EXCLUDED.changes_count,
       sync_count = d.sync_count + EXCLUDED.sync_count,
       error_count = d.error_count + EXCLUDED.error_count`,
    [
      JSON.stringify(
        updates.map((u) => ({
          tenant_id: u.tenantId,
          device_id: u.deviceId,
          user_id: u.userId ?? null,
          agent_code: u.agentCode ?? null,
          platform: u.platform ?? null,
          app_version: u.appVersion ?? null,
          os_version: u.osVersion ?? null,
          network_type: u.networkType ?? null,
          battery: u.battery ?? null,
          last_sync_version: u.lastSyncVersion ?? null,
          last_sync_at: u.lastSyncAt ?? null,
          last_seen_at: u.lastSeenAt ?? null,
          sync_status: u.syncStatus ?? null,
          add_changes: u.addChanges,
          add_syncs: u.addSyncs,
          add_errors: u.addErrors,
        })),
      ),
    ],
  );
}

/**
 * Raises the checkpoint of devices that a `changes` event up to `version` reached (a socket
 * delivery: nothing else about them changed). One statement per version: a commit reaching
 * ten thousand sockets costs their ids, not an upsert of every column of every row.
 */
export async function raiseDelivered(db: Queryable, tenantId: string, version: number, deviceIds: string[]): Promise<void> {
  if (deviceIds.length === 0) return;
  await db.query(
    `UPDATE devices SET last_sync_version = $2
      WHERE tenant_id = $1 AND device_id = ANY (ARRAY(SELECT json_array_elements_text($3::json))) AND last_sync_version < $2`,
    [tenantId, version, JSON.stringify(deviceIds)],
  );
}

const DEVICE_SQL = `SELECT d.device_id AS "deviceId", d.user_id AS "userId", d.agent_code AS "agentCode", d.platform,
    d.app_version AS "appVersion", d.os_version AS "osVersion", d.network_type AS "networkType", d.battery,
    d.last_sync_version AS "lastSyncVersion",
    CASE WHEN d.last_sync_at IS NULL THEN NULL ELSE ${isoSql('d.last_sync_at')} END AS "lastSyncAt",
    CASE WHEN d.last_seen_at IS NULL THEN NULL ELSE ${isoSql('d.last_seen_at')} END AS "lastSeenAt",
    d.sync_status AS "syncStatus", d.changes_count AS "changesCount", d.sync_count AS "syncCount", d.error_count AS "errorCount",
    greatest(tv.current_version - d.last_sync_version, 0) AS "versionsBehind"
  FROM devices d JOIN tenant_versions tv ON tv.tenant_id = d.tenant_id`;

export type DeviceRow = Omit<Device, 'online' | 'healthScore'>;

export async function listDevices(db: Queryable, tenantId: string, minBehind?: number): Promise<DeviceRow[]> {
  const { rows } = await db.query<DeviceRow>(
    `${DEVICE_SQL} WHERE d.tenant_id = $1 AND ($2::bigint IS NULL OR tv.current_version - d.last_sync_version > $2::bigint)
      ORDER BY d.last_seen_at DESC NULLS LAST, d.device_id`,
    [tenantId, minBehind ?? null],
  );
  return rows;
}

export async function findDevice(db: Queryable, tenantId: string, deviceId: string): Promise<DeviceRow | undefined> {
  const { rows } = await db.query<DeviceRow>(`${DEVICE_SQL} WHERE d.tenant_id = $1 AND d.device_id = $2`, [tenantId, deviceId]);
  return rows[0];
}

/**
 * The user a device id belongs to: the caller's when the device is new to the tenant, else
 * whoever first claimed it (a concurrent first claim by someone else wins or loses atomically).
 */
export async function claimDevice(db: Queryable, tenantId: string, deviceId: string, userId: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await db.query<{ user_id: string }>(
      `WITH claimed AS (
         INSERT INTO device_owners (tenant_id, device_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING user_id)
       SELECT user_id FROM claimed UNION ALL SELECT user_id FROM device_owners WHERE tenant_id = $1 AND device_id = $2`,
      [tenantId, deviceId, userId],
    );
    // Empty only when another claim committed between this statement's snapshot and its insert.
    if (rows.length > 0) return rows[0].user_id;
    if (attempt === 3) throw new Error(`device ${deviceId} could not be claimed`);
  }
}

/** Devices of every tenant seen since `sinceMs` (the alert rules' fleet), with their tenant. */
export async function listRecentDevices(db: Queryable, sinceMs: number): Promise<(DeviceRow & { tenantId: string })[]> {
  const { rows } = await db.query<DeviceRow & { tenantId: string }>(
    `${DEVICE_SQL.replace('SELECT ', 'SELECT d.tenant_id AS "tenantId", ')} WHERE d.last_seen_at >= to_timestamp($1 / 1000.0)`,
    [sinceMs],
  );
  return rows;
}
