import { describe, expect, it } from 'vitest';
import { bucketOf, emptyHist } from '../analytics/analytics.histogram.js';
import { deviceConditions, tenantConditions } from './alerts.rules.js';

const totals = (over: Partial<{ pulls: number; pushes: number; failures: number; changesPushed: number; conflicts: number; latencyMs: number }>) => {
  const hist = emptyHist();
  const syncs = (over.pulls ?? 0) + (over.pushes ?? 0);
  hist[bucketOf(over.latencyMs ?? 20)] += syncs;
  return { pulls: over.pulls ?? 0, pushes: over.pushes ?? 0, failures: over.failures ?? 0, changesPushed: over.changesPushed ?? 0, conflicts: over.conflicts ?? 0, itemsSynced: 0, hist };
};
const types = (cs: { type: string; severity: string }[]) => Object.fromEntries(cs.map((c) => [c.type, c.severity]));

describe('alert rules (seed mobile-sync-system thresholds)', () => {
  it('raises nothing for a healthy window', () => {
    expect(tenantConditions('t', totals({ pulls: 500, pushes: 100, changesPushed: 1000, conflicts: 10 }), 5)).toEqual([]);
  });
  it('warns past the warning threshold and is critical past the critical one', () => {
    expect(types(tenantConditions('t', totals({ pulls: 100, failures: 3, changesPushed: 100, conflicts: 4, latencyMs: 350 }), 5))).toEqual({
      sync_success_rate: 'warning',
      conflict_rate: 'warning',
      p95_latency: 'warning',
    });
    expect(types(tenantConditions('t', totals({ pulls: 100, failures: 60, changesPushed: 100, conflicts: 6, latencyMs: 600 }), 5))).toEqual({
      sync_success_rate: 'critical',
      conflict_rate: 'critical',
      p95_latency: 'critical',
      failed_syncs_per_minute: 'critical',
    });
  });
  it('judges no rate on fewer than 20 samples, but counts failures per minute regardless', () => {
    expect(types(tenantConditions('t', totals({ pulls: 19, failures: 19, changesPushed: 19, conflicts: 19, latencyMs: 900 }), 1))).toEqual({
      failed_syncs_per_minute: 'critical',
    });
  });
  it('raises device health under 80 / 70 and lag over 100 / 1000 versions', () => {
    expect(deviceConditions('t', { deviceId: 'd', healthScore: 85, versionsBehind: 100, agentCode: 'A1' })).toEqual([]);
    expect(types(deviceConditions('t', { deviceId: 'd', healthScore: 75, versionsBehind: 101, agentCode: null }))).toEqual({ device_health: 'warning', device_behind: 'warning' });
    expect(types(deviceConditions('t', { deviceId: 'd', healthScore: 60, versionsBehind: 5000, agentCode: null }))).toEqual({ device_health: 'critical', device_behind: 'critical' });
  });
});
