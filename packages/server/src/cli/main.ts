import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { databaseProblem, describeUrl } from '../startup.js';
import { usersCollection } from '../modules/chat/chat.collection.js';
import { CollectionRegistry } from '../sync/collections.js';
import { ChangeFeed } from '../sync/feed.js';
import { createServerWrites } from '../sync/server-writes.js';
import { AgentCreate, Password, TenantCreate, type Role, type User } from '@fieldsync/protocol/auth';
import { ConfigError, loadConfig } from '../config/config.js';
import type { Db } from '../db/db.js';
import { migrate } from '../db/migrate.js';
import { openAnswering, openDb } from '../db/open.js';
import { embeddedDatabaseExists } from '../db/pglite.js';
import { AppError } from '../errors.js';
import { compileBodyValidator } from '../lib/validation.js';
import { createAgentsService, type AgentsService } from '../modules/agents/agents.service.js';
import { createTenantsService, type TenantsService } from '../modules/tenants/tenants.service.js';

/** Where the CLI reads its configuration and writes its output; the process's by default. */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  out(line: string): void;
  err(line: string): void;
  /** Everything on standard input (a secret typed at a terminal is not echoed); none when absent. */
  readStdin?(): Promise<string>;
}

/** Exit codes: 0 done, 1 the command failed, 2 bad usage, 78 bad configuration (EX_CONFIG). */
export const ExitCode = { ok: 0, failed: 1, usage: 2, config: 78 } as const;

class UsageError extends Error {}

type Values = Record<string, string | boolean | undefined>;
type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

interface Context {
  /** The migrations this run applied. */
  applied: string[];
  agents: AgentsService;
  tenants: TenantsService;
  /** The id of the tenant named by `--tenant` (default `default`). */
  tenantId(slug: string | undefined): Promise<string>;
  readStdin(): Promise<string>;
}

/** What a command produced: lines for people, and the same facts for `--json`. */
interface Result {
  text: string[];
  json: unknown;
}

interface Command {
  usage: string;
  summary: string;
  options: OptionSpec;
  required: string[];
  /** Checks the values before any database is opened; its result is `run`'s `input`. */
  check?(values: Values): unknown;
  run(ctx: Context, values: Values, input: unknown): Promise<Result>;
}

const tenantOption = { tenant: { type: 'string' } } as const;
const str = (values: Values, name: string) => values[name] as string | undefined;
const flagOf: Record<string, string> = { agentCode: '--code', name: '--name', email: '--email', password: '--password', role: '--role', slug: '--slug' };

/** Validates CLI input with the HTTP API's own schema, so both refuse the same things. */
function validated<T>(validator: ReturnType<typeof compileBodyValidator<T>>, input: Record<string, unknown>): T {
  const body = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const result = validator(body);
  if (result.ok) return result.value;
  throw new UsageError(result.errors.map((e) => `${flagOf[e.field] ?? e.field} ${e.message}`).join('; '));
}
const validAgent = compileBodyValidator<AgentCreate>(AgentCreate);
const validTenant = compileBodyValidator<TenantCreate>(TenantCreate);
const validPassword = compileBodyValidator<string>(Password);

/** The password piped or typed on stdin: one line (its line break dropped), checked like the API's. */
function passwordOf(input: string): string {
  const password = input.replace(/\r?\n$/, '');
  if (/[\r\n]/.test(password)) throw new UsageError('the password on stdin must be one line');
  const result = validPassword(password);
  if (!result.ok) throw new UsageError(`the password on stdin ${result.errors.map((e) => e.message).join('; ')}`);
  return password;
}

const agentLine = (a: User) =>
  `${a.agentCode.padEnd(16)} ${a.role.padEnd(8)} ${(a.isActive ? 'active' : 'inactive').padEnd(9)} ${a.name}${a.email ? ` <${a.email}>` : ''}`;

const commands: Record<string, Command> = {
  'agents create': {
    usage: 'agents create --code CODE --name NAME [--email EMAIL] [--password PASSWORD] [--role agent|manager|admin] [--tenant SLUG]',
    summary: 'create an agent and print its first API key',
    options: { code: { type: 'string' }, name: { type: 'string' }, email: { type: 'string' }, password: { type: 'string' }, role: { type: 'string' }, ...tenantOption },
    required: ['code', 'name'],
    check: (v) =>
      validated(validAgent, {
        agentCode: str(v, 'code'),
        name: str(v, 'name'),
        email: str(v, 'email'),
        password: str(v, 'password'),
        role: str(v, 'role') as Role | undefined,
      }),
    async run(ctx, v, input) {
      const slug = str(v, 'tenant') ?? 'default';
      const { agent, apiKey, keyId } = await ctx.agents.create(await ctx.tenantId(slug), input as AgentCreate);
      return {
        text: [
          `Created ${agent.role} ${agent.agentCode} (${agent.name}) in tenant "${slug}", id ${agent.id}.`,
          `API key ${keyId} (shown once, keep it safe):`,
          apiKey,
        ],
        json: { agent, apiKey, keyId },
      };
    },
  },
  'agents list': {
    usage: 'agents list [--tenant SLUG]',
    summary: "list a tenant's agents",
    options: { ...tenantOption },
    required: [],
    async run(ctx, v) {
      const agents = await ctx.agents.list(await ctx.tenantId(str(v, 'tenant')));
      return { text: agents.length ? agents.map(agentLine) : ['No agents.'], json: agents };
    },
  },
  'agents set-password': {
    usage: 'agents set-password --code CODE [--tenant SLUG]   (the password is read from stdin)',
    summary: "set or reset an agent's password, read from stdin; their refresh tokens are revoked",
    options: { code: { type: 'string' }, ...tenantOption },
    required: ['code'],
    async run(ctx, v) {
      const code = str(v, 'code') as string;
      const password = passwordOf(await ctx.readStdin());
      const agent = await ctx.agents.update(await ctx.tenantId(str(v, 'tenant')), code, { password });
      return { text: [`Set the password of ${agent.agentCode}; their sessions were signed out.`], json: { agentCode: agent.agentCode, passwordSet: true } };
    },
  },
  'agents deactivate': activation(false),
  'agents activate': activation(true),
  'keys create': {
    usage: 'keys create --agent CODE [--tenant SLUG]',
    summary: 'issue another API key for an agent (its other keys keep working)',
    options: { agent: { type: 'string' }, ...tenantOption },
    required: ['agent'],
    async run(ctx, v) {
      const code = str(v, 'agent') as string;
      const { apiKey, key } = await ctx.agents.createKey(await ctx.tenantId(str(v, 'tenant')), code);
      return { text: [`New API key ${key.id} for ${code} (shown once, keep it safe):`, apiKey], json: { key, apiKey } };
    },
  },
  'keys list': {
    usage: 'keys list --agent CODE [--tenant SLUG]',
    summary: "list an agent's API keys (ids and prefixes, never the keys)",
    options: { agent: { type: 'string' }, ...tenantOption },
    required: ['agent'],
    async run(ctx, v) {
      const keys = await ctx.agents.listKeys(await ctx.tenantId(str(v, 'tenant')), str(v, 'agent') as string);
      const text = keys.map((k) => `${k.id}  ${k.prefix}...  created ${k.createdAt}${k.revokedAt ? `  revoked ${k.revokedAt}` : ''}`);
      return { text: text.length ? text : ['No keys.'], json: keys };
    },
  },
  'keys revoke': {
    usage: 'keys revoke --agent CODE --key KEYID [--tenant SLUG]',
    summary: 'revoke one API key of an agent',
    options: { agent: { type: 'string' }, key: { type: 'string' }, ...tenantOption },
    required: ['agent', 'key'],
    async run(ctx, v) {
      const [code, keyId] = [str(v, 'agent') as string, str(v, 'key') as string];
      await ctx.agents.revokeKey(await ctx.tenantId(str(v, 'tenant')), code, keyId);
      return { text: [`Revoked API key ${keyId} of ${code}.`], json: { revoked: keyId, agentCode: code } };
    },
  },
  'tenants create': {
    usage: 'tenants create --name NAME --slug SLUG',
    summary: 'create a tenant with its own admin and print the admin API key',
    options: { name: { type: 'string' }, slug: { type: 'string' } },
    required: ['name', 'slug'],
    check: (v) => validated(validTenant, { name: str(v, 'name'), slug: str(v, 'slug') }),
    async run(ctx, _v, input) {
      const { tenant, admin, apiKey } = await ctx.tenants.create(input as TenantCreate);
      return {
        text: [`Created tenant "${tenant.slug}" (${tenant.name}), id ${tenant.id}.`, `API key of its admin "${admin.agentCode}" (shown once, keep it safe):`, apiKey],
        json: { tenant, admin, apiKey },
      };
    },
  },
  migrate: {
    usage: 'migrate',
    summary: 'apply pending migrations (and bootstrap an empty database)',
    options: {},
    required: [],
    // Every command migrates first; this one only says so.
    run: async (ctx) => ({ text: [], json: { applied: ctx.applied } }),
  },
};

function activation(isActive: boolean): Command {
  const verb = isActive ? 'activate' : 'deactivate';
  return {
    usage: `agents ${verb} --code CODE [--tenant SLUG]`,
    summary: isActive ? 'let an agent sign in again' : 'stop an agent from signing in or syncing (403)',
    options: { code: { type: 'string' }, ...tenantOption },
    required: ['code'],
    async run(ctx, v) {
      const agent = await ctx.agents.update(await ctx.tenantId(str(v, 'tenant')), str(v, 'code') as string, { isActive });
      return { text: [`Agent ${agent.agentCode} is now ${isActive ? 'active' : 'inactive'}.`], json: agent };
    },
  };
}

function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  return [
    'Usage: fieldsync <command> [options]',
    '',
    'Admin chores on the database the server uses (DATABASE_URL, or PGlite under DATA_DIR).',
    'It says which database it opened. A new one is created (migrated and bootstrapped: tenant',
    '"default", admin "admin") only with --init.',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    `  ${'help'.padEnd(width)}  show this help`,
    '',
    'Usage of each command:',
    ...Object.values(commands)
      .filter((c) => Object.keys(c.options).length > 0)
      .map((c) => `  fieldsync ${c.usage}`),
    '',
    'Options:',
    '  --tenant SLUG  the tenant to act in (default: "default")',
    '  --json         print the result as JSON',
    '  --init         create the database when there is none (never by accident)',
    '  --help, -h     show the usage of a command',
    '',
    'PGlite allows one process per data directory: stop the server first, or use the admin API.',
  ].join('\n');
}

/** Splits `argv` into a known command and its options, or throws a UsageError. */
function parse(argv: string[]): { name: string; command: Command; values: Values; json: boolean; init: boolean; input?: unknown } {
  // The command is the leading words (`agents create`); options follow.
  const words: string[] = [];
  for (const arg of argv) {
    if (arg.startsWith('-') || words.length === 2) break;
    words.push(arg);
  }
  const name = commands[words[0]] ? words[0] : words.join(' ');
  const command = commands[name];
  if (!command) {
    const known = Object.keys(commands).filter((k) => k.startsWith(`${words[0]} `));
    throw new UsageError(
      known.length > 0
        ? `Unknown command "${name}". "${words[0]}" takes: ${known.map((k) => k.split(' ')[1]).join(', ')}.`
        : `Unknown command "${argv.join(' ')}". Run "fieldsync help" for the list of commands.`,
    );
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...command.options, json: { type: 'boolean' }, init: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\nUsage: fieldsync ${command.usage}`);
  }
  if (parsed.positionals.length > name.split(' ').length) {
    throw new UsageError(`Unexpected argument "${parsed.positionals.at(-1)}".\nUsage: fieldsync ${command.usage}`);
  }
  const values = parsed.values as Values;
  if (values.help) return { name, command, values, json: false, init: false };
  const missing = command.required.filter((flag) => typeof values[flag] !== 'string' || values[flag] === '');
  if (missing.length > 0) {
    throw new UsageError(`Missing ${missing.map((f) => `--${f}`).join(', ')}.\nUsage: fieldsync ${command.usage}`);
  }
  return { name, command, values, json: values.json === true, init: values.init === true, input: command.check?.(values) };
}

/** Standard input to its end; at a terminal, one line typed without echo. */
async function readProcessStdin(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let text = '';
    stdin.setEncoding('utf8');
    for await (const chunk of stdin) text += chunk;
    return text;
  }
  process.stderr.write('Password (not shown): ');
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let line = '';
      const onData = (chunk: string) => {
        for (const char of chunk) {
          if (char === '\r' || char === '\n' || char === '\u0004') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            return resolve(line);
          }
          if (char === '\u0003') {
            stdin.off('data', onData);
            return reject(new UsageError('cancelled'));
          }
          line = char === '\u007f' ? line.slice(0, -1) : line + char;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}

const processIo: CliIo = {
  env: process.env,
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
  readStdin: readProcessStdin,
};

/**
 * Runs one CLI command and resolves to its exit code. It uses the server's configuration and
 * services, so it does exactly what the admin API does.
 */
export async function runCli(argv: string[], io: CliIo = processIo): Promise<number> {
  if (argv.length === 0) {
    io.err(helpText());
    return ExitCode.usage;
  }
  if (['help', '--help', '-h'].includes(argv[0])) {
    io.out(helpText());
    return ExitCode.ok;
  }
  let parsed: ReturnType<typeof parse>;
  let config: ReturnType<typeof loadConfig>;
  try {
    parsed = parse(argv);
    if (parsed.values.help) {
      io.out(`Usage: fieldsync ${parsed.command.usage}`);
      return ExitCode.ok;
    }
    config = loadConfig(io.env);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`fieldsync: ${error.message}`);
      return ExitCode.usage;
    }
    if (error instanceof ConfigError) {
      io.err(`fieldsync: ${error.message}`);
      return ExitCode.config;
    }
    throw error;
  }

  let db: Db | undefined;
  try {
    // Never a new database by accident (a typo in DATA_DIR, the wrong DATABASE_URL): --init says so.
    const where = config.databaseUrl ? `PostgreSQL at ${describeUrl(config.databaseUrl)}` : `the embedded database in ${resolve(config.dataDir)}`;
    if (!config.databaseUrl && !embeddedDatabaseExists(config.dataDir) && !parsed.init) {
      io.err(`fieldsync: there is no Fieldsync database in ${resolve(config.dataDir)}: set DATA_DIR (or DATABASE_URL) to the server's, or pass --init to create one there.`);
      return ExitCode.config;
    }
    try {
      db = await openAnswering(() => openDb(config));
    } catch (error) {
      const problem = databaseProblem(error, config.databaseUrl, config.dataDir);
      io.err(`fieldsync: ${problem.message}`);
      return problem.exitCode;
    }
    if (config.databaseUrl && !parsed.init) {
      const { rows } = await db.query<{ found: string | null }>("SELECT to_regclass('schema_migrations')::text AS found");
      if (rows[0].found === null) {
        io.err(`fieldsync: ${where} holds no Fieldsync database: fix DATABASE_URL, or pass --init to create one there.`);
        return ExitCode.config;
      }
    }
    (parsed.json ? io.err : io.out)(`Database: ${where}.`);
    const applied = await migrate(db);
    const tenants = createTenantsService({ db });
    const boot = await tenants.bootstrap(config.bootstrapAdminKey, { adminPassword: config.bootstrapAdminPassword });
    // Notices go to stderr under --json, so stdout stays one JSON document.
    const notice = parsed.json ? io.err : io.out;
    if (applied.length > 0) notice(`Applied migrations: ${applied.join(', ')}.`);
    if (boot?.generated) {
      notice(`Bootstrapped tenant "default" with admin "admin". Admin API key (shown once, keep it safe): ${boot.apiKey}`);
    } else if (boot) {
      notice('Bootstrapped tenant "default" with admin "admin" and the key of FIELDSYNC_BOOTSTRAP_ADMIN_KEY.');
    }
    if (parsed.name === 'migrate' && applied.length === 0) notice('The database is up to date.');

    // A running server forgets cached credentials within AUTH_CACHE_MS; this process has none.
    // Its directory changes reach devices by the pull (no sockets here to tell).
    const registry = new CollectionRegistry();
    registry.register(usersCollection);
    const writes = createServerWrites({ db, registry, feed: new ChangeFeed() });
    const agents = createAgentsService({ db, writes, onUserChanged: () => {} });
    const ctx: Context = {
      applied,
      agents,
      tenants,
      async tenantId(slug = 'default') {
        const tenant = await tenants.findBySlug(slug);
        if (!tenant) throw new AppError('NOT_FOUND', `Tenant "${slug}" not found`);
        return tenant.id;
      },
      readStdin: async () => (io.readStdin ? io.readStdin() : ''),
    };
    const result = await parsed.command.run(ctx, parsed.values, parsed.input);
    if (parsed.json) io.out(JSON.stringify(result.json, null, 2));
    else for (const line of result.text) io.out(line);
    return ExitCode.ok;
  } catch (error) {
    io.err(`fieldsync: ${error instanceof Error ? error.message : String(error)}`);
    return error instanceof UsageError ? ExitCode.usage : ExitCode.failed;
  } finally {
    await db?.close().catch(() => {});
  }
}
