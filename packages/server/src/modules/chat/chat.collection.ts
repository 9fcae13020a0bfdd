import { ConversationCreate, ConversationUpdate, MessageCreate, MessageEdit } from '@fieldsync/protocol/chat';
import type { Queryable } from '../../db/db.js';
import { AppError } from '../../errors.js';
import { derivedUuid } from '../../lib/hash.js';
import type { AppliedChange, CollectionDef, Denial, FieldDef, HookResult, HookTx, WriteContext } from '../../sync/collections.js';
import { audienceKey } from '../../sync/scopes.js';
import { isoSql } from '../contacts/contacts.collection.js';

/** The scope of chat: a conversation, whose members are its participants. */
export const CONVERSATION_SCOPE = 'conversation';

const base = `'id', r.id, 'version', r.version, 'isDeleted', r.is_deleted, 'createdAt', ${isoSql('r.created_at')}, 'updatedAt', ${isoSql('r.updated_at')}`;

/** A directory entry as every user of the tenant sees it (no email, no presence: REST adds those). */
export const USER_WIRE_SQL = `json_build_object(${base}, 'name', r.name, 'agentCode', r.agent_code, 'role', r.role, 'avatarFileId', r.avatar_file_id)`;

export const CONVERSATION_WIRE_SQL = `json_build_object(${base}, 'type', r.type, 'title', r.title, 'participants', r.participants,
  'admins', r.admins, 'createdBy', r.created_by)`;

/**
 * A message; a deleted one is a tombstone without content or attachments. Attachments carry
 * the file's name, type, size and url, read from the files table.
 */
export const MESSAGE_WIRE_SQL = `json_build_object(${base}, 'conversationId', r.conversation_id, 'senderId', r.sender_id,
  'clientMessageId', r.client_message_id, 'content', CASE WHEN r.is_deleted THEN '' ELSE r.content END, 'type', r.type,
  'attachments', CASE WHEN r.is_deleted OR jsonb_array_length(r.attachments) = 0 THEN '[]'::json ELSE (
    SELECT coalesce(json_agg(json_build_object('fileId', f.id, 'filename', f.filename, 'contentType', f.content_type,
             'size', f.size, 'url', '/api/files/' || f.id) ORDER BY a.n), '[]'::json)
      FROM jsonb_array_elements(r.attachments) WITH ORDINALITY AS a(value, n)
      JOIN files f ON f.tenant_id = r.tenant_id AND f.id = (a.value->>'fileId')::uuid) END,
  'readBy', r.read_by, 'deliveredTo', r.delivered_to, 'editedAt', ${isoSql('r.edited_at')})`;

/** The team directory: tenant-wide and read-only for devices (the server writes it). */
export const usersCollection: CollectionDef = {
  name: 'users',
  aliases: ['user'],
  table: 'users',
  wireSql: USER_WIRE_SQL,
  scope: { kind: 'tenant' },
};

const hidden: Denial = { code: 'not_found', message: 'No such conversation' };
const uniq = (ids: unknown): string[] => [...new Set(Array.isArray(ids) ? (ids as string[]) : [])];

/** The members of a conversation, by role: a group's admins are `admin`, everyone else `member`. */
export function membersOf(conversation: Record<string, unknown>): Map<string, string> {
  const admins = new Set(conversation.type === 'group' ? uniq(conversation.admins) : []);
  return new Map(uniq(conversation.participants).map((u) => [u, admins.has(u) ? 'admin' : 'member']));
}

/** Active users of the tenant among `ids` (who may be a participant). */
async function activeUsers(tx: Queryable, tenantId: string, ids: string[]): Promise<Set<string>> {
  const { rows } = await tx.query<{ id: string }>('SELECT id FROM users WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND is_active', [tenantId, ids]);
  return new Set(rows.map((r) => r.id));
}

/** The private conversation of a pair has one id, whoever creates it. */
const pairId = (tenantId: string, a: string, b: string) => derivedUuid('conversation', tenantId, ...[a, b].sort());

/**
 * After conversations are written: their participants become the members of the conversation
 * scope (the sync core grants a new participant the history and revokes it from one who left).
 */
async function afterConversationsWritten(tx: HookTx, applied: AppliedChange[]): Promise<HookResult> {
  const result: Required<HookResult> = { changes: [], userChanges: [], membership: [] };
  for (const change of applied) {
    const out = await tx.setMembers(CONVERSATION_SCOPE, change.id, membersOf(change.after), { created: change.op === 'create' });
    result.userChanges.push(...(out.userChanges ?? []));
    result.membership.push(...(out.membership ?? []));
  }
  return result;
}

/**
 * Conversations: private ones (the creator and one other user, one per pair) and groups (a
 * title, participants, admins). Visible to their participants only; group admins change a
 * group; anyone may leave one.
 */
export const conversationsCollection: CollectionDef = {
  name: 'conversations',
  aliases: ['conversation'],
  table: 'conversations',
  wireSql: CONVERSATION_WIRE_SQL,
  scope: { kind: CONVERSATION_SCOPE, field: 'id', column: 'id', creatorRole: 'admin' },
  write: {
    fields: {
      type: { column: 'type', type: 'text' },
      title: { column: 'title', type: 'text' },
      participants: { column: 'participants', type: 'jsonb' },
      admins: { column: 'admins', type: 'jsonb' },
      createdBy: { column: 'created_by', type: 'uuid', audit: false },
    },
    createSchema: ConversationCreate,
    updateSchema: ConversationUpdate,
    operations: ['create', 'update'],
    defaults: { title: null, admins: [] },
    external: [
      { field: 'participants', what: 'an active user of this organisation', existing: (tx, tenantId, ids) => activeUsers(tx, tenantId, ids) },
      { field: 'admins', what: 'an active user of this organisation', existing: (tx, tenantId, ids) => activeUsers(tx, tenantId, ids) },
    ],
    identityWins: true,
    identity(fields, writer) {
      if (fields.type !== 'private' || !writer.userId) return undefined;
      const others = uniq(fields.participants).filter((u) => u !== writer.userId);
      return others.length === 1 ? pairId(writer.tenantId, writer.userId, others[0]) : undefined;
    },
    normalise(fields) {
      if (fields.type === 'private') {
        if (fields.title !== undefined && fields.title !== null) throw new AppError('VALIDATION_FAILED', 'title: a private conversation has none');
        if (fields.admins !== undefined) throw new AppError('VALIDATION_FAILED', 'admins: a private conversation has none');
      }
      if (fields.type === 'group' && (typeof fields.title !== 'string' || fields.title.length === 0)) {
        throw new AppError('VALIDATION_FAILED', 'title: a group needs a title');
      }
      return fields;
    },
    prepare(op, fields, before, ctx) {
      if (op === 'create') {
        const participants = uniq([ctx.userId, ...uniq(fields.participants)]);
        const admins = fields.type === 'group' ? uniq([ctx.userId, ...uniq(fields.admins)]) : [];
        return { ...fields, participants, admins, createdBy: ctx.userId };
      }
      // A participant who goes stops being an admin.
      const participants = fields.participants === undefined ? uniq(before?.participants) : uniq(fields.participants);
      const admins = uniq(fields.admins ?? before?.admins).filter((u) => participants.includes(u));
      return { ...fields, ...(fields.participants === undefined ? {} : { participants }), admins };
    },
    authorize(op, record, ctx, fields) {
      if (op === 'create') {
        const participants = uniq(record.participants);
        if (record.type === 'private' && participants.length !== 2) {
          return { code: 'invalid', message: 'participants: a private conversation is between its creator and one other user' };
        }
        const stray = uniq(record.admins).find((u) => !participants.includes(u));
        if (stray) return { code: 'invalid', message: `admins: ${stray} is not a participant` };
        return undefined;
      }
      if (!ctx.role) return hidden;
      if (op === 'delete') return { code: 'forbidden', message: 'Conversations are not deleted; participants leave' };
      if (record.type === 'private') return { code: 'forbidden', message: 'A private conversation cannot be changed' };
      if (ctx.role === 'admin') {
        const participants = fields.participants === undefined ? uniq(record.participants) : uniq(fields.participants);
        const stray = uniq(fields.admins).find((u) => !participants.includes(u));
        return stray ? { code: 'invalid', message: `admins: ${stray} is not a participant` } : undefined;
      }
      // A member may only leave: the participants without them, nothing else.
      const leaving =
        Object.keys(fields).length === 1 &&
        Array.isArray(fields.participants) &&
        !uniq(fields.participants).includes(ctx.userId!) &&
        uniq(record.participants).filter((u) => u !== ctx.userId).every((u) => uniq(fields.participants).includes(u)) &&
        uniq(fields.participants).every((u) => uniq(record.participants).includes(u));
      return leaving ? undefined : { code: 'forbidden', message: 'Only group admins change a group (anyone may leave it)' };
    },
    afterWrite: afterConversationsWritten,
  },
};

/** Files the writer uploaded, ready, in the tenant: what a message may attach. */
async function ownFiles(tx: Queryable, tenantId: string, ids: string[], writer: { userId?: string }): Promise<Set<string>> {
  if (!writer.userId) return new Set();
  const { rows } = await tx.query<{ id: string }>(
    "SELECT id FROM files WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND owner_id = $3 AND status = 'ready'",
    [tenantId, ids, writer.userId],
  );
  return new Set(rows.map((r) => r.id));
}

/** The rules of a message's content and attachments (the schema has their shapes). */
function checkMessage(fields: Record<string, unknown>): void {
  const blank = typeof fields.content !== 'string' || fields.content.trim().length === 0;
  if ('clientMessageId' in fields) {
    const type = fields.type ?? 'text';
    const attachments = Array.isArray(fields.attachments) ? fields.attachments : [];
    if (type === 'text' && blank) throw new AppError('VALIDATION_FAILED', 'content: a text message needs content');
    if (type === 'text' && attachments.length > 0) throw new AppError('VALIDATION_FAILED', 'attachments: only image and file messages carry attachments');
    if (type !== 'text' && attachments.length === 0) throw new AppError('VALIDATION_FAILED', `attachments: a ${String(type)} message needs at least one`);
  } else if ('content' in fields && blank) {
    throw new AppError('VALIDATION_FAILED', 'content: an edit needs content');
  }
}

/**
 * Messages of a conversation: sent by a participant (idempotent on their clientMessageId),
 * edited by their sender, deleted (a tombstone) by their sender or a group admin.
 */
export const messagesCollection: CollectionDef = {
  name: 'messages',
  aliases: ['message'],
  table: 'messages',
  wireSql: MESSAGE_WIRE_SQL,
  scope: { kind: CONVERSATION_SCOPE, field: 'conversationId', column: 'conversation_id' },
  write: {
    fields: {
      conversationId: { column: 'conversation_id', type: 'uuid' },
      senderId: { column: 'sender_id', type: 'uuid', audit: false },
      clientMessageId: { column: 'client_message_id', type: 'text' },
      // Chat stays between its participants: no content in the audit log (a deleted message keeps none).
      content: { column: 'content', type: 'text', audit: false },
      type: { column: 'type', type: 'text' },
      attachments: { column: 'attachments', type: 'jsonb', audit: false },
      readBy: { column: 'read_by', type: 'jsonb', audit: false },
      deliveredTo: { column: 'delivered_to', type: 'jsonb', audit: false },
      editedAt: { column: 'edited_at', type: 'timestamptz' },
    } satisfies Record<string, FieldDef>,
    createSchema: MessageCreate,
    updateSchema: MessageEdit,
    operations: ['create', 'update', 'delete'],
    defaults: { content: '', type: 'text', attachments: [], readBy: [], deliveredTo: [], editedAt: null },
    refs: [{ field: 'conversationId', localField: 'conversationLocalId', collection: 'conversations' }],
    external: [
      {
        field: 'attachments',
        what: 'a file you uploaded',
        existing: ownFiles,
        idsOf: (value) => (Array.isArray(value) ? value.map((a) => (a as { fileId?: unknown }).fileId).filter((id): id is string => typeof id === 'string') : []),
      },
    ],
    identity: (fields, writer) =>
      writer.userId && typeof fields.clientMessageId === 'string' ? derivedUuid('message', writer.tenantId, writer.userId, fields.clientMessageId) : undefined,
    normalise(fields) {
      checkMessage(fields);
      return fields;
    },
    prepare(op, fields, _before, ctx) {
      if (op === 'create') return { ...fields, senderId: ctx.userId, readBy: [], deliveredTo: [] };
      return { ...fields, editedAt: new Date(ctx.now).toISOString() };
    },
    authorize(op, record, ctx) {
      if (!ctx.role) return hidden;
      if (op === 'create') return undefined;
      if (record.isDeleted) return { code: 'not_found', message: 'No such message' };
      const own = record.senderId === ctx.userId;
      if (op === 'update') return own ? undefined : { code: 'forbidden', message: 'Only the sender edits a message' };
      return own || ctx.role === 'admin' ? undefined : { code: 'forbidden', message: 'Only the sender or a group admin deletes a message' };
    },
    events: (applied) =>
      applied
        .filter((c) => c.op === 'create')
        .map((c) => ({
          name: 'receive_message',
          payload: { message: c.after },
          to: { audience: audienceKey(CONVERSATION_SCOPE, c.after.conversationId as string) },
          // Every socket of the participants but the one it was sent on (the sender's other devices too).
          skip: 'socket' as const,
        })),
    async afterWrite(tx, applied, ctx) {
      const created = applied.filter((c) => c.op === 'create');
      if (created.length > 0) {
        await tx.query('UPDATE conversations SET last_activity_at = now() WHERE tenant_id = $1 AND id = ANY($2::uuid[])', [
          ctx.tenantId,
          [...new Set(created.map((c) => c.after.conversationId as string))],
        ]);
      }
      // A deleted message keeps no content: the tombstone is all that stays.
      const deleted = applied.filter((c) => c.op === 'delete').map((c) => c.id);
      if (deleted.length > 0) {
        await tx.query("UPDATE messages SET content = '', attachments = '[]'::jsonb WHERE tenant_id = $1 AND id = ANY($2::uuid[])", [ctx.tenantId, deleted]);
      }
      return { changes: [] };
    },
  },
};
