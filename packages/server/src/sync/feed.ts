import { EventEmitter } from 'node:events';
import type { Change } from '@fieldsync/protocol/sync';
import type { MembershipChange } from './collections.js';

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
  origin: { userId?: string; agentCode?: string; deviceId?: string };
  /** Domain events to emit beside `changes` (e.g. contact_created). */
  events?: { name: string; payload: unknown }[];
}

/**
 * The in-process feed of committed changes. Services publish after commit; the Socket.IO
 * gateway subscribes. Transport-free so services and tests need no socket server.
 */
export class ChangeFeed {
  private readonly emitter = new EventEmitter();

  publish(event: CommitEvent): void {
    if (event.changes.length === 0 && !event.events?.length && !event.userChanges?.length) return;
    this.emitter.emit('commit', event);
  }

  subscribe(listener: (event: CommitEvent) => void): () => void {
    this.emitter.on('commit', listener);
    return () => this.emitter.off('commit', listener);
  }
}
