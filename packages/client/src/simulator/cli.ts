import { parseArgs } from 'node:util';
import { formatReport } from './report.js';
import { runSimulation } from './simulator.js';

const USAGE = `Usage: npm run simulate -- [options]

Simulates a fleet of devices (the Fieldsync SDK) against a server, then syncs everyone and
checks that every copy equals the server's, no acknowledged change is lost, nothing is applied
twice and no delete is undone. Exits 1 on any violation.

  --devices N         devices (50)
  --seconds S         working period (60)
  --seed N            seed of every random choice (1)
  --agents N          agents the devices belong to (devices / 2)
  --url URL           a running server (needs --admin-key); default: start one
  --admin-key KEY     its admin API key
  --database-url URL  start the own server on PostgreSQL instead of the embedded database
  --chaos             kill and restart the own server now and then
  --drop-sockets      drop device sockets at random
  --loss-rate P       share of push answers lost after the server processed them (0.05)
  --ops-per-second N  writes per device per second (1)
  --offline-rate P    network losses per device per second (0.08)
  --restart-rate P    app restarts (from the device's store) per device per second (0.02)
  --store file|memory device stores (file: app restarts keep the outbox)
  --policy C=S        conflict strategy S for collection C (repeatable)
  --json              print the report as JSON
  --quiet             no progress lines`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      devices: { type: 'string' },
      seconds: { type: 'string' },
      seed: { type: 'string' },
      agents: { type: 'string' },
      url: { type: 'string' },
      'admin-key': { type: 'string' },
      'database-url': { type: 'string' },
      chaos: { type: 'boolean' },
      'drop-sockets': { type: 'boolean' },
      'loss-rate': { type: 'string' },
      'ops-per-second': { type: 'string' },
      'offline-rate': { type: 'string' },
      'restart-rate': { type: 'string' },
      store: { type: 'string' },
      policy: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const num = (name: string, value: string | undefined, min: number, max: number) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number from ${min} to ${max}`);
    return n;
  };
  const policies: Record<string, string> = {};
  for (const p of values.policy ?? []) {
    const [collection, strategy] = p.split('=');
    if (!collection || !strategy) throw new UsageError('--policy takes collection=strategy');
    policies[collection] = strategy;
  }
  if (values.store !== undefined && values.store !== 'file' && values.store !== 'memory') throw new UsageError('--store is file or memory');
  const log = values.quiet || values.json ? undefined : (line: string) => process.stderr.write(`[simulate] ${line}\n`);
  const report = await runSimulation({
    devices: num('devices', values.devices, 1, 10_000),
    seconds: num('seconds', values.seconds, 1, 86_400),
    seed: num('seed', values.seed, 0, 2 ** 31),
    agents: num('agents', values.agents, 1, 10_000),
    url: values.url,
    adminKey: values['admin-key'],
    databaseUrl: values['database-url'],
    chaos: values.chaos,
    dropSockets: values['drop-sockets'],
    lossRate: num('loss-rate', values['loss-rate'], 0, 1),
    opsPerSecond: num('ops-per-second', values['ops-per-second'], 0.01, 1000),
    offlineRate: num('offline-rate', values['offline-rate'], 0, 10),
    restartRate: num('restart-rate', values['restart-rate'], 0, 10),
    store: values.store as 'file' | 'memory' | undefined,
    policies,
    log,
  });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  return report.violations.length === 0 ? 0 : 1;
}

class UsageError extends Error {}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(error instanceof UsageError || error?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? `${error.message}\n\n${USAGE}\n` : `simulation failed: ${error?.stack ?? error}\n`);
    process.exit(2);
  },
);
