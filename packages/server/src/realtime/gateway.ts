import type { Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import type { Logger } from 'pino';
import { Type } from 'typebox';
import type {
  Ack,
  AuthenticatedPayload,
  ClientToServerEvents,
  ServerToClientEvents,
  SocketAuth,
} from '@fieldsync/protocol/events';
import { Heartbeat } from '@fieldsync/protocol/devices';
import { AppError } from '../errors.js';
import { compileBodyValidator } from '../http/validation.js';
import type { AuthService } from '../modules/auth/auth.service.js';
import type { Principal } from '../modules/auth/principal.js';
import type { DevicesService } from '../modules/devices/devices.service.js';
import type { ChangeFeed, CommitEvent } from '../sync/feed.js';
import type { SyncService } from '../sync/sync.service.js';
import { envelope } from '../http/error-handler.js';

export const AUTH_DEADLINE_MS = 10_000;

interface SocketData {
  principal?: Principal;
  /** Counted as an online device (undone on disconnect). */
  countedOnline?: boolean;
}
type FsServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type FsSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

/** Room names: everything a socket may receive is addressed through one of these. */
export const rooms = {
  tenant: (tenantId: string) => `t:${tenantId}`,
  user: (tenantId: string, userId: string) => `u:${tenantId}:${userId}`,
  device: (tenantId: string, deviceId: string) => `d:${tenantId}:${deviceId}`,
};

const SocketAuthSchema = Type.Union([
  Type.Object(
    { token: Type.String({ minLength: 1, maxLength: 4096 }), deviceId: Type.Optional(Type.String({ pattern: '^[\\w.:-]{1,128}$' })) },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      apiKey: Type.String({ minLength: 1, maxLength: 256 }),
      deviceId: Type.Optional(Type.String({ pattern: '^[\\w.:-]{1,128}$' })),
      agentCode: Type.Optional(Type.String({ maxLength: 64 })),
    },
    { additionalProperties: false },
  ),
]);
const PullSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 0 }),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000 })),
    collections: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 32 })),
  },
  { additionalProperties: false },
);
const checkAuth = compileBodyValidator<SocketAuth>(SocketAuthSchema);
const checkPull = compileBodyValidator<{ version: number; limit?: number; collections?: string[] }>(PullSchema);
const checkHeartbeat = compileBodyValidator<Heartbeat>(Heartbeat);

export interface GatewayDeps {
  auth: AuthService;
  sync: SyncService;
  devices: DevicesService;
  feed: ChangeFeed;
  logger: Logger;
  corsOrigin: string[] | '*' | undefined;
}

/** Turns any thrown error into the ack envelope; unknown errors are logged, not leaked. */
function toEnvelope(error: unknown, log: Logger) {
  if (error instanceof AppError) return envelope(error.code, error.message, error.details);
  log.error({ err: error }, 'socket handler failed');
  return envelope('INTERNAL', 'Internal server error');
}

/**
 * The Socket.IO gateway: authenticates sockets (handshake `auth`, or the `authenticate` event
 * within AUTH_DEADLINE_MS), places them in rooms, answers `sync:pull` and `heartbeat`, and
 * fans committed changes out to the rooms that may see them, never back to the device that
 * wrote them.
 */
export function createGateway(server: HttpServer, deps: GatewayDeps) {
  const io: FsServer = new Server(server, {
    cors: deps.corsOrigin ? { origin: deps.corsOrigin === '*' ? '*' : deps.corsOrigin } : undefined,
    maxHttpBufferSize: 1e6,
    pingInterval: 25_000,
    pingTimeout: 20_000,
  });
  const log = deps.logger.child({ component: 'gateway' });

  const authenticate = async (raw: unknown): Promise<Principal> => {
    const checked = checkAuth(raw);
    if (!checked.ok) throw new AppError('UNAUTHORIZED', 'Send {token} or {apiKey, deviceId}');
    const auth = checked.value;
    if ('token' in auth) return deps.auth.authenticateAccessToken(auth.token, { deviceId: auth.deviceId });
    return deps.auth.authenticateApiKey(auth.apiKey, { agentCode: auth.agentCode, deviceId: auth.deviceId });
  };

  const admit = async (socket: FsSocket, principal: Principal): Promise<AuthenticatedPayload> => {
    socket.data.principal = principal;
    const joined = [rooms.tenant(principal.tenantId), rooms.user(principal.tenantId, principal.userId)];
    if (principal.deviceId) {
      joined.push(rooms.device(principal.tenantId, principal.deviceId));
      deps.devices.setOnline(principal.tenantId, principal.deviceId, true);
      socket.data.countedOnline = true;
      deps.devices.recordSeen({ ...principal, deviceId: principal.deviceId }, {});
    }
    await socket.join(joined);
    return {
      user: { id: principal.userId, tenantId: principal.tenantId, agentCode: principal.agentCode, role: principal.role },
      deviceId: principal.deviceId ?? null,
    };
  };

  // Handshake auth: a socket that brings credentials is checked before it connects.
  io.use(async (socket, next) => {
    const auth = socket.handshake.auth as Record<string, unknown> | undefined;
    if (!auth || Object.keys(auth).length === 0) return next();
    try {
      socket.data.principal = await authenticate(auth);
      next();
    } catch (error) {
      const err = new Error(error instanceof AppError ? error.message : 'Authentication failed') as Error & { data?: unknown };
      err.data = error instanceof AppError ? { error: error.code, message: error.message } : { error: 'UNAUTHORIZED' };
      next(err);
    }
  });

  io.on('connection', (socket) => {
    const requireAuth = <P, R>(handler: (principal: Principal, payload: P) => Promise<R>) =>
      async (payload: P, ack?: Ack<R>) => {
        const reply = typeof ack === 'function' ? ack : () => {};
        const principal = socket.data.principal;
        if (!principal || !socket.rooms.has(rooms.tenant(principal.tenantId))) {
          return reply(envelope('UNAUTHORIZED', 'Authenticate first'));
        }
        try {
          reply({ success: true, data: await handler(principal, payload) });
        } catch (error) {
          reply(toEnvelope(error, log));
        }
      };

    let deadline: NodeJS.Timeout | undefined;
    if (socket.data.principal) {
      void admit(socket, socket.data.principal).then((payload) => socket.emit('authenticated', payload));
    } else {
      deadline = setTimeout(() => {
        if (!socket.data.principal) {
          socket.emit('auth_error', { error: 'UNAUTHORIZED', message: 'Not authenticated within 10 s' });
          socket.disconnect(true);
        }
      }, AUTH_DEADLINE_MS);
    }

    socket.on('authenticate', async (payload, ack) => {
      const reply = typeof ack === 'function' ? ack : () => {};
      if (socket.data.principal) return reply(envelope('CONFLICT', 'Already authenticated'));
      try {
        const principal = await authenticate(payload);
        clearTimeout(deadline);
        const answer = await admit(socket, principal);
        socket.emit('authenticated', answer);
        reply({ success: true, data: answer });
      } catch (error) {
        const env = toEnvelope(error, log);
        socket.emit('auth_error', { error: env.error, message: env.message });
        reply(env);
      }
    });

    socket.on(
      'sync:pull',
      requireAuth(async (principal, payload: unknown) => {
        const checked = checkPull(payload);
        if (!checked.ok) throw new AppError('VALIDATION_FAILED', 'Invalid sync:pull payload', checked.errors);
        const { version, limit = 1000, collections } = checked.value;
        return deps.sync.pull(principal, { version, limit, collections });
      }),
    );

    socket.on(
      'heartbeat',
      requireAuth(async (principal, payload: unknown) => {
        const checked = checkHeartbeat(payload ?? {});
        if (!checked.ok) throw new AppError('VALIDATION_FAILED', 'Invalid heartbeat payload', checked.errors);
        if (principal.deviceId) deps.devices.recordSeen({ ...principal, deviceId: principal.deviceId }, checked.value);
        return { serverTime: new Date().toISOString() };
      }),
    );

    socket.on('disconnect', () => {
      clearTimeout(deadline);
      const principal = socket.data.principal;
      if (principal?.deviceId && socket.data.countedOnline) deps.devices.setOnline(principal.tenantId, principal.deviceId, false);
    });
  });

  /** Fans a commit out: `changes` and domain events to the tenant room, minus the origin device. */
  const broadcast = (commit: CommitEvent) => {
    const target = () => {
      const room = io.to(rooms.tenant(commit.tenantId));
      return commit.origin.deviceId ? room.except(rooms.device(commit.tenantId, commit.origin.deviceId)) : room;
    };
    if (commit.changes.length > 0) {
      target().emit('changes', { fromVersion: commit.fromVersion, toVersion: commit.toVersion, changes: commit.changes });
    }
    for (const event of commit.events ?? []) {
      (target().emit as (name: string, payload: unknown) => boolean)(event.name, event.payload);
    }
  };
  const unsubscribe = deps.feed.subscribe(broadcast);

  return {
    io,
    /** Tells every socket of this instance to reconnect elsewhere, then closes them. */
    async shutdown(retryAfterMs = 1000) {
      unsubscribe();
      io.local.emit('server_shutdown', { reconnect: true, retryAfterMs });
      io.local.disconnectSockets(true);
    },
    connectedSockets: () => io.of('/').sockets.size,
  };
}

export type Gateway = ReturnType<typeof createGateway>;
