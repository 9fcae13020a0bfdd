import type { TSchema } from 'typebox';
import type { Queryable } from '../db/db.js';
import type { Change } from '@fieldsync/protocol/sync';
import type { CommitEmit } from './feed.js';

/**
 * The registry of synced collections. A domain module describes its collection once (table,
 * wire projection, scope, writable fields); the pull engine and the push engine read it from
 * here and know nothing else about the domain.
 */
export interface CollectionDef {
  /** Wire name, plural: `contacts`. */
  name: string;
  /** Other names accepted on the wire (the seed's singular forms). */
  aliases: string[];
  /** Table; it has tenant_id, id, version, is_deleted and a (tenant_id, version) index. */
  table: string;
  /** SQL expression over alias `r` that builds the record's wire object (camelCase). */
  wireSql: string;
  /**
   * SQL expression over alias `r` that reads the wire object as JSON text the database keeps
   * (a generated column), when the collection keeps one: the pull concatenates it as it is
   * instead of building every record it returns. Without it, `(wireSql)::text`.
   */
  wireText?: string;
  /** Who may see a record (see `Scope`). */
  scope: Scope;
  /** How the push engine writes this collection; absent for read-only collections. */
  write?: WriteDef;
}

/**
 * Who may see a record of a collection.
 *
 * - `{ kind: 'tenant' }`: every user of the tenant.
 * - `{ kind: 'user', field, column }`: the one user the record names (an owner-scoped
 *   collection); no membership rows.
 * - any other kind (`conversation`, `team`, ...): the members of the scope the record names,
 *   as kept in `scope_members` (tenant, kind, scope id, user, role). The scope's own record
 *   (a conversation) names itself: `field: 'id'`.
 *
 * A record's audience key is `kind:scopeId` (null for tenant-wide): the feed and the socket
 * rooms address changes by it.
 */
export type Scope =
  | { kind: 'tenant'; field?: undefined; column?: undefined }
  | {
      kind: string;
      /** The wire field naming the record's scope id (`id` for the scope's own record). */
      field: string;
      /** Its column. */
      column: string;
      /** The role a user holds in a scope whose own record they create in this batch (an owner, say). */
      creatorRole?: string;
    };

/** SQL over alias `r`: the record's wire object as JSON text (stored when the collection keeps it). */
export const wireTextOf = (def: Pick<CollectionDef, 'wireSql' | 'wireText'>) => def.wireText ?? `(${def.wireSql})::text`;

/** The audience key of a scoped record, or null for a tenant-wide one. */
export function audienceOf(def: Pick<CollectionDef, 'scope'>, id: string, record: Record<string, unknown>): string | null {
  const { kind, field } = def.scope;
  if (kind === 'tenant' || field === undefined) return null;
  const scopeId = field === 'id' ? id : record[field];
  return typeof scopeId === 'string' ? `${kind}:${scopeId}` : null;
}

/** A persisted field: its wire name maps to a column of a SQL type. */
export interface FieldDef {
  column: string;
  type: 'text' | 'boolean' | 'double precision' | 'jsonb' | 'timestamptz' | 'uuid';
  /** False: left out of the audit entry's changes (the entry records it already: the writer's agent). */
  audit?: false;
}

/** Who writes, as the push engine's hooks see it. */
export interface WriteContext {
  tenantId: string;
  /** The writing user; none for the server's own writes. */
  userId?: string;
  agentCode?: string;
  /** The writing device, when known. */
  deviceId?: string;
  /** The writing socket, when the write came over one. */
  socketId?: string;
  /** The receipt time of the push (ms). */
  now: number;
}

/** One record change the engine applied in this transaction. */
export interface AppliedChange {
  id: string;
  op: 'create' | 'update' | 'delete';
  before: Record<string, unknown> | undefined;
  after: Record<string, unknown>;
}

/** A user joined or left a scope (`audience` is its key, `kind:id`). */
export interface MembershipChange {
  userId: string;
  audience: string;
  member: boolean;
}

/** Versioned extra changes a hook wrote (cascades), and user-targeted scope changes. */
export interface HookResult {
  changes: Change[];
  /** Changes only some users may see now (grants and revokes), by user id. */
  userChanges?: { userId: string; change: Change }[];
  /** Users whose set of scopes changed (the gateway updates their sockets). */
  membership?: MembershipChange[];
}

/** What a hook may use inside the write transaction. */
export interface HookTx extends Queryable {
  /** The next version of the tenant, for a change of `collection`; every record change takes exactly one. */
  nextVersion(collection: string): number;
  /**
   * Makes `members` (user id -> role) the members of scope `kind:scopeId`, writing a grant or
   * revoke per record of the scope for each user who gained or lost it (`created`: the scope is
   * new, so its records reach members by their own versions and no grants are written).
   */
  setMembers(kind: string, scopeId: string, members: Map<string, string>, opts?: { created?: boolean }): Promise<HookResult>;
}

export interface WriteDef {
  /** Every persisted wire field except id, version, isDeleted, createdAt, updatedAt. */
  fields: Record<string, FieldDef>;
  /** The body of a create (client-writable fields), validated per change. */
  createSchema: TSchema;
  /** The body of an update: the same fields, all optional. */
  updateSchema: TSchema;
  /** Operations devices may push (call sessions are create-only). */
  operations: readonly ('create' | 'update' | 'delete')[];
  /** Wire values of fields a create does not set. */
  defaults: Record<string, unknown>;
  /** Fields unique among the live records of a tenant (contacts: phonePrimary). */
  unique?: readonly string[];
  /**
   * A `unique` field that names the record a create means (an external id: call sessions'
   * `callSessionId`): a create whose value is taken answers the existing record (status
   * `duplicate`, its id) instead of a DUPLICATE rejection, so re-sending is harmless.
   */
  idempotent?: string;
  /**
   * Fields naming something outside the synced collections (a contact's photo file, a
   * conversation's participants, a message's attachments), or a record by another key than its
   * id (a project by its external id): `existing` answers which of the named ids the writer may
   * name, once per batch, in the write transaction (`tx`: on PGlite the only connection);
   * another is the change's VALIDATION_FAILED. `idsOf` reads the ids of a field's value
   * (default: the string, or the strings of an array).
   */
  external?: readonly ExternalRef[];
  /** References by id that may also be given by local id within the device's batches. */
  refs?: readonly { field: string; localField: string; collection: string }[];
  /**
   * The id of a create, derived from what identifies the record (a message: its sender and
   * clientMessageId; a private conversation: its pair), or undefined for a server-made id. A
   * create of something that exists already is then answered with the stored record
   * (`duplicate`, nothing written), when the writer may see it.
   */
  identity?(fields: Record<string, unknown>, writer: { tenantId: string; userId?: string }): string | undefined;
  /**
   * The derived id replaces an id the client sent (one private conversation per pair: the ack's
   * serverId names it); otherwise a client's own id is kept and identity applies to creates
   * without one.
   */
  identityWins?: boolean;
  /** Normalises client fields (phones to E.164); throws AppError for a bad value. */
  normalise?(fields: Record<string, unknown>): Record<string, unknown>;
  /** Server-set fields of a change (creator, completion stamps). */
  prepare?(op: 'create' | 'update', fields: Record<string, unknown>, before: Record<string, unknown> | undefined, ctx: WriteContext): Record<string, unknown>;
  /**
   * Who may write a record: `undefined` allows, else the per-change rejection. Called with the
   * role the user holds in the record's scope (undefined when not a member) for scoped
   * collections.
   */
  authorize?(op: 'create' | 'update' | 'delete', record: Record<string, unknown>, ctx: WriteContext & { role?: string }, fields: Record<string, unknown>): Denial | undefined;
  /** Domain events to emit beside `changes` for the applied changes (contacts: contact_created…). */
  events?(applied: AppliedChange[], ctx: WriteContext): CommitEmit[];
  /** Side effects inside the write transaction, after the records are written. */
  afterWrite?(tx: HookTx, applied: AppliedChange[], ctx: WriteContext): Promise<HookResult>;
}

/** A field naming things outside the synced collections (see `WriteDef.external`). */
export interface ExternalRef {
  field: string;
  /** What an id must name, for the error: "an uploaded file of this organisation". */
  what: string;
  existing(tx: Queryable, tenantId: string, ids: string[], writer: { userId?: string }): Promise<Set<string>>;
  idsOf?(value: unknown): string[];
}

/** The ids a field's value names: the string, or the strings of an array. */
export function externalIds(ref: ExternalRef, value: unknown): string[] {
  if (ref.idsOf) return ref.idsOf(value);
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/**
 * Why a write is refused: `not_found` hides the record (no access), `forbidden` says so,
 * `invalid` names a rule of the record's values the schema cannot say (a private chat's pair).
 */
export interface Denial {
  code: 'not_found' | 'forbidden' | 'invalid';
  message: string;
}

export class CollectionRegistry {
  private readonly byName = new Map<string, CollectionDef>();
  private readonly ordered: CollectionDef[] = [];

  register(def: CollectionDef): void {
    const names = [def.name, ...def.aliases];
    // Names reach SQL literals and JSON text unescaped (pull.ts): identifiers only.
    const bad = [...names, def.scope.kind].find((name) => !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name));
    if (bad !== undefined) throw new Error(`collection name ${JSON.stringify(bad)} is not an identifier`);
    // All names checked before any is taken: a refused definition leaves no name behind.
    for (const name of names) {
      if (this.byName.has(name) || names.indexOf(name) !== names.lastIndexOf(name)) throw new Error(`collection name ${name} registered twice`);
    }
    for (const name of names) this.byName.set(name, def);
    this.ordered.push(def);
  }

  /** The collection a wire name (plural or singular) means, or undefined. */
  resolve(name: string): CollectionDef | undefined {
    return this.byName.get(name);
  }

  all(): readonly CollectionDef[] {
    return this.ordered;
  }

  /** The collections whose records belong to scopes of `kind`, in registration order. */
  inScope(kind: string): readonly (CollectionDef & { scope: Exclude<Scope, { kind: 'tenant' }> })[] {
    return this.ordered.filter((d): d is CollectionDef & { scope: Exclude<Scope, { kind: 'tenant' }> } => d.scope.kind === kind);
  }
}
