// Builds the publishable packages (@fieldsync/protocol, then @fieldsync/client) with tsc: ESM
// JavaScript and .d.ts, one file per source, into each package's dist/ (or, with `stage`, into
// a copy of each package under that folder, ready for `npm pack`: what the package tests use,
// so they never race a build of the repository's own dist/).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

/** The folder of package `name` as Node would find it from `from` (its package.json may not be exported). */
export function installedPackage(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`${name} is not installed (npm install)`);
  }
}

/** The packages in build order (the client's .d.ts import the protocol's). */
export const PACKAGES = ['protocol', 'client'];

/**
 * Builds every package; answers each one's folder (the package itself, or its staged copy).
 * @param {{ stage?: string }} [opts]
 */
export function buildPackages(opts = {}) {
  const dirs = {};
  const scratch = mkdtempSync(join(tmpdir(), 'fieldsync-tsc-'));
  try {
    for (const name of PACKAGES) {
      const source = join(root, 'packages', name);
      const dir = opts.stage ? join(opts.stage, name) : source;
      if (opts.stage) {
        mkdirSync(dir, { recursive: true });
        for (const file of ['package.json', 'README.md']) copyFileSync(join(source, file), join(dir, file));
        copyFileSync(join(root, 'LICENSE'), join(dir, 'LICENSE'));
        // The staged package's dependencies, where its built files look for them (its .d.ts import typebox).
        const modules = join(opts.stage, 'node_modules');
        mkdirSync(modules, { recursive: true });
        for (const dep of Object.keys(JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')).dependencies ?? {})) {
          if (dep.startsWith('@fieldsync/') || existsSync(join(modules, dep))) continue;
          mkdirSync(dirname(join(modules, dep)), { recursive: true });
          symlinkSync(installedPackage(dep, source), join(modules, dep), 'dir');
        }
      }
      rmSync(join(dir, 'dist'), { recursive: true, force: true });
      // The package's own build settings, with the output where asked and the protocol's types
      // from its fresh build (wherever that went), never from its sources.
      const config = join(scratch, `${name}.tsconfig.json`);
      writeFileSync(
        config,
        JSON.stringify({
          extends: join(source, 'tsconfig.build.json'),
          compilerOptions: {
            rootDir: join(source, 'src'),
            outDir: join(dir, 'dist'),
            typeRoots: [join(root, 'node_modules', '@types')],
            paths: name === 'protocol' ? {} : { '@fieldsync/protocol/*': [join(dirs.protocol, 'dist', '*.d.ts')] },
          },
          include: [join(source, 'src', '**', '*.ts')],
          exclude: [join(source, 'src', '**', '*.test.ts'), join(source, 'src', 'simulator', '**')],
        }),
      );
      execFileSync(process.execPath, [tsc, '-p', config], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
      dirs[name] = dir;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return dirs;
}
