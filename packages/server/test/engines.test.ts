import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../src/lib/child-server.js';

/*
 * Supported Node.js versions (issue 16): what `engines` promises, every installed package
 * must run on. A dependency that needs a newer Node than the oldest one we claim is an install-
 * time EBADENGINE warning and, worse, a claim we cannot keep; the overrides in package.json pin
 * the two that moved to Node 22 (content-disposition 3, cookie 2) to their Node 18 lines.
 */

const json = (path: string) => JSON.parse(readFileSync(join(ROOT, path), 'utf8'));

describe('supported Node.js versions', () => {
  const root = json('package.json');
  const oldest = semver.minVersion(root.engines.node)!;

  it('the oldest Node.js the project claims is the one it is tested on or older, and a supported line', () => {
    expect(semver.lte(oldest, process.versions.node)).toBe(true);
    expect(semver.gte(oldest, '20.19.0')).toBe(true); // require(esm) and the Node 20 APIs the server uses
  });

  it('every package in the lock file runs on the oldest Node.js the project claims', () => {
    const lock = json('package-lock.json');
    const needNewer = Object.entries<{ version?: string; engines?: { node?: string } | string[] }>(lock.packages)
      .filter(([path, meta]) => path && meta.engines && !Array.isArray(meta.engines) && meta.engines.node)
      .filter(([, meta]) => !semver.satisfies(oldest, (meta.engines as { node: string }).node, { includePrerelease: true }))
      .map(([path, meta]) => `${path}@${meta.version} needs node ${(meta.engines as { node: string }).node}`);
    expect(needNewer).toEqual([]);
  });
});
