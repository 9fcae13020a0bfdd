/**
 * Conflict policies (SPEC §4), as pure functions: no I/O, no clock. The push engine gathers
 * the facts (the server's record, which fields it changed since the client's base version and
 * when) and applies the decision.
 */

export const STRATEGIES = [
  'server_wins',
  'client_wins',
  'most_recent_wins',
  'field_merge',
  'preserve_escalation',
  'manual',
] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface Policy {
  strategy: Strategy;
  /** preserve_escalation: each field's values from lowest to highest; they never move down. */
  monotonic?: Record<string, unknown[]>;
}

export const DEFAULT_POLICY: Policy = { strategy: 'most_recent_wins' };

/** How far ahead of the server a client clock may be before its timestamps are clamped. */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** A client timestamp more than MAX_CLOCK_SKEW_MS in the future counts as the receipt time. */
export function clampTimestamp(clientMs: number, receivedMs: number): number {
  return clientMs > receivedMs + MAX_CLOCK_SKEW_MS ? receivedMs : clientMs;
}

/** One change the server made to a record after the client's base version. */
export interface ServerEdit {
  fields: readonly string[];
  /** When the change was made (client timestamp of a push, receipt time of a REST edit). */
  at: number;
}

/** What the server knows about the record a client change targets. */
export interface ServerSide {
  record: Record<string, unknown>;
  isDeleted: boolean;
  /** The server's changes after the client's base version, any order. */
  editsSinceBase: readonly ServerEdit[];
}

export interface ClientSide {
  operation: 'update' | 'delete';
  /** The fields an update sets (empty for a delete). */
  fields: Record<string, unknown>;
  /** Clamped timestamp of the change. */
  at: number;
}

export type Outcome = 'client_applied' | 'server_kept' | 'merged' | 'pending_review';

/**
 * What to do with a client change: `apply` holds the fields to write (or `delete`), `null` to
 * write nothing. `conflict` is set when the server had changed what the client touches since
 * its base version.
 */
export interface Decision {
  apply: Record<string, unknown> | 'delete' | null;
  conflict: boolean;
  outcome: Outcome;
}

const lastSet = (edits: readonly ServerEdit[]): Map<string, number> => {
  const times = new Map<string, number>();
  for (const edit of edits) {
    for (const field of edit.fields) times.set(field, Math.max(times.get(field) ?? -Infinity, edit.at));
  }
  return times;
};

const rank = (values: readonly unknown[], value: unknown) => values.findIndex((v) => v === value);

/** preserve_escalation: a monotonic field keeps the higher of the server's and the client's value. */
export function escalate(policy: Policy, server: Record<string, unknown>, fields: Record<string, unknown>): Record<string, unknown> {
  if (policy.strategy !== 'preserve_escalation' || !policy.monotonic) return fields;
  const out = { ...fields };
  for (const [field, order] of Object.entries(policy.monotonic)) {
    if (!(field in out)) continue;
    if (rank(order, out[field]) < rank(order, server[field])) delete out[field];
  }
  return out;
}

/** Decides a client update or delete against the server's state under `policy`. */
export function decide(policy: Policy, server: ServerSide, client: ClientSide): Decision {
  const times = lastSet(server.editsSinceBase);

  if (server.isDeleted) {
    // Deletes are final: an edit of a deleted record never resurrects it.
    if (client.operation === 'delete') return { apply: null, conflict: false, outcome: 'server_kept' };
    return policy.strategy === 'manual'
      ? { apply: null, conflict: true, outcome: 'pending_review' }
      : { apply: null, conflict: true, outcome: 'server_kept' };
  }

  if (client.operation === 'delete') {
    if (times.size === 0) return { apply: 'delete', conflict: false, outcome: 'client_applied' };
    switch (policy.strategy) {
      case 'manual':
        return { apply: null, conflict: true, outcome: 'pending_review' };
      case 'server_wins':
        return { apply: null, conflict: true, outcome: 'server_kept' };
      default:
        // A delete wins over concurrent edits whatever the timestamps: since an edit never
        // resurrects a deleted record, this is the only rule that converges in any order.
        return { apply: 'delete', conflict: true, outcome: 'client_applied' };
    }
  }

  const wanted = escalate(policy, server.record, client.fields);
  const overlapping = Object.keys(client.fields).filter((f) => times.has(f));
  if (overlapping.length === 0) {
    return { apply: wanted, conflict: false, outcome: Object.keys(wanted).length === Object.keys(client.fields).length ? 'client_applied' : 'merged' };
  }

  switch (policy.strategy) {
    case 'manual':
      return { apply: null, conflict: true, outcome: 'pending_review' };
    case 'server_wins':
      return { apply: null, conflict: true, outcome: 'server_kept' };
    case 'client_wins':
      return { apply: client.fields, conflict: true, outcome: 'client_applied' };
    default: {
      // most_recent_wins, field_merge, preserve_escalation: field by field, the later change
      // wins; fields the server did not touch since the base are the client's. On equal
      // timestamps the server's value stays. A monotonic field that escalate() kept is a
      // raise, and a raise always applies: the highest value wins whatever the order.
      const apply: Record<string, unknown> = {};
      for (const [field, value] of Object.entries(wanted)) {
        const serverAt = times.get(field);
        const monotonic = policy.strategy === 'preserve_escalation' && policy.monotonic?.[field] !== undefined;
        if (serverAt === undefined || client.at > serverAt || monotonic) apply[field] = value;
      }
      const applied = Object.keys(apply).length;
      const outcome: Outcome =
        applied === Object.keys(client.fields).length ? 'client_applied' : applied === 0 ? 'server_kept' : 'merged';
      return { apply: applied === 0 ? null : apply, conflict: true, outcome };
    }
  }
}
