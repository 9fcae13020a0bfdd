import { EventEmitter } from 'node:events';
import type { Change } from '@fieldsync/protocol/sync';
import type { MembershipChange } from './collections.js';

/** Who wrote a commit. */
export interface CommitOrigin {
  userId?: string;
  agentCode?: string;
  /** The writing device: it gets no echo of the commit's changes. */
  deviceId?: string;
  /** The writing socket, when the write came over one. */
  socketId?: string;
}

/**
 * A domain event to emit beside a commit's `changes` (contact_created, receive_message…), to
 * the sockets that may receive it: every socket of the tenant (no `to`), the members of one
 * scope (`audience`, a `kind:id` key), or the sockets of some users. `skip` leaves out the
 * writer: its device (the default, as for `changes`), or only the socket it wrote on (its
 * other sockets, and all of them for a write that came over HTTP, receive the event).
 */
export interface CommitEmit {
  name: string;
  payload: unknown;
  to?: { audience: string } | { users: string[] };
  skip?: 'device' | 'socket';
  /**
   * The event only restates changes of the same commit (contacts' `contact_updated` and kin):
   * a socket that reads `changes` alone (handshake `seedEvents: false`, as the SDK's) is spared it.
   */
  restates?: boolean;
}

/** A committed write as the real-time layer sees it. */
export interface CommitEvent {
  tenantId: string;
  fromVersion: number;
  toVersion: number;
  changes: Change[];
  /**
   * Who may see each change, aligned with `changes`: null for every user of the tenant, else
   * the audience key (`kind:id`, sync/scopes.ts) of the scope whose members may see it.
   * Absent: all tenant-wide.
   */
  audience?: (string | null)[];
  /** Changes only one user may see (scope grants and revokes). */
  userChanges?: { userId: string; change: Change }[];
  /** Scope memberships this commit changed. */
  membership?: MembershipChange[];
  /** Who wrote it: the originating device gets no echo. */
  origin: CommitOrigin;
  /** Domain events to emit beside `changes`. */
  events?: CommitEmit[];
}

/**
 * The in-process feed of committed changes. Services publish after commit; the Socket.IO
 * gateway subscribes. Transport-free so services and tests need no socket server.
 */
export class ChangeFeed {
  private readonly emitter = new EventEmitter();

  publish(event: CommitEvent): void {
    if (event.changes.length === 0 && !event.events?.length && !event.userChanges?.length && !event.membership?.length) return;
    this.emitter.emit('commit', event);
  }

  subscribe(listener: (event: CommitEvent) => void): () => void {
    this.emitter.on('commit', listener);
    return () => this.emitter.off('commit', listener);
  }
}
