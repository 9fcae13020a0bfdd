import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import compress from '@fastify/compress';
import rateLimit from '@fastify/rate-limit';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import type { Config, TrustProxy } from './config/config.js';
import type { Db } from './db/db.js';
import { AppError } from './errors.js';
import { registerAuthHook } from './http/auth.hook.js';
import { clientErrorHandler, frameworkErrors, registerErrorHandling } from './http/error-handler.js';
import { healthRoutes } from './http/health.routes.js';
import { registerJsonParser } from './http/json-parser.js';
import { registerOpenApi } from './http/openapi.js';
import { validatorCompiler } from './lib/validation.js';
import { agentsRoutes } from './modules/agents/agents.routes.js';
import { createAgentsService } from './modules/agents/agents.service.js';
import { authRoutes } from './modules/auth/auth.routes.js';
import { createAuthService } from './modules/auth/auth.service.js';
import { createLoginThrottle, loginPolicy } from './modules/auth/login-throttle.js';
import { contactsCollection } from './modules/contacts/contacts.collection.js';
import { contactsRoutes } from './modules/contacts/contacts.routes.js';
import { createContactsService } from './modules/contacts/contacts.service.js';
import { devicesRoutes } from './modules/devices/devices.routes.js';
import { createDevicesService } from './modules/devices/devices.service.js';
import { syncRoutes } from './modules/sync/sync.routes.js';
import { tenantsRoutes } from './modules/tenants/tenants.routes.js';
import { createTenantsService } from './modules/tenants/tenants.service.js';
import { CLUSTER_ANSWER_MS, createGateway, type Gateway } from './realtime/gateway.js';
import { sha256 } from './modules/auth/credentials.js';
import { createMaintenanceJob } from './jobs/maintenance.job.js';
import { CollectionRegistry } from './sync/collections.js';
import { ChangeFeed } from './sync/feed.js';
import { createSyncService } from './sync/sync.service.js';
import { PageCache } from './sync/page-cache.js';
import { createPolicyStore } from './sync/policies.js';
import { createPushEngine } from './sync/push.js';
import { RateBudget } from './lib/rate-budget.js';
import { audiencesOf } from './sync/scopes.js';
import { categoriesCollection, itemsCollection, spacesCollection } from './modules/lists/lists.collection.js';
import { createListsService } from './modules/lists/lists.service.js';
import { listsRoutes } from './modules/lists/lists.routes.js';
import { createConflictsService } from './modules/conflicts/conflicts.service.js';
import { conflictsRoutes } from './modules/conflicts/conflicts.routes.js';
import { pushRoutes } from './modules/sync/push.routes.js';
import { registerIdempotency } from './http/idempotency.js';
import { createFileStorage } from './modules/files/files.storage.js';
import { createFilesService } from './modules/files/files.service.js';
import { filesRoutes } from './modules/files/files.routes.js';
import { createTusStore, tusRoutes } from './modules/files/files.tus.js';
import { createUploadsExpiryJob } from './jobs/uploads-expiry.job.js';
import { conversationsCollection, messagesCollection, usersCollection } from './modules/chat/chat.collection.js';
import { createPresence } from './modules/chat/chat.presence.js';
import { createChatService } from './modules/chat/chat.service.js';
import { chatRoutes } from './modules/chat/chat.routes.js';
import { mountChatSocket } from './modules/chat/chat.socket.js';
import { createServerWrites } from './sync/server-writes.js';
import { createHubspotExportJob } from './jobs/hubspot-export.job.js';
import {
  callSessionsCollection,
  exportedAs,
  projectContactsCollection,
  projectsCollection,
  terminalSessionsCollection,
} from './modules/outreach/outreach.collection.js';
import { createOutreachService } from './modules/outreach/outreach.service.js';
import { outreachRoutes } from './modules/outreach/outreach.routes.js';
import { createHubspotExporter } from './modules/outreach/hubspot/hubspot.export.js';
import { createHubspotService } from './modules/outreach/hubspot/hubspot.service.js';
import { tokenKey } from './modules/outreach/hubspot/hubspot.token.js';
import { createMetrics } from './modules/metrics/metrics.js';
import { metricsRoutes } from './modules/metrics/metrics.routes.js';
import { createAnalyticsService } from './modules/analytics/analytics.service.js';
import { analyticsRoutes } from './modules/analytics/analytics.routes.js';
import { instrumentSync } from './modules/analytics/sync.instrument.js';
import { createAlertsService } from './modules/alerts/alerts.service.js';
import { alertsRoutes } from './modules/alerts/alerts.routes.js';
import { createFleetNotifier, fleetRoom } from './modules/fleet/fleet.notifier.js';
import { mountFleetSocket } from './modules/fleet/fleet.socket.js';
import { dashboardRoutes } from './dashboard/dashboard.routes.js';
import { fieldAppRoutes } from './field-app/field-app.routes.js';
import { claimRound, createPeriodicJob } from './jobs/periodic.js';
import type { PushEngine } from './sync/push.js';

export const VERSION = '0.1.0';

export interface AppDeps {
  config: Config;
  db: Db;
  logger: Logger;
  /** The JWT signing secret (config, the database, or DATA_DIR). */
  jwtSecret: string;
  /** The read replica (DATABASE_READ_URL) that serves delta pulls, when there is one. */
  readDb?: Db;
}

/**
 * The composition root: builds every service from explicit dependencies, mounts the HTTP
 * routes and the Socket.IO gateway on one server. `close()` stops it gracefully.
 */
export async function buildApp(deps: AppDeps) {
  const { config, db, logger } = deps;

  // Requests never wait on Redis: while it is down its commands fail at once (health says so,
  // the rate limit fails open) instead of queueing behind reconnection attempts.
  const redis = config.redisUrl ? new Redis(config.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false }) : undefined;
  // The Socket.IO adapter's subscriptions wait for Redis instead: a failed one is never retried.
  const sub = redis?.duplicate({ maxRetriesPerRequest: null, enableOfflineQueue: true });
  for (const client of [redis, sub]) if (client) guardRedis(client, logger);
  // Start connected when Redis answers; one that refuses, or stays silent 3 s, does not hold the start.
  await Promise.all([redis, sub].map((client) => client && firstContact(client, 3000)));

  // Services.
  const fileStorage = await createFileStorage(config.uploadDir);
  const tusStore = createTusStore(fileStorage.tusDir, config.uploadTtlSeconds * 1000);
  const files = createFilesService({
    db,
    storage: fileStorage,
    removeTusUpload: (id) => tusStore.remove(id),
    limits: {
      maxBytes: config.uploadMaxBytes,
      allowedTypes: config.uploadAllowedTypes,
      quotaBytes: config.storageQuotaBytes,
      ttlMs: config.uploadTtlSeconds * 1000,
    },
  });
  let gateway: Gateway | undefined;
  // Fleet operations (SPEC §11): metrics, analytics, alerts, live fleet events for the dashboard.
  const metrics = createMetrics({ poolStats: () => db.poolStats(), socketConnections: () => gateway?.connectedSockets() ?? 0 });
  const analytics = createAnalyticsService({ db, retentionDays: config.analyticsRetentionDays });
  const fleet = createFleetNotifier({
    emit: (tenantId, name, payload) => {
      // The fleet room on every instance (the adapter carries room broadcasts).
      const room = gateway?.io.to(fleetRoom(tenantId)) as { emit(name: string, payload: unknown): boolean } | undefined;
      room?.emit(name, payload);
    },
  });
  const alerts = createAlertsService({
    db,
    analytics,
    logger,
    onAlert: (tenantId, alert, change) => fleet.alert(tenantId, { change, alert }),
  });
  const feed = new ChangeFeed();
  // Fan-out latency: the time one commit takes to reach this instance's sockets (delivery is synchronous).
  const publish = feed.publish.bind(feed);
  feed.publish = (event) => {
    const started = performance.now();
    publish(event);
    metrics.fanout.observe((performance.now() - started) / 1000);
  };
  const registry = new CollectionRegistry();
  // Outreach exports contacts, projects, links, calls and terminal states to HubSpot (SPEC §9);
  // a commit that queued exports wakes this instance's export job.
  const exportQueued = new Set<string>();
  let wakeExport = () => {};
  const outreachOpts = { exportAll: config.hubspot.accessToken !== undefined, onQueued: (tenantId: string) => void exportQueued.add(tenantId) };
  feed.subscribe((commit) => {
    if (exportQueued.delete(commit.tenantId)) wakeExport();
  });
  registry.register(
    exportedAs(
      contactsCollection({
        defaultRegion: config.defaultPhoneRegion,
        existingFiles: (tx, tenantId, ids) => files.readyIds(tx, tenantId, ids),
      }),
      'contact',
      outreachOpts,
    ),
  );
  registry.register(spacesCollection);
  registry.register(categoriesCollection);
  registry.register(itemsCollection);
  registry.register(usersCollection);
  registry.register(conversationsCollection);
  registry.register(messagesCollection);
  const writes = createServerWrites({ db, registry, feed });
  // Parents first: the push engine writes collections in this order.
  registry.register(projectsCollection(outreachOpts));
  registry.register(projectContactsCollection(outreachOpts));
  registry.register(callSessionsCollection(outreachOpts));
  registry.register(terminalSessionsCollection(outreachOpts));
  const throttle = createLoginThrottle({
    policy: loginPolicy(config.loginMaxFailures),
    redis,
    onStoreError: (error) => logger.warn({ err: error }, 'login throttle: Redis failed; counting in this process'),
  });
  const auth = createAuthService({
    db,
    jwtSecret: deps.jwtSecret,
    cacheMs: config.authCacheMs,
    accessTokenTtlSeconds: config.accessTokenTtlSeconds,
    throttle,
  });
  const devices = createDevicesService({
    db,
    flushMs: config.deviceFlushMs,
    onError: (error) => logger.error({ err: error }, 'device flush failed'),
    onChange: (tenantId, deviceIds) => fleet.devicesChanged(tenantId, deviceIds),
  });
  const agents = createAgentsService({
    db,
    writes,
    onUserChanged: (tenantId, userId, revoked) => {
      auth.forgetUser(userId);
      // Live sockets of a deactivated agent or a revoked key go; valid ones reconnect.
      if (revoked) gateway?.revokeUser(tenantId, userId);
    },
    // A password an admin just set may be tried at once, even by an account locked by failures.
    onPasswordSet: (_tenantId, userId) => throttle.clear([`u:${userId}`]),
  });
  const tenants = createTenantsService({ db });
  const policies = createPolicyStore();
  const engine = createPushEngine({ db, registry, feed, policies });
  // Every write path goes through the engine: its results feed the write and conflict counters.
  const collectionOf = (name: string) => registry.resolve(name)?.name ?? 'unknown';
  const push: PushEngine = {
    ...engine,
    async apply(caller, raw, opts) {
      const outcome = await engine.apply(caller, raw, opts);
      metrics.recordWrites(outcome.results, collectionOf);
      return outcome;
    },
  };
  const contacts = createContactsService({ db, push, defaultRegion: config.defaultPhoneRegion });
  const sync = instrumentSync(
    createSyncService({ db, readDb: deps.readDb, registry, devices, push, pageCache: config.pullCacheMb > 0 ? new PageCache(config.pullCacheMb * 2 ** 20) : undefined }),
    { metrics, analytics, devices },
  );
  const lists = createListsService({ db, registry, push });
  const conflicts = createConflictsService({ db, registry, policies, push });
  const presence = createPresence({
    redis,
    logger,
    onChange: (change) => {
      // To the tenant's other users: a user's own devices know they are online.
      gateway?.relay({
        tenantId: change.tenantId,
        name: 'presence',
        payload: { userId: change.userId, status: change.status, lastSeen: change.lastSeen },
        exceptUserId: change.userId,
      });
      db.query('UPDATE users SET last_seen_at = now() WHERE tenant_id = $1 AND id = $2', [change.tenantId, change.userId]).catch((error: unknown) =>
        logger.warn({ err: error }, 'last seen not recorded'),
      );
    },
  });
  const chat = createChatService({ db, push, writes, presence, logger });
  files.addAttachmentGuard((tenantId, userId, fileId) => chat.attachmentVisible(tenantId, userId, fileId));
  const outreach = createOutreachService({ db, push, contacts, defaultRegion: config.defaultPhoneRegion });
  const hubspotKey = tokenKey(deps.jwtSecret);
  const hubspot = createHubspotService({ db, tokenKey: hubspotKey, serverToken: config.hubspot.accessToken !== undefined, onQueued: () => wakeExport() });
  const hubspotExporter = createHubspotExporter({ db, config: config.hubspot, tokenKey: hubspotKey, logger });

  // HTTP.
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
    },
    bodyLimit: 1024 * 1024,
    trustProxy: trustProxyOf(config.trustProxy),
    // Our own hook answers 503 while closing, in the envelope and with Retry-After.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 200 },
    frameworkErrors,
    clientErrorHandler,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  registerJsonParser(app);
  registerErrorHandling(app);
  metrics.register(app as unknown as FastifyInstance);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  let closing = false;
  app.addHook('onRequest', async () => {
    if (closing) throw new AppError('UNAVAILABLE', 'The server is shutting down; retry on another instance or shortly', undefined, { 'retry-after': '1' });
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
  await registerOpenApi(app as unknown as FastifyInstance, { version: VERSION });

  // One budget per credential for requests and socket events alike (Redis when configured).
  const budget = config.rateLimitPerMinute > 0 ? new RateBudget({ windowMs: 60_000, redis }) : undefined;
  if (budget) {
    await app.register(rateLimit, {
      // Not the plugin's per-route hooks: a route's hooks run after the app's, so requests the
      // auth hook refuses (a guessed key's 401, a role's 403) would never count. The hook below,
      // added before the auth hook, limits every request first.
      global: false,
      hook: 'onRequest',
      max: config.rateLimitPerMinute,
      timeWindow: 60_000,
      store: function sharedBudget() {
        return budget;
      } as unknown as NonNullable<Parameters<typeof rateLimit>[1]>['store'],
      skipOnError: true, // Redis down: serve rather than fail every request
      // The dashboard's static files (a page load is eight of them) cost no budget; its API calls do.
      allowList: (request) => request.routeOptions.url?.startsWith('/dashboard') === true || request.routeOptions.url?.startsWith('/app') === true,
      keyGenerator: budgetKeyOf,
      errorResponseBuilder: (_request, context) =>
        new AppError('RATE_LIMITED', `Rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}`),
    });
    // Keyed by the credential sent (hashed; one budget per API key or token), else by IP:
    // wrong keys and refused roles are limited like everything else.
    const limit = (app as unknown as { rateLimit(): (request: FastifyRequest, reply: FastifyReply) => Promise<void> }).rateLimit();
    app.addHook('onRequest', async (request, reply) => {
      if (request.routeOptions.config?.rateLimit === false) return;
      await limit(request, reply);
    });
  }

  registerAuthHook(app, auth);
  if (budget) {
    // A tenant may lower the budget (settings.rateLimitPerMinute): counted after authentication,
    // when the tenant is known, on a counter of the same credential.
    app.addHook('onRequest', async (request) => {
      const tenantId = request.principal?.tenantId;
      if (!tenantId || request.routeOptions.config?.rateLimit === false) return;
      const limit = await outreach.rateLimitOf(tenantId);
      if (limit === null || limit >= config.rateLimitPerMinute) return;
      let use: { current: number; ttl: number };
      try {
        use = await budget.use(`tenant:${budgetKeyOf(request)}`);
      } catch {
        return; // Redis down: serve, as the server's own budget does
      }
      if (use.current > limit) {
        const seconds = Math.max(1, Math.ceil(use.ttl / 1000));
        throw new AppError('RATE_LIMITED', `This organisation's limit of ${limit} requests per minute is exceeded; retry in ${seconds} s`, undefined, {
          'retry-after': String(seconds),
        });
      }
    });
  }
  registerIdempotency(app, { db, redis });

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
  await app.register(pushRoutes({ sync }));
  await app.register(listsRoutes({ lists }));
  await app.register(conflictsRoutes({ conflicts }));
  await app.register(chatRoutes({ chat }));
  await app.register(filesRoutes({ files }));
  await app.register(tusRoutes({ files, store: tusStore, maxBytes: config.uploadMaxBytes }));
  await app.register(outreachRoutes({ outreach, hubspot }));
  await app.register(metricsRoutes({ metrics, auth, token: config.metricsToken }));
  await app.register(analyticsRoutes({ analytics }));
  await app.register(alertsRoutes({ alerts }));
  await app.register(dashboardRoutes());
  await app.register(fieldAppRoutes());

  // Real time, on the same HTTP server.
  const realtime = createGateway(app.server, {
    auth,
    sync,
    devices,
    feed,
    logger,
    corsOrigin: config.corsOrigin,
    authTimeoutMs: config.socketAuthTimeoutMs,
    audiencesOf: (tenantId, userId) => audiencesOf(db, tenantId, userId),
    budget: budget && { use: (key) => budget.use(key), perMinute: config.rateLimitPerMinute },
    maxSocketsPerCredential: config.maxSocketsPerCredential,
    recheckMs: config.authCacheMs,
    forgetUser: (userId) => auth.forgetUser(userId),
  });
  gateway = realtime;
  mountChatSocket({ gateway: realtime, chat, presence });
  mountFleetSocket({ gateway: realtime });
  if (redis && sub) realtime.useAdapter(createAdapter(redis, sub, { key: 'fieldsync', requestsTimeout: CLUSTER_ANSWER_MS }));
  app.addHook('preClose', async () => {
    closing = true;
    await realtime.shutdown();
  });
  await app.ready();
  await devices.run();
  const maintenance = createMaintenanceJob({ db, logger, intervalMs: 60 * 60 * 1000 });
  await maintenance.run();
  const uploadsExpiry = createUploadsExpiryJob({ files, logger, intervalMs: Math.min(15 * 60 * 1000, config.uploadTtlSeconds * 1000) });
  await uploadsExpiry.run();
  const hubspotExport = createHubspotExportJob({ exporter: hubspotExporter, logger, intervalMs: config.hubspot.pollMs });
  wakeExport = () => hubspotExport.wake();
  if (config.hubspot.worker) await hubspotExport.run();

  let prunedAt = 0;
  const analyticsJob = createPeriodicJob({
    intervalMs: config.analyticsFlushMs,
    logger,
    failure: 'sync analytics flush failed',
    work: async () => {
      await analytics.flush();
      if (Date.now() - prunedAt >= 60 * 60 * 1000) {
        prunedAt = Date.now();
        await analytics.prune();
      }
    },
  });
  await analyticsJob.run();
  const alertsJob = createPeriodicJob({
    intervalMs: config.alertIntervalMs,
    logger,
    failure: 'alert evaluation failed',
    // Rounds read every instance's analytics and the whole fleet from the database: one
    // instance of several takes each round (with ten thousand devices, a round is a read of
    // ten thousand rows, not worth doing once per instance).
    claim: () => claimRound(db, 'alerts', config.alertIntervalMs * 0.8),
    // This instance's latest counts and device rows first, so its rules read them.
    work: async () => {
      await Promise.all([analytics.flush(), devices.flush()]);
      await alerts.evaluate();
    },
  });
  await alertsJob.run();

  const services = {
    auth, agents, tenants, contacts, devices, sync, feed, registry, push, writes, lists, conflicts, policies, maintenance, files, uploadsExpiry, chat, presence,
    outreach, hubspot, hubspotExport, hubspotKey, metrics, analytics, alerts, analyticsJob, alertsJob, fleet,
  };
  return {
    app: app as unknown as FastifyInstance,
    gateway: realtime,
    services,
    /** Stops taking requests, lets in-flight ones finish, closes sockets, flushes, disconnects. */
    async close() {
      await app.close();
      realtime.io.close();
      fleet.stop();
      await Promise.all([devices.stop(), maintenance.stop(), uploadsExpiry.stop(), chat.stop(), analyticsJob.stop(), alertsJob.stop(), hubspotExport.stop()]);
      // What this instance counted since the last flush.
      await analytics.flush().catch((error: unknown) => logger.warn({ err: error }, 'sync analytics not flushed at shutdown'));
      // quit() waits for a connection a Redis that is down never gives: disconnect those.
      const quit = async (client?: Redis) => {
        if (client?.status === 'ready') await client.quit().catch(() => client.disconnect());
        else client?.disconnect();
      };
      await Promise.all([quit(redis), quit(sub)]);
    },
  };
}

export type BuiltApp = Awaited<ReturnType<typeof buildApp>>;

/**
 * Whose request budget a request spends: the credential sent (hashed; one budget per API key or
 * token), else the address. Public routes (login, refresh) by address only: a made-up
 * credential header must not buy a fresh budget.
 */
function budgetKeyOf(request: FastifyRequest): string {
  if (request.routeOptions.config?.auth === false) return `ip:${request.ip}`;
  const key = request.headers['x-api-key'];
  if (typeof key === 'string' && key) return `k:${sha256(key).slice(0, 32)}`;
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string' && authorization) return `t:${sha256(authorization).slice(0, 32)}`;
  return `ip:${request.ip}`;
}

/**
 * Fastify's `trustProxy` for TRUST_PROXY: off, proxy addresses, or a hop count. Fastify reads
 * a plain number as "trust nothing", so a count becomes a function trusting that many hops
 * nearest the server (which only holds when clients cannot reach the server directly).
 */
export function trustProxyOf(setting: TrustProxy): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (setting === false) return false;
  if (typeof setting === 'number') return (_address, hop) => hop < setting;
  return setting;
}

/**
 * Logs a Redis client's connection errors, and marks every command's failure as handled: the
 * Socket.IO adapter never awaits its publishes and subscriptions, and one unhandled rejection
 * while Redis is down would end the process. Callers that await a command still see its error.
 */
function guardRedis(client: Redis, logger: Logger): void {
  client.on('error', (error) => logger.warn({ err: error }, 'redis error'));
  const send = client.sendCommand.bind(client);
  client.sendCommand = (command, stream) => {
    const result = send(command, stream);
    (result as Promise<unknown>).catch(() => {});
    return result;
  };
}

/** Resolves once `client` is ready, has failed once, or `ms` have passed. */
function firstContact(client: Redis, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done).off('error', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.once('ready', done).once('error', done);
  });
}
