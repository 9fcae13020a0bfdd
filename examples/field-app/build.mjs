// Builds the field app (examples/field-app) with esbuild: the app's TypeScript and the SDK it
// imports (from the SDK's sources, through the repository's tsconfig paths) into one ES module,
// the service worker with the list and version of the shell it keeps, and the static files.
// The server serves the result at /app/: from dist/ when `npm run build` wrote it and it is
// fresh, otherwise built in memory on the first request (so `npm start` on a fresh clone works).
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..', '..');
const PUBLIC = join(here, 'public');

/** Where `npm run build` writes the app. */
export const DIST = join(here, 'dist');

/**
 * Builds the app; answers its files by name (`index.html`, `app.js`, `sw.js`, ...). With
 * `outdir`, also writes them there (replacing what was).
 * @param {{ outdir?: string, minify?: boolean }} [opts]
 * @returns {Promise<Map<string, Uint8Array>>}
 */
export async function buildFieldApp(opts = {}) {
  const { build } = await import('esbuild');
  const common = {
    absWorkingDir: root,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: opts.minify ?? true,
    legalComments: 'none',
    write: false,
    logLevel: 'warning',
  };
  const files = new Map();
  const app = await build({ ...common, entryPoints: [join(here, 'src', 'main.ts')], outfile: 'app.js', sourcemap: 'linked' });
  for (const out of app.outputFiles) files.set(out.path.split('/').pop(), out.contents);
  for (const name of readdirSync(PUBLIC)) files.set(name, readFileSync(join(PUBLIC, name)));
  // The shell's version changes with any of its bytes: a new service worker then replaces the cached shell.
  const hash = createHash('sha256');
  for (const name of [...files.keys()].sort()) hash.update(name).update(files.get(name));
  const version = hash.digest('hex').slice(0, 16);
  const shell = ['./', ...[...files.keys()].filter((name) => !name.endsWith('.map') && name !== 'index.html').sort()];
  const sw = await build({
    ...common,
    entryPoints: [join(here, 'src', 'sw.ts')],
    outfile: 'sw.js',
    define: { __SHELL_VERSION__: JSON.stringify(version), __SHELL_FILES__: JSON.stringify(shell) },
  });
  files.set('sw.js', sw.outputFiles[0].contents);
  if (opts.outdir) {
    rmSync(opts.outdir, { recursive: true, force: true });
    mkdirSync(opts.outdir, { recursive: true });
    for (const [name, contents] of files) writeFileSync(join(opts.outdir, name), contents);
  }
  return files;
}
