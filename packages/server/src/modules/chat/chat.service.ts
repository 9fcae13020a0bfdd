import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ConversationCreate, ConversationSummary, Message, MessagePage, MessageSend, ProfileUpdate, TeamMember } from '@fieldsync/protocol/chat';
import type { Db, Queryable } from '../../db/db.js';
import { AppError, notFound } from '../../errors.js';
import { isUuid } from '../../lib/values.js';
import type { PushEngine } from '../../sync/push.js';
import type { ServerTx, ServerWrites } from '../../sync/server-writes.js';
import { isManager, type Principal } from '../auth/principal.js';
import { isoSql } from '../contacts/contacts.collection.js';
import { CONVERSATION_SCOPE, CONVERSATION_WIRE_SQL, MESSAGE_WIRE_SQL, USER_WIRE_SQL } from './chat.collection.js';
import type { Presence } from './chat.presence.js';

/** Who calls: over HTTP or a socket. */
export type Caller = Pick<Principal, 'tenantId' | 'userId' | 'agentCode' | 'role' | 'deviceId'>;
/** Who sends: a caller, and the socket a message came over (it gets `message_sent`, not `receive_message`). */
export type Sender = Caller & { socketId?: string };

export interface ChatService {
  directory(p: Caller, search?: string): Promise<TeamMember[]>;
  me(p: Caller): Promise<TeamMember>;
  updateMe(p: Caller, patch: ProfileUpdate): Promise<TeamMember>;

  createConversation(p: Caller, input: ConversationCreate): Promise<{ conversation: ConversationSummary; created: boolean }>;
  conversations(p: Caller, query: { limit?: number; before?: string }): Promise<ConversationSummary[]>;
  conversation(p: Caller, id: string): Promise<ConversationSummary>;
  rename(p: Caller, id: string, title: string): Promise<ConversationSummary>;
  addParticipants(p: Caller, id: string, userIds: string[]): Promise<ConversationSummary>;
  removeParticipant(p: Caller, id: string, userId: string): Promise<void>;

  send(p: Sender, conversationId: string, input: MessageSend): Promise<{ message: Message; created: boolean }>;
  messages(p: Caller, conversationId: string, query: { before?: string; after?: string; limit?: number }): Promise<MessagePage>;
  edit(p: Caller, messageId: string, content: string): Promise<Message>;
  remove(p: Caller, messageId: string): Promise<void>;
  /** Marks every message of the conversation up to `upToMessageId` read (and so delivered) by the caller. */
  markRead(p: Sender, conversationId: string, upToMessageId: string): Promise<{ marked: number }>;
  /** Marks every message up to `upToMessageId` delivered to the caller (a device that caught up by a pull says so). */
  markDelivered(p: Sender, conversationId: string, upToMessageId: string): Promise<{ marked: number }>;
  /** A message reached a socket of `userId` (the gateway saw `receive_message` go out): delivered, in the next batch. */
  reached(tenantId: string, userId: string, message: { id: string; conversationId: string; senderId: string }): void;
  /** Whether `userId` may read file `fileId` as an attachment: true (a participant), false (attached elsewhere only), undefined (not attached). */
  attachmentVisible(tenantId: string, userId: string, fileId: string): Promise<boolean | undefined>;
  /** Writes the delivered receipts waiting (also on a timer). */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

/** The most messages a page holds. */
const MAX_PAGE = 200;
/** How long delivered receipts gather before they are written together. */
const RECEIPT_FLUSH_MS = 250;

/** A directory entry with what REST adds to the synced one: the email (shown or not later) and when the user was last seen. */
const MEMBER_WIRE_SQL = `((${USER_WIRE_SQL})::jsonb || jsonb_build_object('email', r.email, 'lastSeenAt', ${isoSql('r.last_seen_at')}))`;

/** $1 tenant, $2 user: the conversations the user takes part in. */
const MEMBER_SQL = `EXISTS (SELECT 1 FROM scope_members m WHERE m.tenant_id = $1 AND m.user_id = $2::uuid
  AND m.kind = '${CONVERSATION_SCOPE}' AND m.scope_id = r.id)`;

/**
 * A conversation as its participant sees it: the record, its latest activity, its latest
 * message and the caller's unread count (messages of others after the caller's read mark).
 */
const SUMMARY_SQL = `SELECT (${CONVERSATION_WIRE_SQL})::jsonb || jsonb_build_object(
    'lastActivityAt', ${isoSql('r.last_activity_at')},
    'lastMessage', last.data, 'unreadCount', unread.n) AS data, r.last_activity_at, r.id
  FROM conversations r
  CROSS JOIN LATERAL (SELECT r.id AS cid, coalesce((SELECT k.read_seq FROM chat_marks k WHERE k.tenant_id = $1
    AND k.conversation_id = r.id AND k.user_id = $2::uuid), 0) AS read_seq) c
  LEFT JOIN LATERAL (SELECT ${MESSAGE_WIRE_SQL} AS data FROM messages r
    WHERE r.tenant_id = $1 AND r.conversation_id = c.cid ORDER BY r.seq DESC LIMIT 1) last ON true
  CROSS JOIN LATERAL (SELECT count(*)::int AS n FROM messages x WHERE x.tenant_id = $1 AND x.conversation_id = c.cid
    AND x.seq > c.read_seq AND x.sender_id <> $2::uuid AND NOT x.is_deleted) unread
  WHERE r.tenant_id = $1 AND NOT r.is_deleted AND ${MEMBER_SQL}`;

/**
 * Team chat (SPEC §8) over the sync core: conversations and messages are written by the push
 * engine (REST, socket and a device's push share every rule), receipts by the server's own
 * versioned writes; reads filter by the conversation scope, so a non-participant (an admin
 * too) finds nothing.
 */
export function createChatService(deps: {
  db: Db;
  push: PushEngine;
  writes: ServerWrites;
  presence: Presence;
  logger: Logger;
}): ChatService {
  const { db } = deps;
  const log = deps.logger.child({ component: 'chat' });

  /** Hands one change to the push engine as `p`; a rejection becomes its error. */
  const write = async (p: Sender, change: Record<string, unknown>, expectedVersion?: number) => {
    const caller = { tenantId: p.tenantId, userId: p.userId, agentCode: p.agentCode, deviceId: p.deviceId, socketId: p.socketId };
    const { results } = await deps.push.apply(caller, [{ changeId: randomUUID(), timestamp: Date.now(), ...change }], { receipts: false, expectedVersion });
    const { ack, details } = results[0];
    if (!ack.success) throw new AppError(ack.code ?? 'VALIDATION_FAILED', ack.error ?? 'Rejected', details);
    return { id: ack.serverId as string, duplicate: ack.status === 'duplicate', version: ack.version };
  };

  const summary = async (q: Queryable, p: Caller, id: string) => {
    if (!isUuid(id)) return undefined;
    const { rows } = await q.query<{ data: ConversationSummary }>(`${SUMMARY_SQL} AND r.id = $3`, [p.tenantId, p.userId, id]);
    return rows[0]?.data;
  };
  const mustSee = async (p: Caller, id: string) => {
    const found = await summary(db, p, id);
    if (!found) throw notFound('Conversation');
    return found;
  };

  /** A message of a conversation the caller takes part in. */
  const findMessage = async (p: Caller, id: string) => {
    if (!isUuid(id)) return undefined;
    const { rows } = await db.query<{ data: Message; seq: string }>(
      `SELECT ${MESSAGE_WIRE_SQL} AS data, r.seq FROM messages r WHERE r.tenant_id = $1 AND r.id = $3
         AND r.conversation_id IN (SELECT m.scope_id FROM scope_members m WHERE m.tenant_id = $1 AND m.user_id = $2::uuid AND m.kind = '${CONVERSATION_SCOPE}')`,
      [p.tenantId, p.userId, id],
    );
    return rows[0] && { message: rows[0].data, seq: Number(rows[0].seq) };
  };
  const mustFindMessage = async (p: Caller, id: string) => {
    const found = await findMessage(p, id);
    if (!found) throw notFound('Message');
    return found;
  };

  /** The seq of message `id` in conversation `conversationId`, else a 404 naming `field`. */
  const seqIn = async (p: Caller, conversationId: string, id: string, field: string) => {
    const found = await findMessage(p, id);
    if (!found || found.message.conversationId !== conversationId) {
      throw new AppError('NOT_FOUND', `${field}: no message ${id} in this conversation`, [{ field, message: 'names no message of this conversation' }]);
    }
    return found.seq;
  };

  const member = async (q: Queryable, p: Caller, userId: string): Promise<TeamMember | undefined> => {
    const { rows } = await q.query<{ data: TeamMember & { email: string | null; lastSeenAt: string | null } }>(
      `SELECT ${MEMBER_WIRE_SQL} AS data FROM users r WHERE r.tenant_id = $1 AND r.id = $2`,
      [p.tenantId, userId],
    );
    return rows[0] && (await present(p, [rows[0].data]))[0];
  };

  /** Adds presence to directory entries, and the email where the caller may see it. */
  const present = async (p: Caller, users: (TeamMember & { email: string | null; lastSeenAt: string | null })[]): Promise<TeamMember[]> => {
    const online = await deps.presence.online(p.tenantId);
    return users.map(({ lastSeenAt, email, ...user }) => ({
      ...user,
      status: online.has(user.id) ? 'online' : 'offline',
      lastSeen: lastSeenAt,
      ...(isManager(p) || user.id === p.userId ? { email } : {}),
    }));
  };

  // Delivered receipts gather here (tenant -> "messageId userId" -> message) and are written together.
  const pending = new Map<string, Map<string, { messageId: string; userId: string }>>();
  let flushing: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  /**
   * Adds `userId` to readBy (when `read`) and deliveredTo of the messages of a conversation up
   * to seq `upTo` sent by others, re-versions them, and tells each sender once per message.
   */
  const mark = async (tx: ServerTx, p: { tenantId: string; userId: string }, conversationId: string, upTo: number, read: boolean) => {
    const { rows } = await tx.query<{ id: string; sender_id: string; newly_delivered: boolean; newly_read: boolean }>(
      `WITH target AS (
         SELECT id, NOT (delivered_to ? $3) AS newly_delivered, ${read ? 'NOT (read_by ? $3)' : 'false'} AS newly_read
           FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq <= $4 AND sender_id <> $3::uuid AND NOT is_deleted
            AND (NOT (delivered_to ? $3) ${read ? 'OR NOT (read_by ? $3)' : ''})
           ORDER BY seq FOR UPDATE)
       UPDATE messages m SET
         delivered_to = CASE WHEN t.newly_delivered THEN m.delivered_to || to_jsonb($3::text) ELSE m.delivered_to END,
         read_by = CASE WHEN t.newly_read THEN m.read_by || to_jsonb($3::text) ELSE m.read_by END
         FROM target t WHERE m.id = t.id
       RETURNING m.id, m.sender_id, t.newly_delivered, t.newly_read`,
      [p.tenantId, conversationId, p.userId, upTo],
    );
    if (read) {
      await tx.query(
        `INSERT INTO chat_marks (tenant_id, conversation_id, user_id, read_seq) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, conversation_id, user_id) DO UPDATE SET read_seq = GREATEST(chat_marks.read_seq, EXCLUDED.read_seq)`,
        [p.tenantId, conversationId, p.userId, upTo],
      );
    }
    await tx.touch('messages', rows.map((r) => r.id));
    for (const r of rows) {
      for (const [status, newly] of [
        ['delivered', r.newly_delivered],
        ['read', r.newly_read],
      ] as const) {
        if (!newly) continue;
        tx.emit({
          name: 'message_status',
          payload: { messageId: r.id, conversationId, userId: p.userId, status },
          to: { users: [r.sender_id] },
          skip: 'socket',
        });
      }
    }
    return rows.length;
  };

  const markUpTo = async (p: Sender, conversationId: string, upToMessageId: string, read: boolean) => {
    await mustSee(p, conversationId);
    const upTo = await seqIn(p, conversationId, upToMessageId, 'upToMessageId');
    const marked = await deps.writes.write(p.tenantId, { userId: p.userId, deviceId: p.deviceId, socketId: p.socketId }, (tx) =>
      mark(tx, p, conversationId, upTo, read),
    );
    return { marked };
  };

  /** Writes the gathered delivered receipts, one tenant write per tenant. */
  const flushPending = async () => {
    const batches = [...pending];
    pending.clear();
    for (const [tenantId, receipts] of batches) {
      const list = [...receipts.values()];
      try {
        await deps.writes.write(tenantId, {}, async (tx) => {
          const { rows } = await tx.query<{ id: string; conversation_id: string; sender_id: string; user_id: string }>(
            `WITH r AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(message_id uuid, user_id text)),
             target AS (
               SELECT m.id, jsonb_agg(DISTINCT r.user_id) AS users FROM messages m JOIN r ON r.message_id = m.id
                WHERE m.tenant_id = $1 AND NOT m.is_deleted AND m.sender_id::text <> r.user_id AND NOT (m.delivered_to ? r.user_id)
                GROUP BY m.id),
             updated AS (
               UPDATE messages m SET delivered_to = m.delivered_to || t.users FROM target t WHERE m.tenant_id = $1 AND m.id = t.id
               RETURNING m.id, m.conversation_id, m.sender_id, t.users)
             SELECT u.id, u.conversation_id, u.sender_id, x.user_id FROM updated u CROSS JOIN LATERAL jsonb_array_elements_text(u.users) AS x(user_id)`,
            [tenantId, JSON.stringify(list.map((r) => ({ message_id: r.messageId, user_id: r.userId })))],
          );
          await tx.touch('messages', [...new Set(rows.map((r) => r.id))]);
          for (const r of rows) {
            tx.emit({
              name: 'message_status',
              payload: { messageId: r.id, conversationId: r.conversation_id, userId: r.user_id, status: 'delivered' },
              to: { users: [r.sender_id] },
              skip: 'socket',
            });
          }
        });
      } catch (error) {
        log.warn({ err: error, tenantId, receipts: list.length }, 'delivered receipts not written; they come again with the next read or fetch');
      }
    }
  };

  const queueDelivered = (tenantId: string, userId: string, messageIds: string[]) => {
    if (messageIds.length === 0) return;
    let receipts = pending.get(tenantId);
    if (!receipts) pending.set(tenantId, (receipts = new Map()));
    for (const messageId of messageIds) receipts.set(`${messageId} ${userId}`, { messageId, userId });
    timer ??= setTimeout(() => {
      timer = undefined;
      flushing = flushing.then(flushPending);
    }, RECEIPT_FLUSH_MS);
  };

  return {
    async directory(p, search) {
      const params: unknown[] = [p.tenantId];
      let filter = '';
      if (search && search.trim()) {
        params.push(`%${search.trim().replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
        filter = `AND (r.name ILIKE $2 OR r.agent_code ILIKE $2 ${isManager(p) ? 'OR r.email ILIKE $2' : ''})`;
      }
      const { rows } = await db.query<{ data: TeamMember & { email: string | null; lastSeenAt: string | null } }>(
        `SELECT ${MEMBER_WIRE_SQL} AS data
           FROM users r WHERE r.tenant_id = $1 AND r.is_active ${filter} ORDER BY lower(r.name), r.id LIMIT 1000`,
        params,
      );
      return present(p, rows.map((r) => r.data));
    },

    async me(p) {
      const found = await member(db, p, p.userId);
      if (!found) throw notFound('User');
      return found;
    },

    async updateMe(p, patch) {
      if (patch.avatarFileId) {
        const { rows } = await db.query(
          "SELECT 1 FROM files WHERE tenant_id = $1 AND id = $2 AND status = 'ready' AND owner_id = $3 AND content_type LIKE 'image/%'",
          [p.tenantId, patch.avatarFileId, p.userId],
        );
        if (rows.length === 0) {
          throw new AppError('VALIDATION_FAILED', 'avatarFileId: does not name an image you uploaded', [
            { field: 'avatarFileId', message: 'does not name an image you uploaded' },
          ]);
        }
      }
      await deps.writes.write(p.tenantId, { userId: p.userId, deviceId: p.deviceId }, async (tx) => {
        await tx.query(
          `UPDATE users SET name = coalesce($3, name), avatar_file_id = CASE WHEN $4::boolean THEN $5::uuid ELSE avatar_file_id END, updated_at = now()
            WHERE tenant_id = $1 AND id = $2`,
          [p.tenantId, p.userId, patch.name ?? null, 'avatarFileId' in patch, patch.avatarFileId ?? null],
        );
        await tx.touch('users', [p.userId]);
      });
      return this.me(p);
    },

    async createConversation(p, input) {
      const { id, duplicate } = await write(p, { entityType: 'conversations', operation: 'create', data: input });
      return { conversation: await mustSee(p, id), created: !duplicate };
    },

    async conversations(p, query) {
      const limit = Math.min(query.limit ?? 50, MAX_PAGE);
      const params: unknown[] = [p.tenantId, p.userId];
      let cursor = '';
      if (query.before) {
        if (isUuid(query.before)) {
          const at = await summary(db, p, query.before);
          if (!at) throw new AppError('VALIDATION_FAILED', 'before: names no conversation of yours', [{ field: 'before', message: 'names no conversation of yours' }]);
          params.push(at.lastActivityAt, at.id);
          cursor = 'AND (r.last_activity_at, r.id) < ($3::timestamptz, $4::uuid)';
        } else {
          params.push(query.before);
          cursor = 'AND r.last_activity_at < $3::timestamptz';
        }
      }
      params.push(limit);
      const { rows } = await db.query<{ data: ConversationSummary }>(
        `${SUMMARY_SQL} ${cursor} ORDER BY r.last_activity_at DESC, r.id DESC LIMIT $${params.length}`,
        params,
      );
      return rows.map((r) => r.data);
    },

    conversation: mustSee,

    async rename(p, id, title) {
      await mustSee(p, id);
      await write(p, { entityType: 'conversations', operation: 'update', id, data: { title } });
      return mustSee(p, id);
    },

    async addParticipants(p, id, userIds) {
      // Read, then write at the version read: a concurrent change of the group makes it read again.
      for (let attempt = 0; ; attempt++) {
        const current = await mustSee(p, id);
        const participants = [...new Set([...current.participants, ...userIds])];
        try {
          await write(p, { entityType: 'conversations', operation: 'update', id, data: { participants } }, current.version);
          return mustSee(p, id);
        } catch (error) {
          if (!(error instanceof AppError) || error.code !== 'VERSION_MISMATCH' || attempt >= 4) throw error;
        }
      }
    },

    async removeParticipant(p, id, userId) {
      for (let attempt = 0; ; attempt++) {
        const current = await mustSee(p, id);
        if (!current.participants.includes(userId)) throw notFound('Participant');
        const participants = current.participants.filter((u) => u !== userId);
        try {
          await write(p, { entityType: 'conversations', operation: 'update', id, data: { participants } }, current.version);
          return;
        } catch (error) {
          if (!(error instanceof AppError) || error.code !== 'VERSION_MISMATCH' || attempt >= 4) throw error;
        }
      }
    },

    async send(p, conversationId, input) {
      // A re-send is the stored message: by its derived id (the engine answers `duplicate`), or,
      // when a device pushed it first under an id of its own, by the unique index's refusal.
      const stored = async () => {
        const { rows } = await db.query<{ id: string }>('SELECT id FROM messages WHERE tenant_id = $1 AND sender_id = $2 AND client_message_id = $3', [
          p.tenantId,
          p.userId,
          input.clientMessageId,
        ]);
        return rows[0] && { message: (await mustFindMessage(p, rows[0].id)).message, created: false };
      };
      try {
        const { id, duplicate } = await write(p, { entityType: 'messages', operation: 'create', data: { ...input, conversationId } });
        return { message: (await mustFindMessage(p, id)).message, created: !duplicate };
      } catch (error) {
        // The unique index (sender, clientMessageId) kept the earlier one: that is the answer.
        const raced = await stored();
        if (raced) return raced;
        throw error;
      }
    },

    async messages(p, conversationId, query) {
      await mustSee(p, conversationId);
      const limit = Math.min(query.limit ?? 50, MAX_PAGE);
      const after = query.after ? await seqIn(p, conversationId, query.after, 'after') : undefined;
      const before = query.before ? await seqIn(p, conversationId, query.before, 'before') : undefined;
      const params: unknown[] = [p.tenantId, conversationId, limit + 1];
      const range: string[] = [];
      if (after !== undefined) range.push(`r.seq > $${params.push(after)}`);
      if (before !== undefined) range.push(`r.seq < $${params.push(before)}`);
      // From `after` forwards; otherwise the newest (before the cursor) backwards, then oldest first.
      const forwards = after !== undefined;
      const { rows } = await db.query<{ data: Message }>(
        `SELECT ${MESSAGE_WIRE_SQL} AS data FROM messages r WHERE r.tenant_id = $1 AND r.conversation_id = $2
           ${range.map((c) => `AND ${c}`).join(' ')} ORDER BY r.seq ${forwards ? 'ASC' : 'DESC'} LIMIT $3`,
        params,
      );
      const hasMore = rows.length > limit;
      const page = rows.slice(0, limit).map((r) => r.data);
      if (!forwards) page.reverse();
      // Fetched is received: what others sent and the caller had not, is delivered now.
      queueDelivered(
        p.tenantId,
        p.userId,
        page.filter((m) => m.senderId !== p.userId && !m.isDeleted && !m.deliveredTo.includes(p.userId)).map((m) => m.id),
      );
      return { messages: page, hasMore };
    },

    async edit(p, messageId, content) {
      const found = await mustFindMessage(p, messageId);
      if (found.message.isDeleted) throw notFound('Message');
      await write(p, { entityType: 'messages', operation: 'update', id: messageId, data: { content } });
      return (await mustFindMessage(p, messageId)).message;
    },

    async remove(p, messageId) {
      const found = await mustFindMessage(p, messageId);
      if (found.message.isDeleted) throw notFound('Message');
      await write(p, { entityType: 'messages', operation: 'delete', id: messageId });
    },

    markRead: (p, conversationId, upTo) => markUpTo(p, conversationId, upTo, true),
    markDelivered: (p, conversationId, upTo) => markUpTo(p, conversationId, upTo, false),

    reached(tenantId, userId, message) {
      if (message.senderId !== userId) queueDelivered(tenantId, userId, [message.id]);
    },

    async attachmentVisible(tenantId, userId, fileId) {
      const { rows } = await db.query<{ attached: boolean; visible: boolean }>(
        `SELECT count(*) > 0 AS attached,
                coalesce(bool_or(m.conversation_id IN (SELECT s.scope_id FROM scope_members s
                  WHERE s.tenant_id = $1 AND s.user_id = $2 AND s.kind = '${CONVERSATION_SCOPE}')), false) AS visible
           FROM messages m WHERE m.tenant_id = $1 AND m.attachments @> jsonb_build_array(jsonb_build_object('fileId', $3::text))`,
        [tenantId, userId, fileId],
      );
      if (!rows[0]?.attached) return undefined;
      if (rows[0].visible) return true;
      // Whoever uploaded it may always read it.
      const owner = await db.query('SELECT 1 FROM files WHERE tenant_id = $1 AND id = $2 AND owner_id = $3', [tenantId, fileId, userId]);
      return owner.rows.length > 0;
    },

    async flush() {
      clearTimeout(timer);
      timer = undefined;
      flushing = flushing.then(flushPending);
      await flushing;
    },

    async stop() {
      await this.flush();
    },
  };
}

