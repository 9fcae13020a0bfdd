import { CategoryCreate, CategoryUpdate, ItemCreate, ItemUpdate, SpaceCreate, SpaceUpdate, type Collaborator } from '@fieldsync/protocol/lists';
import type { Change } from '@fieldsync/protocol/sync';
import type { Queryable } from '../../db/db.js';
import type { AppliedChange, CollectionDef, FieldDef, HookResult, WriteContext } from '../../sync/collections.js';
import { isoSql } from '../contacts/contacts.collection.js';

const text = (column: string): FieldDef => ({ column, type: 'text' });
const display: Record<string, FieldDef> = {
  icon: text('icon'),
  color: text('color'),
  isVisible: { column: 'is_visible', type: 'boolean' },
  order: { column: 'sort_order', type: 'double precision' },
};
const displayDefaults = { icon: null, color: null, isVisible: true, order: 0 };
const base = (r = 'r') =>
  `'id', ${r}.id, 'version', ${r}.version, 'isDeleted', ${r}.is_deleted, 'createdAt', ${isoSql(`${r}.created_at`)}, 'updatedAt', ${isoSql(`${r}.updated_at`)}`;
const displaySql = `'icon', r.icon, 'color', r.color, 'isVisible', r.is_visible, 'order', r.sort_order`;

const SPACE_WIRE_SQL = `json_build_object(${base()}, 'ownerId', r.owner_id, 'name', r.name, ${displaySql}, 'collaborators', r.collaborators)`;
const CATEGORY_WIRE_SQL = `json_build_object(${base()}, 'spaceId', r.space_id, 'name', r.name, ${displaySql})`;
const ITEM_WIRE_SQL = `json_build_object(${base()}, 'spaceId', r.space_id, 'categoryId', r.category_id, 'title', r.title,
  'description', r.description, 'notes', r.notes, 'type', r.type, 'refId', r.ref_id, 'isCompleted', r.is_completed,
  'completedAt', ${isoSql('r.completed_at')}, 'completedBy', r.completed_by, 'priority', r.priority, 'order', r.sort_order,
  'tags', r.tags, 'dueDate', ${isoSql('r.due_date')})`;

const WRITERS = new Set(['owner', 'editor']);

/** Members of a space write its categories and items; viewers read; others see nothing. */
const authorizeInSpace = (_op: string, _record: Record<string, unknown>, ctx: WriteContext & { role?: string }) => {
  if (!ctx.role) return 'not found: no such space';
  return WRITERS.has(ctx.role) ? undefined : 'Viewers cannot write';
};

const collaboratorsOf = (record: Record<string, unknown> | undefined): Collaborator[] =>
  Array.isArray(record?.collaborators) ? (record.collaborators as Collaborator[]) : [];

/** The members a space grants: its owner and collaborators (a later entry for a user wins). */
function membersOf(space: Record<string, unknown> | undefined, deleted = false): Map<string, string> {
  const members = new Map<string, string>();
  if (!space || deleted) return members;
  for (const c of collaboratorsOf(space)) members.set(c.userId, c.role);
  members.set(space.ownerId as string, 'owner');
  return members;
}

async function wireOf(tx: Queryable, def: { table: string; wireSql: string }, ids: string[]): Promise<Map<string, Record<string, unknown>>> {
  if (ids.length === 0) return new Map();
  const { rows } = await tx.query<{ id: string; data: Record<string, unknown> }>(
    `SELECT r.id, ${def.wireSql} AS data FROM ${def.table} r WHERE r.id = ANY($1::uuid[])`,
    [ids],
  );
  return new Map(rows.map((r) => [r.id, r.data]));
}

/**
 * After spaces are written: keep `space_members` equal to owner + collaborators; a user who
 * gains access gets a grant per record of the space, one who loses it a revoke (each a new
 * version, see docs/sync-protocol.md "Scopes"); deleting a space tombstones its categories
 * and items.
 */
async function afterSpacesWritten(tx: Queryable & { nextVersion(): number }, applied: AppliedChange[], ctx: WriteContext): Promise<HookResult> {
  const result: Required<HookResult> = { changes: [], userChanges: [], membership: [] };
  for (const change of applied) {
    const spaceId = change.id;
    const before = change.op === 'create' ? new Map<string, string>() : membersOf(change.before, change.before?.isDeleted === true);
    const after = membersOf(change.after, false);
    // Members of a deleted space stay members, so their devices receive the tombstones.
    if (change.op === 'delete') {
      const children = await tx.query<{ collection: string; id: string }>(
        `SELECT 'categories' AS collection, id FROM categories WHERE space_id = $1 AND NOT is_deleted
         UNION ALL SELECT 'items', id FROM items WHERE space_id = $1 AND NOT is_deleted ORDER BY 1, 2`,
        [spaceId],
      );
      for (const table of ['categories', 'items'] as const) {
        const rows = children.rows.filter((c) => c.collection === table).map((c) => ({ id: c.id, version: tx.nextVersion() }));
        if (rows.length === 0) continue;
        await tx.query(
          `UPDATE ${table} t SET is_deleted = true, version = v.version, updated_at = now()
             FROM jsonb_to_recordset($1::jsonb) AS v(id uuid, version bigint) WHERE t.id = v.id`,
          [JSON.stringify(rows)],
        );
        const def = table === 'categories' ? CATEGORY_WIRE_SQL : ITEM_WIRE_SQL;
        const data = await wireOf(tx, { table, wireSql: def }, rows.map((r) => r.id));
        for (const row of rows) result.changes.push({ collection: table, op: 'delete', id: row.id, version: row.version, data: data.get(row.id)! });
        await tx.query(
          `INSERT INTO audit_log (tenant_id, collection, record_id, version, action, changed_fields, changes, user_id, agent_code, device_id)
           SELECT $1, $2, v.id, v.version, 'delete', ARRAY['isDeleted'], '{"isDeleted":{"from":false,"to":true}}'::jsonb, $3, $4, $5
             FROM jsonb_to_recordset($6::jsonb) AS v(id uuid, version bigint)`,
          [ctx.tenantId, table, ctx.userId, ctx.agentCode, ctx.deviceId, JSON.stringify(rows)],
        );
      }
      continue;
    }

    const gained = [...after.keys()].filter((u) => !before.has(u));
    const lost = [...before.keys()].filter((u) => !after.has(u));
    const changedRole = [...after.keys()].filter((u) => before.has(u) && before.get(u) !== after.get(u));
    if (gained.length + lost.length + changedRole.length === 0) continue;

    // Only users of this tenant become members; unknown ids are ignored.
    await tx.query('DELETE FROM space_members WHERE space_id = $1', [spaceId]);
    const known = await tx.query<{ id: string }>('SELECT id FROM users WHERE tenant_id = $1 AND id = ANY($2::uuid[])', [
      ctx.tenantId,
      [...after.keys()],
    ]);
    const knownIds = new Set(known.rows.map((r) => r.id));
    await tx.query(
      `INSERT INTO space_members (tenant_id, space_id, user_id, role)
       SELECT $1, $2, m.user_id, m.role FROM jsonb_to_recordset($3::jsonb) AS m(user_id uuid, role text)`,
      [ctx.tenantId, spaceId, JSON.stringify([...after].filter(([u]) => knownIds.has(u)).map(([user_id, role]) => ({ user_id, role })))],
    );
    if (change.op === 'create') {
      for (const userId of gained) if (knownIds.has(userId)) result.membership.push({ userId, spaceId, member: true });
      continue;
    }

    const granted = gained.filter((u) => knownIds.has(u));
    if (granted.length + lost.length === 0) continue;
    const records = await tx.query<{ collection: string; id: string }>(
      `SELECT 'spaces' AS collection, id FROM spaces WHERE id = $1
       UNION ALL SELECT 'categories', id FROM categories WHERE space_id = $1 AND NOT is_deleted
       UNION ALL SELECT 'items', id FROM items WHERE space_id = $1 AND NOT is_deleted ORDER BY 1, 2`,
      [spaceId],
    );
    const events: { user_id: string; collection: string; record_id: string; kind: string; version: number }[] = [];
    for (const [users, kind] of [
      [granted, 'grant'],
      [lost, 'revoke'],
    ] as const) {
      for (const userId of users) {
        result.membership.push({ userId, spaceId, member: kind === 'grant' });
        for (const r of records.rows) events.push({ user_id: userId, collection: r.collection, record_id: r.id, kind, version: tx.nextVersion() });
      }
    }
    // One scope event per user and record: the newest replaces the older ones, so the pull
    // needs no "is it the latest?" lookup, and the table cannot outgrow users x records.
    await tx.query(
      `DELETE FROM scope_events s USING jsonb_to_recordset($2::jsonb) AS e(user_id uuid, record_id uuid)
        WHERE s.tenant_id = $1 AND s.user_id = e.user_id AND s.record_id = e.record_id`,
      [ctx.tenantId, JSON.stringify(events.map(({ user_id, record_id }) => ({ user_id, record_id })))],
    );
    await tx.query(
      `INSERT INTO scope_events (tenant_id, version, user_id, collection, record_id, kind)
       SELECT $1, e.version, e.user_id, e.collection, e.record_id, e.kind
         FROM jsonb_to_recordset($2::jsonb) AS e(version bigint, user_id uuid, collection text, record_id uuid, kind text)`,
      [ctx.tenantId, JSON.stringify(events)],
    );
    const data = new Map<string, Record<string, unknown>>();
    for (const [table, wireSql] of [
      ['spaces', SPACE_WIRE_SQL],
      ['categories', CATEGORY_WIRE_SQL],
      ['items', ITEM_WIRE_SQL],
    ] as const) {
      const ids = records.rows.filter((r) => r.collection === table).map((r) => r.id);
      for (const [id, d] of await wireOf(tx, { table, wireSql }, ids)) data.set(id, d);
    }
    for (const e of events) {
      const change: Change =
        e.kind === 'grant'
          ? { collection: e.collection, op: 'upsert', id: e.record_id, version: e.version, data: data.get(e.record_id)! }
          : { collection: e.collection, op: 'delete', id: e.record_id, version: e.version, data: { id: e.record_id, isDeleted: true } };
      result.userChanges.push({ userId: e.user_id, change });
    }
  }
  return result;
}

/** Spaces: visible to the owner and collaborators; the owner alone shares and deletes. */
export const spacesCollection: CollectionDef = {
  name: 'spaces',
  aliases: ['space'],
  table: 'spaces',
  wireSql: SPACE_WIRE_SQL,
  scope: 'space',
  write: {
    fields: { ownerId: { column: 'owner_id', type: 'uuid' }, name: text('name'), ...display, collaborators: { column: 'collaborators', type: 'jsonb' } },
    createSchema: SpaceCreate,
    updateSchema: SpaceUpdate,
    operations: ['create', 'update', 'delete'],
    defaults: { ...displayDefaults, collaborators: [] },
    prepare: (op, fields, _before, ctx) => (op === 'create' ? { ...fields, ownerId: ctx.userId } : fields),
    authorize(op, record, ctx, fields) {
      if (op === 'create') return undefined;
      if (!ctx.role) return 'not found: no such space';
      if (op === 'delete' && ctx.role !== 'owner') return 'Only the owner deletes a space';
      if ('collaborators' in fields && ctx.role !== 'owner') return 'Only the owner shares a space';
      return WRITERS.has(ctx.role) ? undefined : 'Viewers cannot write';
    },
    afterWrite: afterSpacesWritten,
  },
};

export const categoriesCollection: CollectionDef = {
  name: 'categories',
  aliases: ['category'],
  table: 'categories',
  wireSql: CATEGORY_WIRE_SQL,
  scope: 'space',
  spaceColumn: 'space_id',
  write: {
    fields: { spaceId: { column: 'space_id', type: 'uuid' }, name: text('name'), ...display },
    createSchema: CategoryCreate,
    updateSchema: CategoryUpdate,
    operations: ['create', 'update', 'delete'],
    defaults: displayDefaults,
    refs: [{ field: 'spaceId', localField: 'spaceLocalId', collection: 'spaces' }],
    authorize: authorizeInSpace,
  },
};

export const itemsCollection: CollectionDef = {
  name: 'items',
  aliases: ['item'],
  table: 'items',
  wireSql: ITEM_WIRE_SQL,
  scope: 'space',
  spaceColumn: 'space_id',
  write: {
    fields: {
      spaceId: { column: 'space_id', type: 'uuid' },
      categoryId: { column: 'category_id', type: 'uuid' },
      title: text('title'),
      description: text('description'),
      notes: text('notes'),
      type: text('type'),
      refId: text('ref_id'),
      isCompleted: { column: 'is_completed', type: 'boolean' },
      completedAt: { column: 'completed_at', type: 'timestamptz' },
      completedBy: { column: 'completed_by', type: 'jsonb' },
      priority: text('priority'),
      order: { column: 'sort_order', type: 'double precision' },
      tags: { column: 'tags', type: 'jsonb' },
      dueDate: { column: 'due_date', type: 'timestamptz' },
    },
    createSchema: ItemCreate,
    updateSchema: ItemUpdate,
    operations: ['create', 'update', 'delete'],
    defaults: {
      categoryId: null,
      description: null,
      notes: null,
      type: 'custom',
      refId: null,
      isCompleted: false,
      completedAt: null,
      completedBy: null,
      priority: null,
      order: 0,
      tags: [],
      dueDate: null,
    },
    refs: [
      { field: 'spaceId', localField: 'spaceLocalId', collection: 'spaces' },
      { field: 'categoryId', localField: 'categoryLocalId', collection: 'categories' },
    ],
    // Completing stamps who and when (unless the device says when); reopening clears both.
    prepare(_op, fields, before, ctx) {
      if (fields.isCompleted === true && before?.isCompleted !== true) {
        return {
          ...fields,
          completedAt: fields.completedAt ?? new Date(ctx.now).toISOString(),
          completedBy: { userId: ctx.userId, deviceId: ctx.deviceId ?? null },
        };
      }
      if (fields.isCompleted === false && before?.isCompleted === true) return { ...fields, completedAt: null, completedBy: null };
      return fields;
    },
    authorize: authorizeInSpace,
  },
};
