import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { closed, freePort, ROOT, waitForHealth } from '../src/lib/child-server.js';

/*
 * The compiled server (issue 16): `npm run build` bundles it; `npm start` runs the build when
 * it is fresh and the sources when it is missing or older than them.
 */

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'fieldsync-build-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `npm start` (its script, without npm) on a free port; resolves with its first output once healthy, then stops it. */
async function start(): Promise<string> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: join(dir, 'data'), PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  const child = spawn(process.execPath, ['packages/server/bin/start.js'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  try {
    await waitForHealth(`http://127.0.0.1:${port}`, { exited: closed(child), output: () => output, timeoutMs: 60_000, intervalMs: 100 });
    for (let i = 0; i < 50 && !output.includes('is ready'); i++) await new Promise((r) => setTimeout(r, 100));
    return output;
  } finally {
    child.kill('SIGTERM');
    await closed(child);
  }
}

describe('the compiled server', () => {
  it('builds with npm run build and npm start runs the build; a source newer than the build runs the sources', async () => {
    const { stdout } = await run(process.execPath, ['scripts/build.mjs'], { cwd: ROOT });
    expect(stdout).toMatch(/Built packages\/server\/dist \(\d+ KiB\)/);
    expect(await start()).toContain('(running the compiled build)');
    // A source edited after the build: the stale build does not run.
    const main = join(ROOT, 'packages/server/src/main.ts');
    const later = new Date(Date.now() + 60_000);
    utimesSync(main, later, later);
    try {
      const output = await start();
      expect(output).toContain('The compiled server is older than the sources');
      expect(output).toContain('(running the TypeScript sources)');
    } finally {
      const now = new Date();
      utimesSync(main, now, now);
      await run(process.execPath, ['scripts/build.mjs'], { cwd: ROOT });
    }
  }, 180_000);
});
