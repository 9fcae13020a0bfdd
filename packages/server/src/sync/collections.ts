import type { TSchema } from 'typebox';
import type { Queryable } from '../db/db.js';
import type { Change } from '@fieldsync/protocol/sync';

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
   * Who may see a record: `tenant` means every user of the tenant; `space` means the members
   * of the record's space (`spaceColumn`; for the spaces table itself, its `id`).
   */
  scope: 'tenant' | 'space';
  /** For `space` scope: the column naming the record's space. */
  spaceColumn?: string;
  /** How the push engine writes this collection; absent for read-only collections. */
  write?: WriteDef;
}

/** A persisted field: its wire name maps to a column of a SQL type. */
export interface FieldDef {
  column: string;
  type: 'text' | 'boolean' | 'double precision' | 'jsonb' | 'timestamptz' | 'uuid';
}

/** Who writes, as the push engine's hooks see it. */
export interface WriteContext {
  tenantId: string;
  userId: string;
  agentCode: string;
  deviceId: string;
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

/** Versioned extra changes a hook wrote (cascades), and user-targeted scope changes. */
export interface HookResult {
  changes: Change[];
  /** Changes only some users may see now (grants and revokes), by user id. */
  userChanges?: { userId: string; change: Change }[];
  /** Users whose set of visible spaces changed (the gateway re-reads their rooms). */
  membership?: { userId: string; spaceId: string; member: boolean }[];
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
  /** References by id that may also be given by local id within the device's batches. */
  refs?: readonly { field: string; localField: string; collection: string }[];
  /** Normalises client fields (phones to E.164); throws AppError for a bad value. */
  normalise?(fields: Record<string, unknown>): Record<string, unknown>;
  /** Server-set fields of a change (creator, completion stamps). */
  prepare?(op: 'create' | 'update', fields: Record<string, unknown>, before: Record<string, unknown> | undefined, ctx: WriteContext): Record<string, unknown>;
  /**
   * Who may write a record; `undefined` allows, a string is the per-change error. Called with
   * the space role the user holds (undefined when not a member) for `space` collections.
   */
  authorize?(op: 'create' | 'update' | 'delete', record: Record<string, unknown>, ctx: WriteContext & { role?: string }, fields: Record<string, unknown>): string | undefined;
  /** Domain events to emit beside `changes` for the applied changes (contacts: contact_created…). */
  events?(applied: AppliedChange[], ctx: WriteContext): { name: string; payload: unknown }[];
  /** Side effects inside the write transaction, after the records are written. */
  afterWrite?(tx: Queryable & { nextVersion(): number }, applied: AppliedChange[], ctx: WriteContext): Promise<HookResult>;
}

export class CollectionRegistry {
  private readonly byName = new Map<string, CollectionDef>();
  private readonly ordered: CollectionDef[] = [];

  register(def: CollectionDef): void {
    const names = [def.name, ...def.aliases];
    // Names reach SQL literals and JSON text unescaped (pull.ts): identifiers only.
    const bad = names.find((name) => !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name));
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
}
