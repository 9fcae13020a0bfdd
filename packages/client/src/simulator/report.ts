import type { SimulationReport } from './simulator.js';

const list = (map: Record<string, number>) =>
  Object.entries(map)
    .sort(([, a], [, b]) => b - a)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || 'none';
const sum = (map: Record<string, number>) => Object.values(map).reduce((s, v) => s + v, 0);
const ms = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`);

/** The report as text for a terminal. */
export function formatReport(r: SimulationReport): string {
  const lines = [
    `Fieldsync fleet simulation — seed ${r.seed}, ${r.devices} devices (${r.agents} agents), ${r.seconds} s, ${ms(r.durationMs)} in all`,
    `server        ${r.server.own ? `own (${r.server.database})` : r.server.url}; kills: SIGKILL ${r.server.kills.SIGKILL}, SIGTERM ${r.server.kills.SIGTERM}; down ${ms(r.server.downtimeMs)}`,
    `operations    ${sum(r.operations)} local writes: ${list(r.operations)}`,
    `acknowledged  ${list(r.acknowledged)}`,
    `rejected      ${list(r.rejected)}`,
    `conflicts     by outcome: ${list(r.conflicts.byOutcome)}; by strategy: ${list(r.conflicts.byStrategy)}`,
    `retries       ${r.retries.total} (${list(r.retries.byOperation)}; ${list(r.retries.byCode)})`,
    `faults        offline periods ${r.faults.offlinePeriods}, lost push answers ${r.faults.lostResponses}, dropped sockets ${r.faults.droppedSockets}, app restarts ${r.faults.deviceRestarts}`,
    `lag           ack to other online devices: p50 ${ms(r.lagMs.p50)}, p95 ${ms(r.lagMs.p95)}, max ${ms(r.lagMs.max)} (${r.lagMs.samples} samples)`,
    `settle        final sync of every device ${ms(r.settleMs)}; server at version ${r.finalVersion}`,
    `checked       ${r.checks.devices} device copies against the server, ${r.checks.records} records, ${r.checks.acknowledged} acknowledged changes, ${r.checks.fieldsChecked} contested fields`,
  ];
  if (r.violations.length === 0) {
    lines.push('violations    none');
  } else {
    const kinds: Record<string, number> = {};
    for (const v of r.violations) kinds[v.kind] = (kinds[v.kind] ?? 0) + 1;
    lines.push(`VIOLATIONS    ${r.violations.length}: ${list(kinds)}`);
    for (const v of r.violations.slice(0, 30)) lines.push(`  - [${v.kind}] ${v.message}`);
    if (r.violations.length > 30) lines.push(`  ... and ${r.violations.length - 30} more`);
  }
  return lines.join('\n');
}
