#!/usr/bin/env node
// `npm start`: the compiled server (`npm run build`) when it is there and newer than every
// source file; the TypeScript sources through tsx otherwise, so a fresh clone starts with
// `npm install && npm start` and a stale build never runs by mistake.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const packages = join(here, '..', '..');
const compiled = join(here, '..', 'dist', 'server', 'main.js');

/** The newest modification time under `dir` (source files only). */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) latest = Math.max(latest, newest(path));
    else if (/\.(ts|sql)$/.test(entry.name)) latest = Math.max(latest, statSync(path).mtimeMs);
  }
  return latest;
}

const sources = ['server/src', 'server/migrations', 'protocol/src'].map((d) => join(packages, d)).filter(existsSync);
const fresh = existsSync(compiled) && statSync(compiled).mtimeMs >= Math.max(...sources.map(newest));
process.env.FIELDSYNC_RUNNING = fresh ? 'the compiled build' : 'the TypeScript sources';
if (fresh) {
  await import(compiled);
} else {
  if (existsSync(compiled)) process.stderr.write('The compiled server is older than the sources: running the sources (`npm run build` compiles them again).\n');
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
