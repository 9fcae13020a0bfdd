import type { AlertType } from '@fieldsync/protocol/fleet';
import { quantile } from '../analytics/analytics.histogram.js';
import type { Totals } from '../analytics/analytics.service.js';

/** A condition that holds now: an alert to raise or keep. */
export interface Condition {
  tenantId: string;
  type: AlertType;
  severity: 'warning' | 'critical';
  message: string;
  deviceId?: string;
  value: number;
  threshold: number;
}

/**
 * The seed mobile-sync-system's alerting thresholds (SPEC §11). `below`: the alert holds when
 * the value falls under the threshold; otherwise when it rises above it. Device lag has no
 * seed row: SPEC names "more than 100 versions behind" (warning); 1000 is critical here.
 */
export const THRESHOLDS = {
  sync_success_rate: { warning: 0.98, critical: 0.95, below: true },
  conflict_rate: { warning: 0.03, critical: 0.05, below: false },
  p95_latency: { warning: 300, critical: 500, below: false },
  failed_syncs_per_minute: { warning: 5, critical: 10, below: false },
  device_health: { warning: 80, critical: 70, below: true },
  device_behind: { warning: 100, critical: 1000, below: false },
} as const satisfies Record<AlertType, { warning: number; critical: number; below: boolean }>;

/** Rates and percentiles of fewer samples than this say nothing and raise nothing. */
export const MIN_SAMPLES = 20;

/** The severity `value` reaches for `type`, if any. */
function severityOf(type: AlertType, value: number): { severity: 'warning' | 'critical'; threshold: number } | undefined {
  const t = THRESHOLDS[type];
  const past = (limit: number) => (t.below ? value < limit : value > limit);
  if (past(t.critical)) return { severity: 'critical', threshold: t.critical };
  if (past(t.warning)) return { severity: 'warning', threshold: t.warning };
  return undefined;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** The tenant-wide conditions that hold over a window of `windowMinutes` with counts `t`. */
export function tenantConditions(tenantId: string, t: Totals, windowMinutes: number): Condition[] {
  const out: Condition[] = [];
  const add = (type: AlertType, value: number, describe: (v: number, limit: number) => string) => {
    const hit = severityOf(type, value);
    if (hit) out.push({ tenantId, type, ...hit, value, message: describe(value, hit.threshold) });
  };
  const syncs = t.pulls + t.pushes;
  const window = `the last ${windowMinutes} minutes`;
  if (syncs >= MIN_SAMPLES) {
    add('sync_success_rate', (syncs - t.failures) / syncs, (v, l) => `Sync success rate ${pct(v)} over ${window} (threshold ${pct(l)})`);
    const p95 = quantile(t.hist, 0.95);
    if (p95 !== null) add('p95_latency', p95, (v, l) => `Sync p95 latency ${v} ms over ${window} (threshold ${l} ms)`);
  }
  if (t.changesPushed >= MIN_SAMPLES) {
    add('conflict_rate', t.conflicts / t.changesPushed, (v, l) => `Conflict rate ${pct(v)} of pushed changes over ${window} (threshold ${pct(l)})`);
  }
  add('failed_syncs_per_minute', Math.round((t.failures / windowMinutes) * 100) / 100, (v, l) => `${v} failed syncs per minute over ${window} (threshold ${l})`);
  return out;
}

/** The conditions of one device. */
export function deviceConditions(tenantId: string, d: { deviceId: string; healthScore: number; versionsBehind: number; agentCode: string | null }): Condition[] {
  const out: Condition[] = [];
  const who = d.agentCode ? `Device ${d.deviceId} (${d.agentCode})` : `Device ${d.deviceId}`;
  const health = severityOf('device_health', d.healthScore);
  if (health) out.push({ tenantId, type: 'device_health', deviceId: d.deviceId, ...health, value: d.healthScore, message: `${who} health ${d.healthScore} (threshold ${health.threshold})` });
  const behind = severityOf('device_behind', d.versionsBehind);
  if (behind) out.push({ tenantId, type: 'device_behind', deviceId: d.deviceId, ...behind, value: d.versionsBehind, message: `${who} is ${d.versionsBehind} versions behind (threshold ${behind.threshold})` });
  return out;
}
