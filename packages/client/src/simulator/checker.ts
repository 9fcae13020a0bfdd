/**
 * The simulator's end-of-run checks, as a pure function of what was observed: the server's
 * final state, every device's copy, and every acknowledgement devices received.
 */
import { same } from '../query.js';

/** A record as a delta pull returns it (tombstones included). */
export interface ServerRecord {
  collection: string;
  id: string;
  data: Record<string, unknown>;
}

/** One acknowledgement a device received for one of its changes (or a seed write). */
export interface AckRecord {
  device: string;
  changeId: string;
  collection: string;
  id: string;
  operation: 'create' | 'update' | 'delete';
  /** The change's client timestamp (epoch ms). */
  timestamp: number;
  data: Record<string, unknown>;
  success: boolean;
  status: string;
  version?: number;
  code?: string;
  /** The conflict outcome, when the server reported a conflict about this change. */
  outcome?: string;
}

/** A device's copy at the end of the run. */
export interface DeviceCopy {
  device: string;
  /** Whose view of the server it must equal (the agent it syncs as). */
  scope: string;
  /** Its visible records, by collection. */
  records: Record<string, Record<string, unknown>[]>;
  /** Changes still in its outbox. */
  pending: number;
  /** `collection:id` of every delete the server sent it during the run. */
  deletedSeen: string[];
  /** The changeId of every local write it made (each must have been acknowledged). */
  written: string[];
  /** How often each chat message arrived live on this device (`receive_message`), by message id. */
  liveMessages?: Record<string, number>;
}

export interface CheckInput {
  /** The server's final state as each scope (agent) pulls it from version 0. */
  server: Record<string, ServerRecord[]>;
  devices: DeviceCopy[];
  acks: AckRecord[];
  /** The conflict strategy of each collection (`most_recent_wins` when missing). */
  policies: Record<string, string>;
  /** The fields whose every write is a unique value, checked against the policy, by collection. */
  checkedFields: Record<string, string[]>;
  /** The field holding each created record's unique creation tag, by collection. */
  tagFields: Record<string, string>;
}

export type ViolationKind = 'divergent-copy' | 'lost-change' | 'lost-field' | 'duplicate' | 'resurrected-delete' | 'unsynced';

export interface Violation {
  kind: ViolationKind;
  message: string;
  device?: string;
  collection?: string;
  id?: string;
}

export interface CheckResult {
  violations: Violation[];
  stats: { devices: number; records: number; acknowledged: number; fieldsChecked: number };
}

/** Strategies under which a field ends with the value of its latest write (by client timestamp). */
const LATEST_WINS = new Set(['most_recent_wins', 'field_merge']);

const key = (collection: string, id: string) => `${collection}:${id}`;


const show = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v));

/**
 * Checks, after every device has synced:
 * - every device's copy equals the server's as its user sees it, and its outbox is empty;
 * - every local write was acknowledged; every acknowledged create exists, every acknowledged
 *   delete is deleted;
 * - every checked field holds what the policy says: under most_recent_wins/field_merge the
 *   value of the write with the latest timestamp; under other policies one of the values
 *   acknowledged writes set (never a value nobody wrote);
 * - no creation tag appears on two records (no change applied twice), on the server or a device;
 * - no record a device saw deleted is alive anywhere (no resurrection).
 */
export function checkRun(input: CheckInput): CheckResult {
  const violations: Violation[] = [];
  let fieldsChecked = 0;

  // The server's state per scope, and merged across scopes (a record is the same wherever seen).
  const serverByScope = new Map<string, Map<string, ServerRecord>>();
  const server = new Map<string, ServerRecord>();
  for (const [scope, records] of Object.entries(input.server)) {
    const map = new Map<string, ServerRecord>();
    for (const r of records) {
      map.set(key(r.collection, r.id), r);
      server.set(key(r.collection, r.id), r);
    }
    serverByScope.set(scope, map);
  }
  const alive = (r: ServerRecord | undefined) => r !== undefined && r.data.isDeleted !== true;

  // 1. Every copy equals the server's, and nothing is left unsynced.
  for (const copy of input.devices) {
    if (copy.pending > 0) violations.push({ kind: 'unsynced', device: copy.device, message: `${copy.device}: ${copy.pending} changes never reached the server` });
    const truth = serverByScope.get(copy.scope) ?? new Map<string, ServerRecord>();
    const mine = new Map<string, { collection: string; data: Record<string, unknown> }>();
    for (const [collection, records] of Object.entries(copy.records)) {
      for (const data of records) mine.set(key(collection, String(data.id)), { collection, data });
    }
    for (const [k, r] of truth) {
      if (!alive(r)) continue;
      const local = mine.get(k);
      if (!local) {
        violations.push({ kind: 'divergent-copy', device: copy.device, collection: r.collection, id: r.id, message: `${copy.device} lacks ${k}` });
      } else if (!same(local.data, r.data)) {
        violations.push({
          kind: 'divergent-copy',
          device: copy.device,
          collection: r.collection,
          id: r.id,
          message: `${copy.device} ${k} differs from the server: ${diffOf(local.data, r.data)}`,
        });
      }
    }
    for (const [k, local] of mine) {
      if (!alive(truth.get(k))) {
        violations.push({ kind: 'divergent-copy', device: copy.device, collection: local.collection, id: String(local.data.id), message: `${copy.device} has ${k}, which the server does not (or deleted)` });
      }
    }
  }

  // 2. Acknowledged changes. A replayed ack ("duplicate") carries the original result.
  const acks = new Map<string, AckRecord>();
  for (const a of input.acks) {
    const k = `${a.device}:${a.changeId}`;
    const prior = acks.get(k);
    if (!prior || (prior.status === 'duplicate' && a.status !== 'duplicate')) acks.set(k, a);
  }
  const taken = [...acks.values()].filter((a) => a.success);
  const writesOf = new Map<string, AckRecord[]>();
  for (const a of taken) {
    if (a.operation === 'delete') continue;
    const list = writesOf.get(key(a.collection, a.id));
    if (list) list.push(a);
    else writesOf.set(key(a.collection, a.id), [a]);
  }
  // Every local write was answered (accepted or refused): none vanished from an outbox.
  for (const copy of input.devices) {
    const lost = copy.written.filter((changeId) => !acks.has(`${copy.device}:${changeId}`));
    if (lost.length > 0) {
      violations.push({ kind: 'lost-change', device: copy.device, message: `${copy.device}: ${lost.length} local writes were never acknowledged (e.g. ${lost[0]})` });
    }
  }
  const rejectedCreates = new Set([...acks.values()].filter((a) => !a.success && a.operation === 'create').map((a) => key(a.collection, a.id)));

  for (const a of taken) {
    const k = key(a.collection, a.id);
    const r = server.get(k);
    if (!r) {
      violations.push({ kind: 'lost-change', device: a.device, collection: a.collection, id: a.id, message: `${a.device}'s acknowledged ${a.operation} of ${k} left no record on the server` });
      continue;
    }
    const applied = a.outcome !== 'server_kept' && a.outcome !== 'pending_review';
    if (a.operation === 'delete' && applied && alive(r)) {
      violations.push({ kind: 'resurrected-delete', device: a.device, collection: a.collection, id: a.id, message: `${a.device}'s acknowledged delete of ${k} (version ${a.version}) is alive on the server at version ${r.data.version}` });
    }
  }

  // 3. Checked fields hold what the policy says.
  for (const [k, writes] of writesOf) {
    const r = server.get(k);
    if (!alive(r)) continue;
    const collection = writes[0].collection;
    const strategy = input.policies[collection] ?? 'most_recent_wins';
    for (const field of input.checkedFields[collection] ?? []) {
      const setting = writes.filter((w) => field in w.data);
      if (setting.length === 0) continue;
      fieldsChecked++;
      const actual = r!.data[field];
      let allowed: AckRecord[];
      if (LATEST_WINS.has(strategy)) {
        const latest = Math.max(...setting.map((w) => w.timestamp));
        allowed = setting.filter((w) => w.timestamp === latest); // equal timestamps: either may stand
      } else {
        allowed = setting;
      }
      if (!allowed.some((w) => same(w.data[field], actual))) {
        const expected = allowed.map((w) => `${show(w.data[field])} (${w.device} at ${w.timestamp})`).join(' or ');
        violations.push({ kind: 'lost-field', collection, id: r!.id, message: `${k}.${field} is ${show(actual)}; ${strategy} says ${expected}` });
      }
    }
  }

  // 4. No change applied twice: a creation tag names one record, on the server and on every device.
  const tagCheck = (where: string, records: Iterable<{ collection: string; data: Record<string, unknown> }>, device?: string) => {
    const seen = new Map<string, string>();
    for (const { collection, data } of records) {
      const field = input.tagFields[collection];
      const tag = field ? data[field] : undefined;
      if (typeof tag !== 'string' || tag === '') continue;
      const other = seen.get(`${collection}:${tag}`);
      if (other && other !== data.id) {
        violations.push({ kind: 'duplicate', device, collection, id: String(data.id), message: `${where}: ${collection} ${other} and ${String(data.id)} carry the same creation tag ${tag}` });
      }
      seen.set(`${collection}:${tag}`, String(data.id));
    }
  };
  tagCheck('server', [...server.values()].map((r) => ({ collection: r.collection, data: r.data })));
  for (const copy of input.devices) {
    tagCheck(copy.device, Object.entries(copy.records).flatMap(([collection, list]) => list.map((data) => ({ collection, data }))), copy.device);
  }

  // 5. Chat: a message reaches each participant's device once. The copies above hold every
  // acknowledged message (they equal the server's, tags unique); live, none arrives twice.
  for (const copy of input.devices) {
    for (const [id, times] of Object.entries(copy.liveMessages ?? {})) {
      if (times > 1) violations.push({ kind: 'duplicate', device: copy.device, collection: 'messages', id, message: `${copy.device} received message ${id} live ${times} times` });
    }
  }

  // 6. No resurrection: what a device saw deleted stays deleted everywhere.
  const resurrected = new Set<string>();
  for (const copy of input.devices) {
    for (const k of copy.deletedSeen) {
      if (rejectedCreates.has(k) || resurrected.has(k)) continue; // a refused create undone locally is no server delete
      if (alive(server.get(k))) {
        resurrected.add(k);
        violations.push({ kind: 'resurrected-delete', device: copy.device, message: `${copy.device} saw ${k} deleted, but it is alive on the server` });
      }
    }
  }

  return {
    violations,
    stats: { devices: input.devices.length, records: server.size, acknowledged: acks.size, fieldsChecked },
  };
}

/** The first few fields in which two records differ, for a violation message. */
function diffOf(local: Record<string, unknown>, server: Record<string, unknown>): string {
  const fields = new Set([...Object.keys(local), ...Object.keys(server)]);
  const out: string[] = [];
  for (const f of fields) {
    if (!same(local[f], server[f])) out.push(`${f}: ${show(local[f])} vs ${show(server[f])}`);
  }
  return out.slice(0, 4).join('; ');
}
