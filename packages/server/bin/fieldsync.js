#!/usr/bin/env node
// `npx fieldsync ...`: the admin CLI. The source is TypeScript, run through tsx like the server.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
const code = await runCli(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`fieldsync: ${error?.stack ?? error}\n`);
  return 1;
});
// Database pools may keep timers alive; the command is done.
process.exit(code);
