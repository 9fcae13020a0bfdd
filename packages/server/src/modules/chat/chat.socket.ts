import { MarkPayload, SendMessagePayload, TypingPayload, type MarkPayload as Mark, type Message, type SendMessagePayload as Send, type TypingPayload as Typing } from '@fieldsync/protocol/chat';
import { AppError } from '../../errors.js';
import { compileBodyValidator } from '../../lib/validation.js';
import type { Gateway } from '../../realtime/gateway.js';
import { audienceKey } from '../../sync/scopes.js';
import { CONVERSATION_SCOPE } from './chat.collection.js';
import type { Presence } from './chat.presence.js';
import type { ChatService } from './chat.service.js';

const checkSend = compileBodyValidator<Send>(SendMessagePayload);
const checkTyping = compileBodyValidator<Typing>(TypingPayload);
const checkMark = compileBodyValidator<Mark>(MarkPayload);

/**
 * Chat on the socket (SPEC §8): `send_message` (acknowledged with the message; the sending
 * socket also gets `message_sent`, every other socket of the participants `receive_message`
 * through the commit), `typing` relayed to the other participants, `mark_read` and
 * `mark_delivered`, presence on a user's first and last socket, and delivered receipts when
 * `receive_message` reaches a recipient's socket.
 */
export function mountChatSocket(deps: { gateway: Gateway; chat: ChatService; presence: Presence }): void {
  const { gateway, chat, presence } = deps;

  gateway.handle('send_message', {
    check: checkSend,
    async handle(ctx, { conversationId, ...input }) {
      const { message } = await chat.send({ ...ctx.principal, socketId: ctx.socketId }, conversationId, input);
      ctx.emit('message_sent', { message });
      return { message };
    },
  });

  gateway.handle('typing', {
    check: checkTyping,
    async handle(ctx, { conversationId, isTyping }) {
      const audience = audienceKey(CONVERSATION_SCOPE, conversationId);
      // The socket's scopes say whether its user takes part: no database round trip per keystroke.
      if (!gateway.holds(ctx.socketId, audience)) throw new AppError('NOT_FOUND', 'Conversation not found');
      const { tenantId, userId } = ctx.principal;
      gateway.relay({ tenantId, name: 'typing', payload: { conversationId, userId, isTyping }, to: { audience }, exceptUserId: userId });
      return {};
    },
  });

  for (const [event, read] of [
    ['mark_read', true],
    ['mark_delivered', false],
  ] as const) {
    gateway.handle(event, {
      check: checkMark,
      handle: (ctx, { conversationId, upToMessageId }) => {
        const sender = { ...ctx.principal, socketId: ctx.socketId };
        return read ? chat.markRead(sender, conversationId, upToMessageId) : chat.markDelivered(sender, conversationId, upToMessageId);
      },
    });
  }

  // A message reaching a recipient's socket is delivered to them.
  gateway.onReached('receive_message', (principal, payload) => {
    const { message } = payload as { message: Message };
    chat.reached(principal.tenantId, principal.userId, message);
  });

  gateway.onLifecycle({
    admitted: (principal, socketId) => void presence.connected(principal.tenantId, principal.userId, socketId),
    gone: (principal, socketId) => void presence.disconnected(principal.tenantId, principal.userId, socketId),
  });
}
