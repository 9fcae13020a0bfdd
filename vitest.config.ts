import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  // The workspace packages resolve to their sources, as tsconfig.json's `paths` make them for tsc and tsx.
  resolve: {
    alias: [
      { find: /^@fieldsync\/protocol\/(.*)$/, replacement: `${src('./packages/protocol/src/')}$1.ts` },
      { find: /^@fieldsync\/client$/, replacement: src('./packages/client/src/index.ts') },
      { find: /^@fieldsync\/client\/node$/, replacement: src('./packages/client/src/node.ts') },
    ],
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The suites wait on PostgreSQL, sockets and child processes far more than they compute:
    // three files at a time on 2 cores (Vitest's default there is one). VITEST_MAX_WORKERS overrides.
    maxWorkers: Number(process.env.VITEST_MAX_WORKERS) || 3,
    reporters: ['default'],
  },
});
