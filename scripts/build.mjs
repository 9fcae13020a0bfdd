#!/usr/bin/env node
// `npm run build`: compiles the server (entry points main and cli) into packages/server/dist/server
// (two levels below the package root, as src/<dir>/ is: files found from the package root, the
// migrations and the dashboard's pages, resolve alike),
// one ES module each with its workspace code (protocol, server) bundled in and every npm
// dependency left to node_modules. `npm start` then runs it with plain Node: no TypeScript
// loader, no esbuild helper process.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const server = JSON.parse(readFileSync(`${root}packages/server/package.json`, 'utf8'));
const dependencies = Object.keys(server.dependencies ?? {});
const outdir = `${root}packages/server/dist/server`;

rmSync(`${root}packages/server/dist`, { recursive: true, force: true });
const started = Date.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: { main: 'packages/server/src/main.ts', cli: 'packages/server/src/cli/main.ts' },
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
