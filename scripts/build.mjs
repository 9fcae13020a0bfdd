#!/usr/bin/env node
// `npm run build`: builds what ships.
// - The publishable packages @fieldsync/protocol and @fieldsync/client (tsc: ESM and .d.ts into
//   each package's dist/, scripts/build-packages.mjs).
// - The field app (examples/field-app/dist, esbuild): served at /app/.
// - The server (entry points main and cli) into packages/server/dist/server (two levels below
//   the package root, as src/<dir>/ is: files found from the package root, the migrations and
//   the dashboard's pages, resolve alike), one ES module each with its workspace code (protocol,
//   server) bundled in and every npm dependency left to node_modules. `npm start` then runs it
//   with plain Node: no TypeScript loader, no esbuild helper process.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildFieldApp, DIST as FIELD_APP_DIST } from '../examples/field-app/build.mjs';
import { buildPackages } from './build-packages.mjs';

const root = fileURLToPath(new URL('../', import.meta.url));
const server = JSON.parse(readFileSync(`${root}packages/server/package.json`, 'utf8'));
const dependencies = Object.keys(server.dependencies ?? {});
const outdir = `${root}packages/server/dist/server`;

let started = Date.now();
buildPackages();
process.stdout.write(`Built packages/protocol/dist and packages/client/dist in ${Date.now() - started} ms.\n`);

started = Date.now();
await buildFieldApp({ outdir: FIELD_APP_DIST });
process.stdout.write(`Built examples/field-app/dist in ${Date.now() - started} ms.\n`);

rmSync(`${root}packages/server/dist`, { recursive: true, force: true });
started = Date.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: { main: 'packages/server/src/main.ts', cli: 'packages/server/src/cli/main.ts', 'prepare-embedded': 'packages/server/src/db/prepare-embedded.ts' },
  outdir,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  // Dependencies (and their subpaths) stay external: installed, not copied.
  external: dependencies.flatMap((name) => [name, `${name}/*`]),
  // Bundled CommonJS helpers may call require(); ES modules have none of their own.
  banner: { js: "import { createRequire as __fieldsyncCreateRequire } from 'node:module'; const require = __fieldsyncCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
process.stdout.write(`Built packages/server/dist (${(bytes / 1024).toFixed(0)} KiB) in ${Date.now() - started} ms. \`npm start\` runs it.\n`);
