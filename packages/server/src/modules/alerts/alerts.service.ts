import type { Alert } from '@fieldsync/protocol/fleet';
import type { Logger } from 'pino';
import type { Db } from '../../db/db.js';
import type { AnalyticsService } from '../analytics/analytics.service.js';
import { listRecentDevices } from '../devices/devices.repository.js';
import { healthScore } from '../devices/devices.health.js';
import * as repo from './alerts.repository.js';
import { deviceConditions, tenantConditions, type Condition } from './alerts.rules.js';

/** The window the tenant-wide rules read: rates, p95 and failures per minute over the last 5 minutes. */
export const ALERT_WINDOW_MINUTES = 5;
/** Devices silent longer than this are retired, not sick: they raise no device alert. */
const DEVICE_ALERT_MAX_SILENCE_MS = 30 * 24 * 3_600_000;
/** How long resolved alerts are kept. */
const RESOLVED_KEEP_MS = 90 * 24 * 3_600_000;

export interface AlertsService {
  /** Evaluates every rule for every tenant once: raises, updates and resolves alerts. */
  evaluate(): Promise<void>;
  list(tenantId: string, status: 'active' | 'resolved', limit: number): Promise<Alert[]>;
}

const toWire = (row: repo.AlertRow): Alert => {
  const { tenantId: _tenant, deviceId, ...rest } = row;
  return deviceId === null ? rest : { ...rest, deviceId };
};

const keyOf = (c: { tenantId: string; type: string; deviceId?: string | null }) => `${c.tenantId}|${c.type}|${c.deviceId ?? ''}`;

/**
 * Alerts (SPEC §11, docs/operations.md "Alerts"): each round reads the last minutes of sync
 * analytics (every instance's, through the database) and the fleet's devices, works out which
 * conditions hold, raises the new ones, updates the ones still holding and resolves the rest.
 * Instances take turns (the alerts job claims each round, jobs/periodic.ts `claimRound`) and
 * may still evaluate at once (`tick()`): the active-alert unique index and conditional updates
 * make every raise and resolve happen once, and only the instance that did it logs and
 * announces it.
 */
export function createAlertsService(deps: {
  db: Db;
  analytics: AnalyticsService;
  logger: Logger;
  /** An alert was raised or resolved: the dashboard hears it. */
  onAlert?: (tenantId: string, alert: Alert, change: 'raised' | 'resolved') => void;
  now?: () => number;
}): AlertsService {
  const now = deps.now ?? Date.now;
  let cleanedAt = 0;
  return {
    async evaluate() {
      const conditions = new Map<string, Condition>();
      const recent = await deps.analytics.recent(ALERT_WINDOW_MINUTES * 60_000);
      for (const [tenantId, totals] of recent) {
        for (const c of tenantConditions(tenantId, totals, ALERT_WINDOW_MINUTES)) conditions.set(keyOf(c), c);
      }
      const at = now();
      for (const device of await listRecentDevices(deps.db, at - DEVICE_ALERT_MAX_SILENCE_MS)) {
        const d = { ...device, healthScore: healthScore(device, at) };
        for (const c of deviceConditions(device.tenantId, d)) conditions.set(keyOf(c), c);
      }

      const active = new Map((await repo.findActive(deps.db)).map((a) => [keyOf(a), a]));
      const toRaise: Condition[] = [];
      const toUpdate: (Condition & { id: string })[] = [];
      for (const [key, c] of conditions) {
        const existing = active.get(key);
        if (!existing) toRaise.push(c);
        else if (existing.severity !== c.severity || existing.value !== c.value) {
          toUpdate.push({ ...c, id: existing.id });
          if (existing.severity !== c.severity) {
            deps.logger.warn({ alert: { id: existing.id, tenantId: c.tenantId, type: c.type, deviceId: c.deviceId, severity: c.severity, value: c.value } }, 'alert severity changed');
          }
        }
      }
      const gone = [...active].filter(([key]) => !conditions.has(key)).map(([, a]) => a.id);

      for (const row of await repo.insertAlerts(deps.db, toRaise)) {
        deps.logger.warn({ alert: { id: row.id, tenantId: row.tenantId, type: row.type, severity: row.severity, deviceId: row.deviceId, value: row.value, threshold: row.threshold } }, `alert raised: ${row.message}`);
        deps.onAlert?.(row.tenantId, toWire(row), 'raised');
      }
      await repo.updateAlerts(deps.db, toUpdate);
      for (const row of await repo.resolveAlerts(deps.db, gone)) {
        deps.logger.info({ alert: { id: row.id, tenantId: row.tenantId, type: row.type, deviceId: row.deviceId } }, `alert resolved: ${row.message}`);
        deps.onAlert?.(row.tenantId, toWire(row), 'resolved');
      }
      if (at - cleanedAt >= 3_600_000) {
        cleanedAt = at;
        await repo.deleteResolvedBefore(deps.db, at - RESOLVED_KEEP_MS);
      }
    },
    async list(tenantId, status, limit) {
      return (await repo.listAlerts(deps.db, tenantId, status, limit)).map(toWire);
    },
  };
}
