import type { Delta, ChangesEvent, PushBody, PushResult } from './sync.js';
import type { Contact } from './contacts.js';
import type { Heartbeat } from './devices.js';
import type { ErrorEnvelope } from './errors.js';

/** What every acknowledged socket request answers: the HTTP envelope. */
export type Ack<T> = (answer: { success: true; data: T } | ErrorEnvelope) => void;

/** Socket handshake `auth`, or the body of the `authenticate` event. */
export type SocketAuth = { token: string; deviceId?: string } | { apiKey: string; deviceId?: string; agentCode?: string };

export interface AuthenticatedPayload {
  user: { id: string; tenantId: string; agentCode: string; role: string };
  deviceId: string | null;
}

export interface ContactEventPayload {
  contact: Contact;
  version: number;
  createdBy?: string | null;
  updatedBy?: string | null;
  deletedBy?: string | null;
}

/** Events the server emits. */
export interface ServerToClientEvents {
  authenticated: (payload: AuthenticatedPayload) => void;
  auth_error: (payload: { error: string; message: string }) => void;
  changes: (payload: ChangesEvent) => void;
  contact_created: (payload: ContactEventPayload) => void;
  contact_updated: (payload: ContactEventPayload) => void;
  contact_deleted: (payload: ContactEventPayload) => void;
  /** Sent before the server closes the socket on shutdown: reconnect after `retryAfterMs`. */
  server_shutdown: (payload: { reconnect: true; retryAfterMs: number }) => void;
}

/** Events a client sends; every one with an acknowledgement. */
export interface ClientToServerEvents {
  authenticate: (payload: SocketAuth, ack?: Ack<AuthenticatedPayload>) => void;
  'sync:pull': (payload: { version: number; limit?: number; collections?: string[] }, ack: Ack<Delta>) => void;
  /** The same body and answer as POST /api/sync. */
  'sync:push': (payload: PushBody, ack: Ack<PushResult>) => void;
  heartbeat: (payload: Heartbeat, ack?: Ack<{ serverTime: string }>) => void;
}
