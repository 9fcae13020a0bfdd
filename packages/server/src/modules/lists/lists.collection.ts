import { CategoryCreate, CategoryUpdate, ItemCreate, ItemUpdate, SpaceCreate, SpaceUpdate, type Collaborator } from '@fieldsync/protocol/lists';
import type { Change } from '@fieldsync/protocol/sync';
import type { AppliedChange, CollectionDef, Denial, FieldDef, HookResult, HookTx, WriteContext } from '../../sync/collections.js';
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

/** The scope of lists: a space, whose members are its owner and collaborators. */
export const SPACE_SCOPE = 'space';

const hidden: Denial = { code: 'not_found', message: 'No such space' };
const viewersCannotWrite: Denial = { code: 'forbidden', message: 'Viewers cannot write' };

/** Members of a space write its categories and items; viewers read; others see nothing. */
const authorizeInSpace = (_op: string, _record: Record<string, unknown>, ctx: WriteContext & { role?: string }) => {
  if (!ctx.role) return hidden;
  return WRITERS.has(ctx.role) ? undefined : viewersCannotWrite;
};

const collaboratorsOf = (record: Record<string, unknown> | undefined): Collaborator[] =>
  Array.isArray(record?.collaborators) ? (record.collaborators as Collaborator[]) : [];

/** The members a space grants: its owner and collaborators (a later entry for a user wins). */
function membersOf(space: Record<string, unknown>): Map<string, string> {
  const members = new Map<string, string>();
  for (const c of collaboratorsOf(space)) members.set(c.userId, c.role);
  members.set(space.ownerId as string, 'owner');
  return members;
}

/**
 * After spaces are written: the space's members follow its owner and collaborators (the sync
 * core writes the grants and revokes); deleting a space tombstones its categories and items,
 * and its members stay members, so their devices receive the tombstones.
 */
async function afterSpacesWritten(tx: HookTx, applied: AppliedChange[], ctx: WriteContext): Promise<HookResult> {
  const result: Required<HookResult> = { changes: [], userChanges: [], membership: [] };
  for (const change of applied) {
    const spaceId = change.id;
    if (change.op === 'delete') {
      result.changes.push(...(await tombstoneChildren(tx, spaceId, ctx)));
      continue;
    }
    const out = await tx.setMembers(SPACE_SCOPE, spaceId, membersOf(change.after), { created: change.op === 'create' });
    result.userChanges.push(...(out.userChanges ?? []));
    result.membership.push(...(out.membership ?? []));
  }
  return result;
}

/** Tombstones the live categories and items of a deleted space, each at a new version. */
async function tombstoneChildren(tx: HookTx, spaceId: string, ctx: WriteContext): Promise<Change[]> {
  const changes: Change[] = [];
  const children = await tx.query<{ collection: string; id: string }>(
    `SELECT 'categories' AS collection, id FROM categories WHERE tenant_id = $2 AND space_id = $1 AND NOT is_deleted
     UNION ALL SELECT 'items', id FROM items WHERE tenant_id = $2 AND space_id = $1 AND NOT is_deleted ORDER BY 1, 2`,
    [spaceId, ctx.tenantId],
  );
  for (const [table, wireSql] of [
    ['categories', CATEGORY_WIRE_SQL],
    ['items', ITEM_WIRE_SQL],
  ] as const) {
    const rows = children.rows.filter((c) => c.collection === table).map((c) => ({ id: c.id, version: tx.nextVersion(table) }));
    if (rows.length === 0) continue;
    const { rows: written } = await tx.query<{ id: string; data: Record<string, unknown> }>(
      `UPDATE ${table} r SET is_deleted = true, version = v.version, updated_at = now()
         FROM jsonb_to_recordset($1::jsonb) AS v(id uuid, version bigint) WHERE r.id = v.id AND r.tenant_id = $2
       RETURNING r.id, ${wireSql} AS data`,
      [JSON.stringify(rows), ctx.tenantId],
    );
    const data = new Map(written.map((w) => [w.id, w.data]));
    for (const row of rows) changes.push({ collection: table, op: 'delete', id: row.id, version: row.version, data: data.get(row.id)! });
    await tx.query(
      `INSERT INTO audit_log (tenant_id, collection, record_id, version, action, changed_fields, changes, user_id, agent_code, device_id)
       SELECT $1, $2, v.id, v.version, 'delete', ARRAY['isDeleted'], '{"isDeleted":{"from":false,"to":true}}'::jsonb, $3, $4, $5
         FROM jsonb_to_recordset($6::jsonb) AS v(id uuid, version bigint)`,
      [ctx.tenantId, table, ctx.userId, ctx.agentCode, ctx.deviceId, JSON.stringify(rows)],
    );
  }
  return changes;
}

/** Spaces: visible to the owner and collaborators; the owner alone shares and deletes. */
export const spacesCollection: CollectionDef = {
  name: 'spaces',
  aliases: ['space'],
  table: 'spaces',
  wireSql: SPACE_WIRE_SQL,
  scope: { kind: SPACE_SCOPE, field: 'id', column: 'id', creatorRole: 'owner' },
  write: {
    fields: { ownerId: { column: 'owner_id', type: 'uuid' }, name: text('name'), ...display, collaborators: { column: 'collaborators', type: 'jsonb' } },
    createSchema: SpaceCreate,
    updateSchema: SpaceUpdate,
    operations: ['create', 'update', 'delete'],
    defaults: { ...displayDefaults, collaborators: [] },
    prepare: (op, fields, _before, ctx) => (op === 'create' ? { ...fields, ownerId: ctx.userId } : fields),
    authorize(op, _record, ctx, fields) {
      if (op === 'create') return undefined;
      if (!ctx.role) return hidden;
      if (op === 'delete' && ctx.role !== 'owner') return { code: 'forbidden', message: 'Only the owner deletes a space' };
      if ('collaborators' in fields && ctx.role !== 'owner') return { code: 'forbidden', message: 'Only the owner shares a space' };
      return WRITERS.has(ctx.role) ? undefined : viewersCannotWrite;
    },
    afterWrite: afterSpacesWritten,
  },
};

export const categoriesCollection: CollectionDef = {
  name: 'categories',
  aliases: ['category'],
  table: 'categories',
  wireSql: CATEGORY_WIRE_SQL,
  scope: { kind: SPACE_SCOPE, field: 'spaceId', column: 'space_id' },
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
  scope: { kind: SPACE_SCOPE, field: 'spaceId', column: 'space_id' },
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
