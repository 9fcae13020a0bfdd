import type { Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import type { Logger } from 'pino';
import type { Change } from '@fieldsync/protocol/sync';
import {
  HeartbeatPayload as HeartbeatPayloadSchema,
  SocketAuth as SocketAuthSchema,
  SyncPullPayload as SyncPullPayloadSchema,
  SyncPushPayload as SyncPushPayloadSchema,
  type HeartbeatPayload,
  type SyncPullPayload,
  type SyncPushPayload,
} from '@fieldsync/protocol/events';
import { errorEnvelope as envelope } from '@fieldsync/protocol/errors';
import type {
  Ack,
  AuthenticatedPayload,
  ClientToServerEvents,
  ServerToClientEvents,
  SocketAuth,
} from '@fieldsync/protocol/events';
import { AppError } from '../errors.js';
import { sha256 } from '../lib/hash.js';
import { refusalOf, screenBatch } from '../lib/values.js';
import { compileBodyValidator } from '../lib/validation.js';
import type { Role } from '@fieldsync/protocol/auth';
import type { ChangeFeed, CommitEmit, CommitEvent } from '../sync/feed.js';
import type { SyncService } from '../sync/sync.service.js';

/** How long a socket may stay connected without authenticating, unless configured (SPEC §7). */
export const AUTH_DEADLINE_MS = 10_000;

/** Who a socket is, as the gateway needs to know it. */
export interface SocketPrincipal {
  tenantId: string;
  userId: string;
  agentCode: string;
  role: Role;
  deviceId?: string;
}

/** Checks a socket's credentials (the auth module, wired by the root). */
export interface SocketAuthenticator {
  authenticateApiKey(key: string, opts: { agentCode?: string; deviceId?: string }): Promise<SocketPrincipal>;
  authenticateAccessToken(token: string, opts: { deviceId?: string }): Promise<SocketPrincipal>;
}

/** What the gateway tells the devices module about the sockets of devices. */
export interface SocketDevices {
  /** Throws 403 when the device id belongs to another user (SPEC §4 "Client ids"). */
  claim(tenantId: string, deviceId: string, userId: string): Promise<void>;
  setOnline(tenantId: string, deviceId: string, online: boolean): void;
  recordSeen(who: { tenantId: string; deviceId: string; userId?: string; agentCode?: string }, facts: HeartbeatPayload): void;
  /** A `changes` event up to `version` reached the device's socket: its checkpoint. */
  recordDelivered(who: { tenantId: string; deviceId: string }, version: number): void;
}

type Principal = SocketPrincipal;

interface SocketData {
  principal?: Principal;
  /** The credentials it authenticated with (checked again every recheckMs) and their budget key. */
  credential?: { auth: SocketAuth; key: string };
  /** `authenticate` attempts so far (the handshake's included). */
  attempts?: number;
  /** Counted as an online device (undone on disconnect). */
  countedOnline?: boolean;
  /** An `authenticate` event is being checked: a second one must not admit the socket twice. */
  authenticating?: boolean;
  /** The audience keys (`kind:id`) of the scopes its user belongs to: which scoped changes it receives. */
  audiences?: Set<string>;
  /** Admitted and in its rooms. */
  ready?: boolean;
}
type FsServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
type FsSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

/** Room names: everything a socket may receive is addressed through one of these. */
export const rooms = {
  tenant: (tenantId: string) => `t:${tenantId}`,
  user: (tenantId: string, userId: string) => `u:${tenantId}:${userId}`,
  device: (tenantId: string, deviceId: string) => `d:${tenantId}:${deviceId}`,
  credential: (key: string) => `c:${key}`,
  /** The tenant's sockets that read `changes` alone (handshake `seedEvents: false`). */
  changesOnly: (tenantId: string) => `q:${tenantId}`,
};

// Socket payloads are validated with the protocol's schemas, as HTTP bodies are with theirs.
const checkAuth = compileBodyValidator<SocketAuth>(SocketAuthSchema);
const checkPull = compileBodyValidator<SyncPullPayload>(SyncPullPayloadSchema);
const checkHeartbeat = compileBodyValidator<HeartbeatPayload>(HeartbeatPayloadSchema);
const checkPush = compileBodyValidator<SyncPushPayload>(SyncPushPayloadSchema);

export interface GatewayDeps {
  auth: SocketAuthenticator;
  sync: SyncService;
  devices: SocketDevices;
  feed: ChangeFeed;
  logger: Logger;
  corsOrigin: string[] | '*' | undefined;
  /** The authentication deadline; AUTH_DEADLINE_MS when omitted. */
  authTimeoutMs?: number;
  /**
   * The audience keys of the scopes a user belongs to, read when a socket is admitted;
   * afterwards the memberships that commits announce keep them current.
   */
  audiencesOf: (tenantId: string, userId: string) => Promise<string[]>;
  /** Socket events count against the caller's request budget (RATE_LIMIT_PER_MINUTE); none: unlimited. */
  budget?: { use(key: string): Promise<{ current: number; ttl: number }>; perMinute: number };
  /** How many sockets one credential may hold (MAX_SOCKETS_PER_CREDENTIAL). */
  maxSocketsPerCredential?: number;
  /** How often a live socket's credentials are checked again (AUTH_CACHE_MS, at least 1 s). */
  recheckMs?: number;
  /** Forget the cached credentials of a user on this instance (the auth module's cache). */
  forgetUser?: (userId: string) => void;
}

/** A socket as a domain's event handler sees it. */
export interface SocketContext {
  principal: Principal;
  socketId: string;
  /** Emits to this socket only. */
  emit(name: string, payload: unknown): void;
}

/** A socket event a domain module handles (chat's `send_message`): checked payload in, ack data out. */
export interface SocketHandler<T = unknown> {
  /** The payload's schema check (compileBodyValidator of a protocol schema). */
  check(payload: unknown): { ok: true; value: T } | { ok: false; errors: unknown[] };
  /** Answers the event; a thrown AppError becomes the error ack. Absent: the event needs no ack. */
  handle(ctx: SocketContext, payload: T): Promise<unknown>;
}

/** An ephemeral event (typing, presence) for sockets on every instance; never stored. */
export interface Relay {
  tenantId: string;
  name: string;
  payload: unknown;
  /** Whose sockets: the tenant's (absent), a scope's members, or some users. */
  to?: { audience: string } | { users: string[] };
  /** Leave out every socket of this user (the typist). */
  exceptUserId?: string;
}

/** Told when a user's socket is admitted and when it goes (presence). */
export interface SocketLifecycle {
  admitted(principal: Principal, socketId: string): void;
  gone(principal: Principal, socketId: string): void;
}

/** How long an instance waits for the others' answers (the Redis adapter's `requestsTimeout`). */
export const CLUSTER_ANSWER_MS = 1000;

/** `authenticate` events a socket may send before it is disconnected. */
export const MAX_AUTH_ATTEMPTS = 3;

/** The budget key of a credential: the same as the HTTP rate limit's, so both share one budget. */
export const credentialKey = (auth: SocketAuth) =>
  'token' in auth ? `t:${sha256(`Bearer ${auth.token}`).slice(0, 32)}` : `k:${sha256(auth.apiKey).slice(0, 32)}`;

/** Appends `value` to the list of `key`. */
function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** Turns any thrown error into the ack envelope; unknown errors are logged, not leaked. */
function toEnvelope(error: unknown, log: Logger) {
  if (error instanceof AppError) return envelope(error.code, error.message, error.details);
  log.error({ err: error }, 'socket handler failed');
  return envelope('INTERNAL', 'Internal server error');
}

/**
 * The Socket.IO gateway: authenticates sockets (handshake `auth`, or the `authenticate` event
 * within the deadline), places them in rooms, answers `sync:pull` and `heartbeat`, and
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
  const authTimeoutMs = deps.authTimeoutMs ?? AUTH_DEADLINE_MS;

  /** Revocations seen per user on this instance: an admission that saw one meanwhile checks again. */
  const revocations = new Map<string, number>();
  /** Domain socket events by name (registered by modules through `handle`). */
  const handlers = new Map<string, SocketHandler<never>>();
  /** Listeners told when an event of a name reached a user's socket (chat: delivered receipts). */
  const reached = new Map<string, ((principal: Principal, payload: unknown) => void)[]>();
  const lifecycles: SocketLifecycle[] = [];

  /** Checks credentials (payload rules, schema, the auth module, the device's owner). */
  const authenticate = async (raw: unknown): Promise<{ principal: Principal; auth: SocketAuth }> => {
    const refused = refusalOf(raw);
    const checked = refused ? undefined : checkAuth(raw);
    if (!checked?.ok) throw new AppError('UNAUTHORIZED', 'Send {token} or {apiKey, deviceId}');
    const auth = checked.value;
    const principal =
      'token' in auth
        ? await deps.auth.authenticateAccessToken(auth.token, { deviceId: auth.deviceId })
        : await deps.auth.authenticateApiKey(auth.apiKey, { agentCode: auth.agentCode, deviceId: auth.deviceId });
    if (principal.deviceId) await deps.devices.claim(principal.tenantId, principal.deviceId, principal.userId);
    return { principal, auth };
  };

  /** How many sockets of this instance hold a credential. */
  const localSocketsOf = (key: string) => io.of('/').adapter.rooms.get(rooms.credential(key))?.size ?? 0;
  (io.on as (event: string, listener: (key: string, reply: (count: number) => void) => void) => void)('fieldsync:credential-sockets', (key, reply) =>
    reply(localSocketsOf(key)),
  );

  /**
   * How many sockets hold a credential, on every instance: each instance answers with its own
   * count (one number each, not the sockets: a storm of 10,000 admissions asking for 1,000
   * sockets' descriptions each timed the handshakes out). The adapter waits
   * `CLUSTER_ANSWER_MS` for the answers; those of instances that answered by then count, one that
   * did not (busy, or shutting down) does not: a safeguard must not turn away every device when
   * one instance is slow.
   */
  const socketsOf = async (key: string, max: number) => {
    const local = localSocketsOf(key);
    if (!clustered || local >= max) return local;
    const others = await new Promise<unknown[]>((resolve) => {
      const ask = io.serverSideEmit as unknown as (event: string, key: string, ack: (error: Error | null, answers: unknown[]) => void) => void;
      ask.call(io, 'fieldsync:credential-sockets', key, (error, answers) => {
        if (error) log.warn({ err: error }, "some instances did not answer with their count of a credential's sockets in time");
        resolve(answers ?? []);
      });
    });
    return others.reduce<number>((sum, n) => sum + (typeof n === 'number' && Number.isFinite(n) ? n : 0), local);
  };

  /**
   * Everything an admission needs that takes a round trip (credentials, the socket limit, the
   * user's scopes), so that joining the rooms afterwards is synchronous: a socket admitted in
   * its handshake is in its rooms before the client sees `connect`.
   */
  const prepare = async (socket: FsSocket, raw: unknown) => {
    socket.data.attempts = (socket.data.attempts ?? 0) + 1;
    const seen = (userId: string) => revocations.get(userId) ?? 0;
    let { principal, auth } = await authenticate(raw);
    const before = seen(principal.userId);
    const key = credentialKey(auth);
    const max = deps.maxSocketsPerCredential;
    if (max !== undefined && (await socketsOf(key, max)) >= max) {
      throw new AppError('RATE_LIMITED', `This credential holds ${max} sockets already; close one first`);
    }
    const audiences = await deps.audiencesOf(principal.tenantId, principal.userId);
    // A revocation arrived while this was checked (the cache may have answered from before it): again, from the database.
    if (seen(principal.userId) !== before) ({ principal, auth } = await authenticate(raw));
    socket.data.principal = principal;
    socket.data.credential = { auth, key };
    socket.data.audiences = new Set(audiences);
  };

  /** Puts a prepared socket in its rooms (synchronously); the `authenticated` payload. */
  const join = (socket: FsSocket): AuthenticatedPayload => {
    const principal = socket.data.principal!;
    const joined = [rooms.tenant(principal.tenantId), rooms.user(principal.tenantId, principal.userId), rooms.credential(socket.data.credential!.key)];
    if (socket.data.credential!.auth.seedEvents === false) joined.push(rooms.changesOnly(principal.tenantId));
    if (principal.deviceId) {
      joined.push(rooms.device(principal.tenantId, principal.deviceId));
      deps.devices.setOnline(principal.tenantId, principal.deviceId, true);
      socket.data.countedOnline = true;
      deps.devices.recordSeen({ ...principal, deviceId: principal.deviceId }, {});
    }
    void socket.join(joined);
    socket.data.ready = true;
    for (const l of lifecycles) l.admitted(principal, socket.id);
    return {
      user: { id: principal.userId, tenantId: principal.tenantId, agentCode: principal.agentCode, role: principal.role },
      deviceId: principal.deviceId ?? null,
    };
  };

  /** Ends a socket whose credentials no longer hold: `auth_error`, then disconnect; it receives nothing more. */
  const end = (socket: FsSocket, error: AppError | { code: string; message: string }) => {
    socket.data.ready = false;
    socket.emit('auth_error', { error: error.code as never, message: error.message });
    socket.disconnect(true);
  };

  // Handshake auth: a socket that brings credentials is checked before it connects.
  io.use(async (socket, next) => {
    const auth = socket.handshake.auth as Record<string, unknown> | undefined;
    if (!auth || Object.keys(auth).length === 0) return next();
    try {
      await prepare(socket, auth);
      next();
    } catch (error) {
      socket.data.principal = undefined;
      // The server's own failure (a database that did not answer) is no verdict on the
      // credentials: the envelope says so, retryable, as the ack of the `authenticate` event does.
      const env = toEnvelope(error, log);
      const err = new Error(env.message) as Error & { data?: unknown };
      err.data = { error: env.error, message: env.message };
      next(err);
    }
  });

  io.on('connection', (socket) => {
    const requireAuth = <P, R>(handler: (principal: Principal, payload: P) => Promise<R>, opts: { batch?: string } = {}) =>
      async (payload: P, ack?: Ack<R>) => {
        const reply = typeof ack === 'function' ? ack : () => {};
        const principal = socket.data.principal;
        if (!principal || !socket.data.ready) return reply(envelope('UNAUTHORIZED', 'Authenticate first'));
        if (deps.budget) {
          const use = await deps.budget.use(socket.data.credential!.key);
          if (use.current > deps.budget.perMinute) {
            return reply({ ...envelope('RATE_LIMITED', `Rate limit of ${deps.budget.perMinute} per minute exceeded`), retryAfterMs: use.ttl } as never);
          }
        }
        // The same input rules as HTTP bodies; a batch's refused items fail alone.
        const refused = opts.batch ? screenBatch(payload, opts.batch) : refusalOf(payload);
        if (refused) return reply(envelope('BAD_REQUEST', refused));
        try {
          reply({ success: true, data: await handler(principal, payload) });
        } catch (error) {
          reply(toEnvelope(error, log));
        }
      };

    let deadline: NodeJS.Timeout | undefined;
    if (socket.data.principal) {
      socket.emit('authenticated', join(socket));
    } else {
      deadline = setTimeout(() => {
        if (!socket.data.principal) {
          socket.emit('auth_error', { error: 'UNAUTHORIZED', message: `Not authenticated within ${authTimeoutMs} ms` });
          socket.disconnect(true);
        }
      }, authTimeoutMs);
    }

    socket.on('authenticate', async (payload, ack) => {
      const reply = typeof ack === 'function' ? ack : () => {};
      if (socket.data.principal) return reply(envelope('CONFLICT', 'Already authenticated'));
      // Two attempts in flight would both admit the socket and count its device online twice.
      if (socket.data.authenticating) return reply(envelope('CONFLICT', 'Authentication already in progress'));
      socket.data.authenticating = true;
      try {
        await prepare(socket, payload);
        // Gone (hung up, or past the deadline) while its credentials were checked: admit nothing.
        if (!socket.connected) return;
        const answer = join(socket);
        clearTimeout(deadline);
        socket.emit('authenticated', answer);
        reply({ success: true, data: answer });
      } catch (error) {
        socket.data.principal = undefined;
        const env = toEnvelope(error, log);
        socket.emit('auth_error', { error: env.error, message: env.message });
        reply(env);
        // Guessing keys on one socket ends after a few tries.
        if ((socket.data.attempts ?? 0) >= MAX_AUTH_ATTEMPTS) socket.disconnect(true);
      } finally {
        socket.data.authenticating = false;
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
      'sync:push',
      requireAuth(async (principal, payload: unknown) => {
        const checked = checkPush(payload);
        if (!checked.ok) throw new AppError('VALIDATION_FAILED', 'Invalid sync:push payload', checked.errors);
        return deps.sync.push(principal, checked.value);
      }, { batch: 'changes' }),
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

    for (const [name, handler] of handlers) {
      (socket.on as (event: string, listener: (payload: unknown, ack?: Ack<unknown>) => void) => void)(
        name,
        requireAuth(async (principal, payload: unknown) => {
          const checked = handler.check(payload);
          if (!checked.ok) throw new AppError('VALIDATION_FAILED', `Invalid ${name} payload`, checked.errors as Record<string, unknown>[]);
          const ctx: SocketContext = {
            principal,
            socketId: socket.id,
            emit: (event, data) => (socket.emit as (name: string, payload: unknown) => boolean)(event, data),
          };
          return handler.handle(ctx, checked.value as never);
        }),
      );
    }

    socket.on('disconnect', () => {
      clearTimeout(deadline);
      const principal = socket.data.principal;
      if (principal?.deviceId && socket.data.countedOnline) deps.devices.setOnline(principal.tenantId, principal.deviceId, false);
      if (principal && socket.data.ready) {
        socket.data.ready = false;
        for (const l of lifecycles) l.gone(principal, socket.id);
      }
    });
  });

  /**
   * Delivers a commit to this instance's sockets of the tenant, each getting ONE `changes`
   * event with exactly what its user may see (tenant-wide changes, changes of its scopes, its
   * own scope grants and revokes), possibly none: one event per commit keeps every socket's
   * version chain continuous, so `fromVersion` beyond its checkpoint always means a real gap.
   * Memberships the commit changed apply first. The device that wrote the commit gets no echo.
   */
  const deliver = (commit: CommitEvent) => {
    const { tenantId } = commit;
    const nsp = io.of('/');
    const local = nsp.adapter.rooms.get(rooms.tenant(tenantId));
    if (!local || local.size === 0) return;
    const tenantWide: Change[] = [];
    const byAudience = new Map<string, Change[]>();
    commit.changes.forEach((change, i) => {
      const audience = commit.audience?.[i] ?? null;
      if (audience === null) tenantWide.push(change);
      else pushTo(byAudience, audience, change);
    });
    const byUser = new Map<string, Change[]>();
    for (const { userId, change } of commit.userChanges ?? []) pushTo(byUser, userId, change);
    const membership = new Map<string, { audience: string; member: boolean }[]>();
    for (const m of commit.membership ?? []) pushTo(membership, m.userId, m);
    const range = { fromVersion: commit.fromVersion, toVersion: commit.toVersion };
    const delivered = (principal: Principal) => {
      if (principal.deviceId) deps.devices.recordDelivered({ tenantId, deviceId: principal.deviceId }, commit.toVersion);
    };

    const events = commit.events ?? [];
    const plainEvents = events.every((e) => e.to === undefined && (e.skip ?? 'device') === 'device' && !reached.has(e.name));
    if (byAudience.size === 0 && byUser.size === 0 && membership.size === 0 && plainEvents) {
      // Only tenant-wide changes: every socket but the writer's gets the same event, so one
      // room broadcast encodes it once instead of once per socket.
      const room = io.local.to(rooms.tenant(tenantId));
      const target = commit.origin.deviceId ? room.except(rooms.device(tenantId, commit.origin.deviceId)) : room;
      target.emit('changes', { ...range, changes: tenantWide });
      for (const event of events) {
        const to = event.restates ? target.except(rooms.changesOnly(tenantId)) : target;
        (to.emit as (name: string, payload: unknown) => boolean)(event.name, event.payload);
      }
      for (const socketId of local) {
        const principal = (nsp.sockets.get(socketId) as FsSocket | undefined)?.data.principal;
        if (principal && principal.deviceId !== commit.origin.deviceId) delivered(principal);
      }
      return;
    }

    // Sockets that may see the same changes share one broadcast (encoded once): grouped by
    // which of the commit's audiences they hold; a socket with changes of its own goes alone.
    const groups = new Map<string, { changes: Change[]; sockets: string[] }>();
    const eventTargets = events.map(() => [] as string[]);
    const reachedBy = events.map(() => [] as Principal[]);
    for (const socketId of local) {
      const socket = nsp.sockets.get(socketId) as FsSocket | undefined;
      const principal = socket?.data.principal;
      if (!socket || !principal) continue;
      const audiences = (socket.data.audiences ??= new Set());
      for (const { audience, member } of membership.get(principal.userId) ?? []) {
        if (member) audiences.add(audience);
        else audiences.delete(audience);
      }
      const own = byUser.get(principal.userId) ?? [];
      const writer = commit.origin.deviceId !== undefined && principal.deviceId === commit.origin.deviceId;
      if (writer) {
        // No echo; only scope changes of its own user are news to the writing device.
        if (own.length > 0) socket.emit('changes', { ...range, changes: own });
      } else {
        const held = [...byAudience.keys()].filter((a) => audiences.has(a));
        const key = own.length > 0 ? `socket:${socketId}` : held.join('|');
        let group = groups.get(key);
        if (!group) {
          let visible = tenantWide;
          if (held.length > 0 || own.length > 0) {
            visible = [...tenantWide, ...own];
            for (const audience of held) visible.push(...byAudience.get(audience)!);
            visible.sort((x, y) => x.version - y.version);
          }
          groups.set(key, (group = { changes: visible, sockets: [] }));
        }
        group.sockets.push(socketId);
        delivered(principal);
      }
      events.forEach((event, i) => {
        if (!reaches(event, socket, writer, commit.origin.socketId)) return;
        eventTargets[i].push(socketId);
        if (reached.has(event.name)) reachedBy[i].push(principal);
      });
    }
    for (const group of groups.values()) io.local.to(group.sockets).emit('changes', { ...range, changes: group.changes });
    events.forEach((event, i) => {
      if (eventTargets[i].length === 0) return;
      (io.local.to(eventTargets[i]).emit as (name: string, payload: unknown) => boolean)(event.name, event.payload);
      for (const principal of reachedBy[i]) for (const listener of reached.get(event.name)!) listener(principal, event.payload);
    });
  };

  /** Whether a commit's event goes to `socket` (`writer`: the socket is the writing device's). */
  const reaches = (event: CommitEmit, socket: FsSocket, writer: boolean, originSocket: string | undefined) => {
    if ((event.skip ?? 'device') === 'device' ? writer : socket.id === originSocket) return false;
    if (event.restates && socket.data.credential?.auth.seedEvents === false) return false;
    return targets(event.to, socket);
  };

  /** Whether `socket` is among the sockets `to` names. */
  const targets = (to: CommitEmit['to'], socket: FsSocket) => {
    if (to === undefined) return true;
    if ('audience' in to) return socket.data.audiences?.has(to.audience) ?? false;
    return to.users.includes(socket.data.principal!.userId);
  };

  /** Emits a relayed event to this instance's sockets it names. */
  const relayLocal = (relay: Relay) => {
    const nsp = io.of('/');
    const local = nsp.adapter.rooms.get(rooms.tenant(relay.tenantId));
    if (!local) return;
    for (const socketId of local) {
      const socket = nsp.sockets.get(socketId) as FsSocket | undefined;
      const principal = socket?.data.principal;
      if (!socket || !principal || !socket.data.ready || principal.userId === relay.exceptUserId) continue;
      if (targets(relay.to, socket)) (socket.emit as (name: string, payload: unknown) => boolean)(relay.name, relay.payload);
    }
  };
  (io.on as (event: string, listener: (relay: Relay) => void) => void)('fieldsync:relay', relayLocal);

  // This instance's commits are delivered here and, through the adapter, on every other instance.
  // The other instances are told first: delivering to this instance's sockets writes to each
  // of them, and the others' deliveries should not wait for that.
  const broadcast = (commit: CommitEvent) => {
    if (clustered) io.serverSideEmit('fieldsync:commit', commit);
    deliver(commit);
  };
  let clustered = false;
  (io.on as (event: string, listener: (commit: CommitEvent) => void) => void)('fieldsync:commit', deliver);
  const unsubscribe = deps.feed.subscribe(broadcast);

  /** A user's credentials changed: this instance's cache forgets them and admissions in flight check again. */
  const forget = (userId: string) => {
    revocations.set(userId, (revocations.get(userId) ?? 0) + 1);
    deps.forgetUser?.(userId);
  };
  (io.on as (event: string, listener: (userId: string) => void) => void)('fieldsync:forget', forget);

  /**
   * Checks every live socket's credentials again, one check per credential: a revoked key, a
   * deactivated agent or an expired token ends its sockets. The auth module's cache lives
   * AUTH_CACHE_MS, so each credential reaches the database at most once per period.
   */
  const recheck = async () => {
    const byKey = new Map<string, FsSocket[]>();
    for (const socket of io.of('/').sockets.values() as IterableIterator<FsSocket>) {
      if (socket.data.ready && socket.data.credential) pushTo(byKey, socket.data.credential.key, socket);
    }
    for (const sockets of byKey.values()) {
      try {
        await authenticate(sockets[0].data.credential!.auth);
      } catch (error) {
        if (!(error instanceof AppError) || (error.status !== 401 && error.status !== 403)) {
          log.warn({ err: error }, 'socket credential check failed');
          continue;
        }
        for (const socket of sockets) end(socket, error);
      }
    }
  };
  const rechecking = setInterval(() => void recheck(), Math.max(1000, deps.recheckMs ?? 5000));
  rechecking.unref();

  return {
    io,
    /**
     * A user's credentials changed (a key revoked, the agent deactivated): every instance
     * forgets their cached credentials, and their sockets everywhere end; valid ones reconnect.
     */
    revokeUser(tenantId: string, userId: string) {
      forget(userId);
      if (clustered) io.serverSideEmit('fieldsync:forget', userId);
      io.in(rooms.user(tenantId, userId)).emit('auth_error', { error: 'UNAUTHORIZED', message: 'Your credentials changed; authenticate again' });
      io.in(rooms.user(tenantId, userId)).disconnectSockets(true);
    },
    /** Handles socket event `name` for a domain module (checked payload, budget, error acks as for every event). */
    handle<T>(name: string, handler: SocketHandler<T>) {
      if (handlers.has(name)) throw new Error(`socket event ${name} handled twice`);
      handlers.set(name, handler as SocketHandler<never>);
    },
    /** Calls `listener` whenever a commit's event `name` reaches a socket of this instance. */
    onReached(name: string, listener: (principal: Principal, payload: unknown) => void) {
      const list = reached.get(name) ?? [];
      list.push(listener);
      reached.set(name, list);
    },
    /** Calls `lifecycle` when a socket of this instance is admitted and when it goes. */
    onLifecycle(lifecycle: SocketLifecycle) {
      lifecycles.push(lifecycle);
    },
    /** Emits an ephemeral event to the sockets it names on every instance. */
    relay(relay: Relay) {
      relayLocal(relay);
      if (clustered) io.serverSideEmit('fieldsync:relay', relay);
    },
    /** Whether a socket of this instance holds scope `audience` (its user is a member now). */
    holds(socketId: string, audience: string): boolean {
      return (io.of('/').sockets.get(socketId) as FsSocket | undefined)?.data.audiences?.has(audience) ?? false;
    },
    /** Fans out across instances through `adapter` (the Redis adapter). */
    useAdapter(adapter: Parameters<FsServer['adapter']>[0]) {
      io.adapter(adapter);
      clustered = true;
    },
    /** Tells every socket of this instance to reconnect elsewhere, then closes them. */
    async shutdown(retryAfterMs = 1000) {
      unsubscribe();
      clearInterval(rechecking);
      io.local.emit('server_shutdown', { reconnect: true, retryAfterMs });
      io.local.disconnectSockets(true);
    },
    connectedSockets: () => io.of('/').sockets.size,
  };
}

export type Gateway = ReturnType<typeof createGateway>;
