import { Type, type Static } from 'typebox';
import { ChangesEvent, Delta, PushBody, PushResult } from './sync.js';
import { Contact } from './contacts.js';
import { Heartbeat } from './devices.js';
import { ErrorCodeSchema, ErrorEnvelope } from './errors.js';

/*
 * The Socket.IO contract (SPEC §7): a TypeBox schema and a static type for every payload, and
 * the typed event maps. The gateway validates what clients send with these schemas; the SDK
 * and the server share the types.
 */

const DeviceId = Type.String({ pattern: '^[\\w.:-]{1,128}$' });

/**
 * `false`: the socket reads `changes` alone and is not sent the seed's events that only restate
 * them (`contact_created`, `contact_updated`, `contact_deleted`): half the frames of a contact
 * change. The SDK sends it. Default `true`, as SPEC §7 describes.
 */
const SeedEvents = Type.Optional(Type.Boolean());

/** Socket handshake `auth`, or the body of the `authenticate` event: an access token, or an API key. */
export const SocketAuth = Type.Union([
  Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }), deviceId: Type.Optional(DeviceId), seedEvents: SeedEvents }, { additionalProperties: false }),
  Type.Object(
    {
      apiKey: Type.String({ minLength: 1, maxLength: 256 }),
      deviceId: Type.Optional(DeviceId),
      agentCode: Type.Optional(Type.String({ maxLength: 64 })),
      seedEvents: SeedEvents,
    },
    { additionalProperties: false },
  ),
]);
export type SocketAuth = Static<typeof SocketAuth>;

/** `sync:pull`: a delta pull from `version` (the answer is the delta pull's). */
export const SyncPullPayload = Type.Object(
  {
    version: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000 })),
    collections: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 32 })),
  },
  { additionalProperties: false },
);
export type SyncPullPayload = Static<typeof SyncPullPayload>;

/** `sync:push`: the body of POST /api/sync (each change checked on its own by the engine). */
export const SyncPushPayload = PushBody;
export type SyncPushPayload = Static<typeof SyncPushPayload>;

/** `heartbeat`: device facts (network, versions, battery). */
export const HeartbeatPayload = Heartbeat;
export type HeartbeatPayload = Static<typeof HeartbeatPayload>;

/** The answer to a `heartbeat`. */
export const HeartbeatAck = Type.Object({ serverTime: Type.String({ format: 'date-time' }) });
export type HeartbeatAck = Static<typeof HeartbeatAck>;

/** `authenticated`: who the socket is, sent once it is admitted (and the `authenticate` ack). */
export const AuthenticatedPayload = Type.Object({
  user: Type.Object({ id: Type.String(), tenantId: Type.String(), agentCode: Type.String(), role: Type.String() }),
  deviceId: Type.Union([Type.String(), Type.Null()]),
});
export type AuthenticatedPayload = Static<typeof AuthenticatedPayload>;

/** `auth_error`: the socket's credentials were refused or have ended; it is disconnected. */
export const AuthErrorPayload = Type.Object({ error: ErrorCodeSchema, message: Type.String() });
export type AuthErrorPayload = Static<typeof AuthErrorPayload>;

/** `contact_created`, `contact_updated`, `contact_deleted` (the seed's events, beside `changes`). */
export const ContactEventPayload = Type.Object({
  contact: Contact,
  version: Type.Integer(),
  createdBy: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  updatedBy: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  deletedBy: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});
export type ContactEventPayload = Static<typeof ContactEventPayload>;

/** `server_shutdown`: sent before the server closes the socket on shutdown: reconnect after `retryAfterMs`. */
export const ServerShutdownPayload = Type.Object({ reconnect: Type.Literal(true), retryAfterMs: Type.Integer({ minimum: 0 }) });
export type ServerShutdownPayload = Static<typeof ServerShutdownPayload>;

/** A failed acknowledgement: the HTTP error envelope; a `RATE_LIMITED` one says when to retry. */
export const AckError = Type.Object({
  ...ErrorEnvelope.properties,
  retryAfterMs: Type.Optional(Type.Integer({ minimum: 0, description: 'With RATE_LIMITED: when the budget allows another event.' })),
});
export type AckError = Static<typeof AckError>;

/** What every acknowledged socket request answers: the HTTP envelope. */
export type AckAnswer<T> = { success: true; data: T } | AckError;
export type Ack<T> = (answer: AckAnswer<T>) => void;

/** The payload schema of every event a client sends: what the gateway validates it with. */
export const ClientEventPayloads = {
  authenticate: SocketAuth,
  'sync:pull': SyncPullPayload,
  'sync:push': SyncPushPayload,
  heartbeat: HeartbeatPayload,
} as const;

/** The payload schema of every event the server emits. */
export const ServerEventPayloads = {
  authenticated: AuthenticatedPayload,
  auth_error: AuthErrorPayload,
  changes: ChangesEvent,
  contact_created: ContactEventPayload,
  contact_updated: ContactEventPayload,
  contact_deleted: ContactEventPayload,
  server_shutdown: ServerShutdownPayload,
} as const;

/** Events the server emits. */
export interface ServerToClientEvents {
  authenticated: (payload: AuthenticatedPayload) => void;
  auth_error: (payload: AuthErrorPayload) => void;
  changes: (payload: ChangesEvent) => void;
  contact_created: (payload: ContactEventPayload) => void;
  contact_updated: (payload: ContactEventPayload) => void;
  contact_deleted: (payload: ContactEventPayload) => void;
  server_shutdown: (payload: ServerShutdownPayload) => void;
}

/** Events a client sends; every one with an acknowledgement. */
export interface ClientToServerEvents {
  authenticate: (payload: SocketAuth, ack?: Ack<AuthenticatedPayload>) => void;
  'sync:pull': (payload: SyncPullPayload, ack: Ack<Delta>) => void;
  /** The same body and answer as POST /api/sync. */
  'sync:push': (payload: SyncPushPayload, ack: Ack<PushResult>) => void;
  heartbeat: (payload: HeartbeatPayload, ack?: Ack<HeartbeatAck>) => void;
}
