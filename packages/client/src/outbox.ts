import type { PushChange } from '@fieldsync/protocol/sync';
import type { OutboxEntry } from './types.js';

/** A random UUID (v4) from the platform's crypto: record ids and change ids. */
export const newId = (): string => globalThis.crypto.randomUUID();

/** The wire form of a queued change (`POST /api/sync` `changes[i]`). */
export function toWire(entry: OutboxEntry): PushChange {
  const change: PushChange = {
    changeId: entry.changeId,
    id: entry.id,
    entityType: entry.collection,
    operation: entry.operation,
    timestamp: entry.timestamp,
  };
  if (entry.baseVersion !== undefined) change.baseVersion = entry.baseVersion;
  if (entry.operation !== 'delete') change.data = entry.data;
  return change;
}

/**
 * The `Idempotency-Key` of a push body: its SHA-256. A retry of the same body (the answer was
 * lost) is replayed by the server instead of run again; a different body can never collide
 * with it, so a key is never "reused with another body" (422).
 */
export async function idempotencyKey(body: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
  return `fs1-${Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}
