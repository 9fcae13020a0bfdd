import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from '../../src/lib/child-server.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** The newest .cpuprofile of `dir`, if any. */
export function newestProfile(dir: string): string | undefined {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return files[0];
}

/** Where a frame comes from: a path relative to the repository, or a node internal. */
function placeOf(url: string, line: number): string {
  if (!url) return '(native)';
  const path = url.startsWith('file://') ? relative(ROOT, new URL(url).pathname) : url;
  return `${path.replace(/^node_modules\//, 'nm/')}:${line + 1}`;
}

/**
 * The top functions of a V8 CPU profile by self time, and the share of time by package
 * (the server's own code, each dependency, node internals, idle/GC): where the server's CPU went.
 */
export function summarizeProfile(file: string, top = 25): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[] };
  const self = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    total += hits;
    const { functionName, url, lineNumber } = node.callFrame;
    const key = `${functionName || '(anonymous)'} ${placeOf(url, lineNumber)}`;
    self.set(key, (self.get(key) ?? 0) + hits);
    const pkg = !url
      ? functionName.startsWith('(') ? functionName : '(native)'
      : url.startsWith('node:')
        ? 'node internals'
        : /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? (url.includes('/packages/') ? /packages\/[^/]+\/src\/[^/]+/.exec(url)?.[0] ?? 'fieldsync' : 'other');
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits);
  }
  const pct = (n: number) => `${((100 * n) / total).toFixed(1).padStart(5)}%`;
  const lines = [`CPU profile ${relative(ROOT, file)}: ${total} samples`, '', 'self time by package:'];
  for (const [pkg, n] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 15)) lines.push(`  ${pct(n)}  ${pkg}`);
  lines.push('', `top ${top} functions by self time:`);
  for (const [key, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(n)}  ${key}`);
  return lines.join('\n');
}
