import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config/config.js';
import { openDb } from './db/open.js';
import { migrate } from './db/migrate.js';
import { createLogs } from './logging/logger.js';
import { createTenantsService } from './modules/tenants/tenants.service.js';

/** The JWT secret: JWT_SECRET, or one generated once and kept in DATA_DIR. */
function jwtSecretFor(config: Config): string {
  if (config.jwtSecret) return config.jwtSecret;
  mkdirSync(config.dataDir, { recursive: true });
  const path = join(config.dataDir, 'jwt-secret');
  if (!existsSync(path)) {
    writeFileSync(path, randomBytes(48).toString('base64url'), { mode: 0o600 });
    chmodSync(path, 0o600);
  }
  return readFileSync(path, 'utf8').trim();
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  const logs = createLogs({ level: config.logLevel, logDir: config.logDir });
  const { logger } = logs;
  const db = await openDb(config);
  logger.info({ database: db.kind }, 'database opened');
  const applied = await migrate(db);
  if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');

  const boot = await createTenantsService({ db }).bootstrap(config.bootstrapAdminKey, { adminPassword: config.bootstrapAdminPassword });
  if (boot && config.bootstrapAdminPassword) logger.info('the bootstrap admin "admin" signs in with the password of FIELDSYNC_BOOTSTRAP_ADMIN_PASSWORD');
  if (boot?.generated) {
    // Printed once, on stdout only, never through the logger.
    process.stdout.write(
      `\n  Fieldsync bootstrapped tenant "default" with admin "admin".\n  Admin API key (shown once, keep it safe): ${boot.apiKey}\n\n`,
    );
  } else if (boot) {
    logger.info('bootstrapped tenant "default" with the admin key from FIELDSYNC_BOOTSTRAP_ADMIN_KEY');
  }

  const built = await buildApp({ config, db, logger, jwtSecret: jwtSecretFor(config) });
  await built.app.listen({ port: config.port, host: config.host });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // The log files are written asynchronously: finish them, or the last lines are lost.
    // The first exit wins: a close finishing after the forced exit began must not turn it into 0.
    let exiting = false;
    const exit = (code: number) => {
      if (exiting) return;
      exiting = true;
      void logs.close().finally(() => process.exit(code));
    };
    const force = setTimeout(() => {
      logger.error('graceful shutdown timed out; exiting');
      exit(1);
    }, config.shutdownGraceMs);
    force.unref();
    // server.close() reaps only the connections idle at that moment; a keep-alive connection
    // whose request finishes later would hold the stop for Fastify's 72 s keep-alive timeout.
    const reaper = setInterval(() => built.app.server.closeIdleConnections(), 100);
    reaper.unref();
    try {
      await built.close();
      await db.close();
      logger.info('stopped');
      exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((error) => {
  process.stderr.write(`Fieldsync failed to start: ${(error as Error).stack ?? error}\n`);
  process.exit(1);
});
