import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Metric, ScenarioResult } from './types.js';

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGB: number;
  node: string;
  postgres: string;
  postgresSettings?: Record<string, string>;
  platform: string;
}

export interface RunResult {
  date: string;
  mode: 'quick' | 'full';
  only?: string[];
  machine: Machine;
  /** 1-, 5- and 15-minute load averages at the start and the end: the machine may be shared. */
  loadAverage: { start: number[]; end: number[] };
  durationMs: number;
  /** The result file this run was compared with. */
  previous?: string;
  scenarios: ScenarioResult[];
}

/** The newest earlier result of the same mode, if any. */
export function previousRun(dir: string, mode: string): { file: string; run: RunResult } | undefined {
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort().reverse();
  for (const file of files) {
    try {
      const run = JSON.parse(readFileSync(join(dir, file), 'utf8')) as RunResult;
      if (run.mode === mode) return { file, run };
    } catch {
      /* not a result file */
    }
  }
  return undefined;
}

/** Fills in each metric's change against the same metric of `previous`. */
export function compare(run: RunResult, previous: RunResult | undefined): void {
  if (!previous) return;
  const old = new Map<string, Metric>(previous.scenarios.flatMap((s) => s.metrics.map((m) => [m.key, m] as const)));
  for (const m of run.scenarios.flatMap((s) => s.metrics)) {
    const before = old.get(m.key);
    if (before && before.value !== 0 && Number.isFinite(before.value) && Number.isFinite(m.value)) m.change = (m.value - before.value) / before.value;
  }
}

const settingsText = (s: Record<string, string> | undefined) =>
  s ? ` (${Object.entries(s).map(([k, v]) => `${k}=${v}`).join(', ')})` : '';
const num = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '' : x.toLocaleString('en', { maximumFractionDigits: 3 }));
const esc = (s: string) => s.replace(/\|/g, '\\|');

function changeText(m: Metric): string {
  if (m.change === undefined) return '';
  const pct = `${m.change >= 0 ? '+' : ''}${(m.change * 100).toFixed(1)}%`;
  if (Math.abs(m.change) < 0.05) return pct;
  const better = m.better === 'lower' ? m.change < 0 : m.change > 0;
  return `${pct} (${better ? 'better' : 'worse'})`;
}

/** The markdown of one run: the table, the not-available and failed scenarios, the machine. */
export function markdown(run: RunResult): string {
  const lines: string[] = [];
  lines.push(`## ${run.mode === 'quick' ? 'Quick run (`--quick`, smoke check: short windows)' : 'Full run'} — ${run.date}`);
  lines.push('');
  lines.push(
    `Machine: ${run.machine.cpus} cores (${run.machine.cpuModel}), ${run.machine.memoryGB} GB memory, Node ${run.machine.node}, PostgreSQL ${run.machine.postgres}${settingsText(run.machine.postgresSettings)}, ${run.machine.platform}. ` +
      `Load average (1/5/15 min) at start ${run.loadAverage.start.map((x) => x.toFixed(2)).join(' / ')}, at end ${run.loadAverage.end.map((x) => x.toFixed(2)).join(' / ')}. ` +
      `Duration ${(run.durationMs / 1000).toFixed(0)} s.${run.only ? ` Only: ${run.only.join(', ')}.` : ''} ` +
      (run.previous ? `Change is against \`results/${run.previous}\`.` : 'No previous run of this mode to compare with.'),
  );
  lines.push('');
  lines.push('| scenario | metric | value | target | met? | physical limit | × limit | change vs previous |');
  lines.push('| --- | --- | ---: | ---: | :---: | ---: | ---: | ---: |');
  for (const s of run.scenarios) {
    if (s.status !== 'ok') {
      lines.push(`| ${s.name} | ${s.status} | | | | | | |`);
      continue;
    }
    for (const m of s.metrics) {
      lines.push(
        `| ${s.name} | ${esc(m.label)} | ${num(m.value)} ${m.unit} | ${m.target ? `${m.target.op} ${num(m.target.value)} ${m.unit}` : ''} | ${m.met === undefined ? '' : m.met ? 'yes' : '**no**'} | ${m.limit === undefined ? '' : `${num(m.limit)} ${m.unit}`} | ${m.ratio === undefined ? '' : `${m.ratio.toFixed(1)}×`} | ${changeText(m)} |`,
      );
    }
  }
  lines.push('');
  const notOk = run.scenarios.filter((s) => s.status !== 'ok');
  if (notOk.length > 0) {
    for (const s of notOk) lines.push(`- **${s.name}** (${s.title}): ${s.status} — ${esc(s.reason ?? '')}`);
    lines.push('');
  }
  const limits = new Map<string, string>();
  for (const s of run.scenarios) for (const m of s.metrics) if (m.limitWhat) limits.set(s.name, m.limitWhat);
  lines.push('Physical limits measured in this run:');
  for (const [name, what] of limits) lines.push(`- ${name}: ${what}`);
  lines.push('');
  lines.push(`Load average (1 min) when each scenario ended: ${run.scenarios.map((s) => `${s.name} ${s.loadAverage.toFixed(2)}`).join(', ')}.`);
  lines.push('');
  return lines.join('\n');
}

const HEADER = `# Benchmark results

Generated by \`npm run bench\` (packages/server/bench/run.ts); do not edit by hand. Every
scenario of SPEC §12 runs against the real server on real PostgreSQL with data the suite
generates, the load coming from separate processes on the same machine. "Physical limit" is
the same work measured in the same run without the server: the server's own SQL straight
through \`pg\`, or the same broadcast through a bare \`ws\` server. "× limit" is how many times
slower than that limit the server is (1.0× = no overhead). Targets are reported, never
asserted. Raw numbers of every run: \`results/<date>.json\`; how to run and read them:
\`README.md\`. For scale, SPEC §12 says a stock PouchDB server on this class of machine does
about 4,000 pushed records/s, 14,000 records/s of initial sync, delta pulls at p95 16 ms and
120 pulls/s from 50 clients.

`;

/** Writes the run's JSON and regenerates RESULTS.md from the newest full and quick runs. */
export function writeResults(benchDir: string, run: RunResult): string {
  const dir = join(benchDir, 'results');
  mkdirSync(dir, { recursive: true });
  const file = `${run.date.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`;
  writeFileSync(join(dir, file), `${JSON.stringify(run, null, 2)}\n`);
  const sections = (['full', 'quick'] as const).flatMap((mode) => {
    const latest = previousRun(dir, mode);
    return latest ? [markdown(latest.run)] : [];
  });
  writeFileSync(join(benchDir, 'RESULTS.md'), HEADER + sections.join('\n'));
  return join(dir, file);
}
