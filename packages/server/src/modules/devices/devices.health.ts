/**
 * Device health (SPEC §11, docs/operations.md "Device health"): 0-100 from three parts.
 *
 * - success, up to 50: 50 x the share of the device's syncs that succeeded (all of it before its first sync);
 * - lag, up to 25: 25 x (1 - log10(1 + versionsBehind) / 3), so 0 behind = 25, 10 = 16.3, 100 = 8.3, >= 999 = 0;
 * - recency, up to 25: 25 when last seen within the hour, falling linearly to 0 at 48 hours; 0 if never seen.
 *
 * Rounded to a whole number. A device that syncs cleanly and is current scores 100; one 100
 * versions behind drops to about 83; one silent for two days (and behind) falls under the
 * seed's alert thresholds (warning < 80, critical < 70).
 */
export function healthScore(d: { syncCount: number; errorCount: number; versionsBehind: number; lastSeenAt: string | null }, now = Date.now()): number {
  const syncs = Math.max(0, d.syncCount);
  const success = syncs === 0 ? 1 : Math.max(0, syncs - Math.max(0, d.errorCount)) / syncs;
  const lag = Math.max(0, 1 - Math.log10(1 + Math.max(0, d.versionsBehind)) / 3);
  let recency = 0;
  if (d.lastSeenAt !== null) {
    const hours = Math.max(0, (now - Date.parse(d.lastSeenAt)) / 3_600_000);
    recency = hours <= 1 ? 1 : Math.max(0, 1 - (hours - 1) / 47);
  }
  return Math.round(50 * success + 25 * lag + 25 * recency);
}
