import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import compress from '@fastify/compress';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import type { Config } from './config/config.js';
import type { Db } from './db/db.js';
import { AppError } from './errors.js';
import { registerAuthHook } from './http/auth.hook.js';
import { registerErrorHandling } from './http/error-handler.js';
import { healthRoutes } from './http/health.routes.js';
import { registerJsonParser } from './http/json-parser.js';
import { validatorCompiler } from './http/validation.js';
import { agentsRoutes } from './modules/agents/agents.routes.js';
import { createAgentsService } from './modules/agents/agents.service.js';
import { authRoutes } from './modules/auth/auth.routes.js';
import { createAuthService } from './modules/auth/auth.service.js';
import { contactsCollection } from './modules/contacts/contacts.collection.js';
import { contactsRoutes } from './modules/contacts/contacts.routes.js';
import { createContactsService } from './modules/contacts/contacts.service.js';
import { devicesRoutes } from './modules/devices/devices.routes.js';
import { createDevicesService } from './modules/devices/devices.service.js';
import { syncRoutes } from './modules/sync/sync.routes.js';
import { tenantsRoutes } from './modules/tenants/tenants.routes.js';
import { createTenantsService } from './modules/tenants/tenants.service.js';
import { createGateway } from './realtime/gateway.js';
import { CollectionRegistry } from './sync/collections.js';
import { ChangeFeed } from './sync/feed.js';
import { createSyncService } from './sync/sync.service.js';

export const VERSION = '0.1.0';

export interface AppDeps {
  config: Config;
  db: Db;
  logger: Logger;
  /** The JWT signing secret (config or DATA_DIR). */
  jwtSecret: string;
}

/**
 * The composition root: builds every service from explicit dependencies, mounts the HTTP
 * routes and the Socket.IO gateway on one server. `close()` stops it gracefully.
 */
export async function buildApp(deps: AppDeps) {
  const { config, db, logger } = deps;

  const redis = config.redisUrl ? new Redis(config.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: false }) : undefined;
  redis?.on('error', (error) => logger.warn({ err: error }, 'redis error'));

  // Services.
  const feed = new ChangeFeed();
  const registry = new CollectionRegistry();
  registry.register(contactsCollection);
  const auth = createAuthService({ db, jwtSecret: deps.jwtSecret, cacheMs: config.authCacheMs });
  const devices = createDevicesService({
    db,
    flushMs: config.deviceFlushMs,
    onError: (error) => logger.error({ err: error }, 'device flush failed'),
  });
  const agents = createAgentsService({ db, onUserChanged: (userId) => auth.forgetUser(userId) });
  const tenants = createTenantsService({ db });
  const contacts = createContactsService({ db, feed, defaultRegion: config.defaultPhoneRegion });
  const sync = createSyncService({ db, registry, devices });

  // HTTP.
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
    },
    bodyLimit: 1024 * 1024,
    trustProxy: true,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 200 },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  registerJsonParser(app);
  registerErrorHandling(app);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // NUL bytes in URLs would reach SQL as text PostgreSQL refuses: a 400 here, before any work.
  app.addHook('onRequest', async (request) => {
    if (request.url.includes('%00') || request.url.includes('\u0000')) {
      throw new AppError('BAD_REQUEST', 'The URL must not contain NUL characters');
    }
  });

  await app.register(helmet, { contentSecurityPolicy: false, crossOriginResourcePolicy: { policy: 'same-site' } });
  if (config.corsOrigin) await app.register(cors, { origin: config.corsOrigin === '*' ? '*' : config.corsOrigin });
  await app.register(compress, { threshold: 2048 });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Fieldsync API', version: VERSION, description: 'Offline-first sync backend for mobile sales teams' },
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });

  registerAuthHook(app, auth);
  if (config.rateLimitPerMinute > 0) {
    await app.register(rateLimit, {
      global: true,
      hook: 'preHandler',
      max: config.rateLimitPerMinute,
      timeWindow: 60_000,
      redis,
      nameSpace: 'fieldsync-rl:',
      keyGenerator: (request) => {
        const p = request.principal;
        return p ? `${p.tenantId}:${p.keyId ?? p.userId}` : `ip:${request.ip}`;
      },
      errorResponseBuilder: (_request, context) =>
        new AppError('RATE_LIMITED', `Rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}`),
    });
  }

  let defaultTenantId: string | undefined;
  await app.register(healthRoutes({ db, version: VERSION, pingRedis: redis ? async () => void (await redis.ping()) : undefined }));
  await app.register(authRoutes({ auth }));
  await app.register(agentsRoutes({ agents }));
  await app.register(
    tenantsRoutes({
      tenants,
      defaultTenantId: async () => (defaultTenantId ??= (await tenants.findBySlug('default'))?.id),
    }),
  );
  await app.register(contactsRoutes({ contacts, importBodyLimit: 512 * 1024 * 1024 }));
  await app.register(devicesRoutes({ devices }));
  await app.register(syncRoutes({ sync }));

  // Real time, on the same HTTP server.
  const gateway = createGateway(app.server, { auth, sync, devices, feed, logger, corsOrigin: config.corsOrigin });
  let sub: Redis | undefined;
  if (redis) {
    sub = redis.duplicate();
    gateway.io.adapter(createAdapter(redis, sub, { key: 'fieldsync' }));
  }
  app.addHook('preClose', async () => {
    await gateway.shutdown();
  });
  await app.ready();
  await devices.run();

  const services = { auth, agents, tenants, contacts, devices, sync, feed, registry };
  return {
    app: app as unknown as FastifyInstance,
    gateway,
    services,
    /** Stops taking requests, lets in-flight ones finish, closes sockets, flushes, disconnects. */
    async close() {
      await app.close();
      gateway.io.close();
      await devices.stop();
      await Promise.all([redis?.quit().catch(() => {}), sub?.quit().catch(() => {})]);
    },
  };
}

export type BuiltApp = Awaited<ReturnType<typeof buildApp>>;
