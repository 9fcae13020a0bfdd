import { describe, expect, it } from 'vitest';
import { healthScore } from './devices.health.js';

const NOW = Date.parse('2026-06-01T12:00:00Z');
const ago = (hours: number) => new Date(NOW - hours * 3_600_000).toISOString();

describe('healthScore (docs/operations.md "Device health")', () => {
  it('is 100 for a current device that syncs cleanly and was seen within the hour', () => {
    expect(healthScore({ syncCount: 40, errorCount: 0, versionsBehind: 0, lastSeenAt: ago(0.5) }, NOW)).toBe(100);
  });
  it('takes 50 points for the success rate, 25 for lag on a log scale, 25 for recency over 48 hours', () => {
    expect(healthScore({ syncCount: 4, errorCount: 2, versionsBehind: 0, lastSeenAt: ago(0) }, NOW)).toBe(75);
    expect(healthScore({ syncCount: 1, errorCount: 0, versionsBehind: 100, lastSeenAt: ago(0) }, NOW)).toBe(83);
    expect(healthScore({ syncCount: 1, errorCount: 0, versionsBehind: 999, lastSeenAt: ago(0) }, NOW)).toBe(75);
    expect(healthScore({ syncCount: 1, errorCount: 0, versionsBehind: 0, lastSeenAt: ago(24.5) }, NOW)).toBe(88);
    expect(healthScore({ syncCount: 1, errorCount: 0, versionsBehind: 0, lastSeenAt: ago(48) }, NOW)).toBe(75);
    expect(healthScore({ syncCount: 1, errorCount: 0, versionsBehind: 0, lastSeenAt: null }, NOW)).toBe(75);
  });
  it('stays within 0-100 whatever the inputs', () => {
    expect(healthScore({ syncCount: 10, errorCount: 10, versionsBehind: 1e9, lastSeenAt: ago(1000) }, NOW)).toBe(0);
    expect(healthScore({ syncCount: 0, errorCount: 5, versionsBehind: -3, lastSeenAt: ago(-5) }, NOW)).toBe(100);
  });
});
