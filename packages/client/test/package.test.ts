import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { build, type Plugin } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error a plain .mjs build script, typed by its doc comments
import { buildPackages, installedPackage } from '../../../scripts/build-packages.mjs';

/*
 * The SDK as an app installs it (issue 14): built (tsc), packed (`npm pack`), unpacked into the
 * node_modules of an app in a temporary folder outside the repository, and used from there by
 * plain Node (no TypeScript loader), by TypeScript through the published .d.ts, and by a
 * browser and a React Native bundler (esbuild), which must find no Node built-in in the main entry.
 */

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..', '..');
const requireFromRoot = createRequire(join(ROOT, 'package.json'));
let stage: string;
let appDir: string;
const tarballs: Record<string, string> = {};

beforeAll(async () => {
  stage = mkdtempSync(join(tmpdir(), 'fieldsync-package-'));
  const dirs: Record<string, string> = buildPackages({ stage: join(stage, 'packages') });
  for (const [name, dir] of Object.entries(dirs)) {
    const { stdout } = await run('npm', ['pack', '--pack-destination', stage, '--json', '--ignore-scripts'], { cwd: dir });
    tarballs[name] = join(stage, JSON.parse(stdout)[0].filename);
  }
  // The app: its own package.json, the two packages unpacked as npm installs them, their
  // dependencies linked from the repository's node_modules (no registry needed).
  appDir = join(stage, 'app');
  const modules = join(appDir, 'node_modules');
  mkdirSync(join(modules, '@fieldsync'), { recursive: true });
  writeFileSync(join(appDir, 'package.json'), JSON.stringify({ name: 'some-app', private: true, type: 'module' }));
  for (const [name, tarball] of Object.entries(tarballs)) {
    const into = join(modules, '@fieldsync', name);
    mkdirSync(into);
    await run('tar', ['xzf', tarball, '-C', into, '--strip-components=1']);
  }
  for (const dep of ['typebox', 'idb', 'socket.io-client']) {
    symlinkSync(installedPackage(dep, join(ROOT, 'packages', 'client')), join(modules, dep), 'dir');
  }
}, 120_000);
afterAll(() => rmSync(stage, { recursive: true, force: true }));

/** Bundles `code` from the app as a bundler for `target` would; answers the Node built-ins it pulled in. */
async function builtinsPulledBy(code: string, target: 'browser' | 'react-native'): Promise<string[]> {
  const found: string[] = [];
  const builtins = new Set(builtinModules);
  const spy: Plugin = {
    name: 'node-builtins',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path.replace(/^node:/, '').split('/')[0];
        if (args.path.startsWith('node:') || builtins.has(bare)) {
          found.push(`${args.path} (from ${args.importer.replace(appDir, '')})`);
          return { path: args.path, external: true };
        }
        return undefined;
      });
    },
  };
  await build({
    stdin: { contents: code, resolveDir: appDir, sourcefile: 'app.js' },
    bundle: true,
    write: false,
    format: 'esm',
    // Metro (React Native) honours the "browser" field's file replacements as esbuild's browser platform does.
    platform: 'browser',
    mainFields: target === 'browser' ? ['browser', 'module', 'main'] : ['react-native', 'browser', 'module', 'main'],
    conditions: target === 'browser' ? ['browser'] : ['react-native', 'browser', 'import'],
    plugins: [spy],
    logLevel: 'silent',
  });
  return found;
}

describe('the published packages', () => {
  it('pack their built ESM and .d.ts, package.json, README and LICENSE, and no sources', async () => {
    for (const [name, tarball] of Object.entries(tarballs)) {
      const { stdout } = await run('tar', ['tzf', tarball]);
      const files = stdout.trim().split('\n').map((f) => f.replace(/^package\//, ''));
      expect(files, name).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE']));
      expect(files.filter((f) => !['package.json', 'README.md', 'LICENSE'].includes(f)).every((f) => f.startsWith('dist/')), name).toBe(true);
      expect(files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), name).toBe(false);
    }
    const client = readdirSync(join(appDir, 'node_modules', '@fieldsync', 'client', 'dist'));
    expect(client).toEqual(expect.arrayContaining(['index.js', 'index.d.ts', 'node.js', 'node.d.ts', 'indexeddb-store.js', 'sqlite-store.js']));
    expect(client.some((f) => f.startsWith('simulator'))).toBe(false);
  });

  it('run in plain Node from an app outside the repository: create, list and a FileStore that survives a restart', async () => {
    writeFileSync(
      join(appDir, 'main.mjs'),
      `
import { createClient, MemoryStore, IndexedDbStore, SqliteStore } from '@fieldsync/client';
import { FileStore } from '@fieldsync/client/node';
import { ErrorCodes } from '@fieldsync/protocol/errors';
const opts = { url: 'http://127.0.0.1:9', apiKey: 'k'.repeat(40), deviceId: 'plain-node', networkEvents: false };
const client = await createClient({ ...opts, store: new MemoryStore() });
await client.create('contacts', { firstName: 'Ada', lastName: 'Lee', phonePrimary: '+14155550100' });
await client.create('contacts', { firstName: 'Bo', lastName: 'Lee', phonePrimary: '+14155550101' });
await client.create('contacts', { firstName: 'Cy', lastName: 'Park', phonePrimary: '+14155550102' });
const lees = await client.list('contacts', { where: { lastName: 'Lee' }, orderBy: ['firstName', 'desc'] });
await client.close();
const path = new URL('./data/device.jsonl', import.meta.url).pathname;
const first = await createClient({ ...opts, store: new FileStore(path) });
await first.create('spaces', { name: 'Kept' });
await first.close();
const second = await createClient({ ...opts, store: new FileStore(path) });
const kept = await second.list('spaces');
await second.close();
console.log(JSON.stringify({
  lees: lees.map((c) => c.firstName),
  kept: kept.map((s) => s.name),
  pending: second.state.pending,
  stores: [typeof IndexedDbStore, typeof SqliteStore],
  notFound: ErrorCodes.NOT_FOUND,
}));
`,
    );
    const { stdout } = await run(process.execPath, ['main.mjs'], { cwd: appDir, env: { ...process.env, NODE_OPTIONS: '' } });
    expect(JSON.parse(stdout)).toEqual({ lees: ['Bo', 'Ada'], kept: ['Kept'], pending: 1, stores: ['function', 'function'], notFound: 404 });
  });

  it('type-check an app through the published .d.ts, protocol types included', async () => {
    writeFileSync(
      join(appDir, 'typed.ts'),
      `
import { createClient, IndexedDbStore, type Contact, type SyncState } from '@fieldsync/client';
import { FileStore } from '@fieldsync/client/node';
export async function main(): Promise<string> {
  const client = await createClient({ url: 'https://sync.example.com', token: () => 'jwt', deviceId: 'typed', store: new IndexedDbStore('x') });
  const contact: Contact = await client.create('contacts', { firstName: 'Ada', phonePrimary: '+14155550100' });
  // @ts-expect-error a contact's firstName is a string (protocol types resolved, not any)
  const wrong: number = contact.firstName;
  const lees: Contact[] = await client.list('contacts', { where: { lastName: 'Lee' }, orderBy: ['firstName', 'asc'], limit: 5 });
  const stop: () => void = client.watch('items', { where: { isCompleted: false } }, (items) => items.map((i) => i.title.toUpperCase()));
  const state: SyncState = client.state;
  // @ts-expect-error update takes only the collection's fields
  await client.update('contacts', contact.id, { nope: 1 });
  stop();
  void new FileStore('x.jsonl');
  return String(wrong) + lees.length + state.online;
}
`,
    );
    writeFileSync(
      join(appDir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: [], lib: ['ES2022', 'DOM'] },
        files: ['typed.ts'],
      }),
    );
    const tsc = requireFromRoot.resolve('typescript/bin/tsc');
    const result = await run(process.execPath, [tsc, '-p', appDir]).catch((error) => error);
    expect(`${result.stdout ?? ''}${result.stderr ?? ''}`).toBe('');
  });

  it('bundle for browsers and React Native without a Node built-in; the ./node entry is where FileStore needs them', async () => {
    const app = "import { createClient, IndexedDbStore, SqliteStore, MemoryStore } from '@fieldsync/client'; export { createClient, IndexedDbStore, SqliteStore, MemoryStore };";
    expect(await builtinsPulledBy(app, 'browser')).toEqual([]);
    expect(await builtinsPulledBy(app, 'react-native')).toEqual([]);
    // The protocol's modules too (their schemas are values: typebox comes along).
    const modules = readdirSync(join(appDir, 'node_modules', '@fieldsync', 'protocol', 'dist')).filter((f) => f.endsWith('.js')).map((f) => f.slice(0, -3));
    expect(modules).toEqual(expect.arrayContaining(['sync', 'contacts', 'chat', 'errors']));
    const protocol = modules.map((m, i) => `export * as m${i} from '@fieldsync/protocol/${m}';`).join('\n');
    expect(await builtinsPulledBy(protocol, 'browser')).toEqual([]);
    expect(await builtinsPulledBy(protocol, 'react-native')).toEqual([]);
    // The detector sees what the Node entry pulls in (so an empty list above means something).
    const nodeEntry = await builtinsPulledBy("export { FileStore } from '@fieldsync/client/node';", 'browser');
    expect(nodeEntry.join(' ')).toContain('node:fs/promises');
  });
});
