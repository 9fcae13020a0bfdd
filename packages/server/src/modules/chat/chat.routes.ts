import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  ChatQuery,
  ConversationCreate,
  ConversationSummary,
  MarkUpTo,
  Message,
  MessageEdit,
  MessagePage,
  MessageSend,
  ProfileUpdate,
  TeamMember,
} from '@fieldsync/protocol/chat';
import { Ok, Uuid } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { IdParams, responses, secured } from '../../http/schemas.js';
import type { ChatService } from './chat.service.js';

const Title = ConversationCreate.properties.title.anyOf[0];
const Rename = Type.Object({ title: Title }, { additionalProperties: false });
const AddParticipants = Type.Object(
  { userIds: Type.Array(Uuid, { minItems: 1, maxItems: 500, uniqueItems: true }) },
  { additionalProperties: false },
);
const ParticipantParams = Type.Object({ id: Type.String({ maxLength: 64 }), userId: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const Marked = Type.Object({ marked: Type.Integer({ minimum: 0, description: 'Messages newly marked' }) });

/** REST for team chat (SPEC §8): the directory, conversations, messages, receipts. */
export function chatRoutes(deps: { chat: ChatService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { chat } = deps;
    const tags = ['chat'];
    // Writes go through the push engine: its per-change codes are the answers.
    const writeErrors = ['NOT_FOUND', 'FORBIDDEN'] as const;

    app.get(
      '/api/users',
      {
        schema: {
          tags,
          ...secured,
          summary: "The team directory: the tenant's active users with presence (emails to admins and managers)",
          querystring: ChatQuery.users,
          response: responses({ 200: Ok(Type.Array(TeamMember)) }),
        },
      },
      async (request) => ({ success: true as const, data: await chat.directory(principalOf(request), request.query.search) }),
    );
    app.get(
      '/api/users/me',
      { schema: { tags, ...secured, summary: 'The caller as the directory shows them', response: responses({ 200: Ok(TeamMember) }) } },
      async (request) => ({ success: true as const, data: await chat.me(principalOf(request)) }),
    );
    app.patch(
      '/api/users/me',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Change your name or avatar (an image you uploaded, or null)',
          body: ProfileUpdate,
          response: responses({ 200: Ok(TeamMember) }, { body: true }),
        },
      },
      async (request) => ({ success: true as const, data: await chat.updateMe(principalOf(request), request.body) }),
    );

    app.post(
      '/api/conversations',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Start a conversation: 201 new; a private one that exists (from either side) is 200 with it',
          body: ConversationCreate,
          response: responses({ 200: Ok(ConversationSummary), 201: Ok(ConversationSummary) }, { body: true }),
        },
      },
      async (request, reply) => {
        const { conversation, created } = await chat.createConversation(principalOf(request), request.body);
        return reply.status(created ? 201 : 200).send({ success: true as const, data: conversation });
      },
    );
    app.get(
      '/api/conversations',
      {
        schema: {
          tags,
          ...secured,
          summary: "Your conversations, latest activity first, each with its last message and your unread count; `before` pages on",
          querystring: ChatQuery.conversations,
          response: responses({ 200: Ok(Type.Array(ConversationSummary)) }),
        },
      },
      async (request) => ({ success: true as const, data: await chat.conversations(principalOf(request), request.query) }),
    );
    app.get(
      '/api/conversations/:id',
      {
        schema: { tags, ...secured, summary: 'One of your conversations', params: IdParams, response: responses({ 200: Ok(ConversationSummary) }, { params: true, also: ['NOT_FOUND'] }) },
      },
      async (request) => ({ success: true as const, data: await chat.conversation(principalOf(request), request.params.id) }),
    );
    app.patch(
      '/api/conversations/:id',
      {
        schema: {
          tags,
          ...secured,
          summary: "Rename a group (its admins)",
          params: IdParams,
          body: Rename,
          response: responses({ 200: Ok(ConversationSummary) }, { body: true, params: true, also: writeErrors }),
        },
      },
      async (request) => ({ success: true as const, data: await chat.rename(principalOf(request), request.params.id, request.body.title) }),
    );
    app.post(
      '/api/conversations/:id/participants',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Add participants to a group (its admins); they receive its history on their next pull',
          params: IdParams,
          body: AddParticipants,
          response: responses({ 200: Ok(ConversationSummary) }, { body: true, params: true, also: [...writeErrors, 'VERSION_MISMATCH'] }),
        },
      },
      async (request) => ({ success: true as const, data: await chat.addParticipants(principalOf(request), request.params.id, request.body.userIds) }),
    );
    app.delete(
      '/api/conversations/:id/participants/:userId',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Remove a participant from a group (its admins), or leave it (yourself); their devices receive deletes for it',
          params: ParticipantParams,
          response: responses({ 204: Type.Null() }, { body: true, params: true, also: [...writeErrors, 'VERSION_MISMATCH'] }),
        },
      },
      async (request, reply) => {
        await chat.removeParticipant(principalOf(request), request.params.id, request.params.userId);
        return reply.status(204).send(null);
      },
    );

    app.post(
      '/api/conversations/:id/messages',
      {
        schema: {
          tags,
          ...secured,
          summary: "Send a message: 201 new; a re-send of your clientMessageId is 200 with the stored message (not broadcast again)",
          params: IdParams,
          body: MessageSend,
          response: responses({ 200: Ok(Message), 201: Ok(Message) }, { body: true, params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request, reply) => {
        const { message, created } = await chat.send(principalOf(request), request.params.id, request.body);
        return reply.status(created ? 201 : 200).send({ success: true as const, data: message });
      },
    );
    app.get(
      '/api/conversations/:id/messages',
      {
        schema: {
          tags,
          ...secured,
          summary: 'A page of messages, oldest first: the latest `limit`, or those before/after a message id',
          params: IdParams,
          querystring: ChatQuery.messages,
          response: responses({ 200: Ok(MessagePage) }, { params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ({ success: true as const, data: await chat.messages(principalOf(request), request.params.id, request.query) }),
    );
    for (const [path, read] of [
      ['read', true],
      ['delivered', false],
    ] as const) {
      app.post(
        `/api/conversations/:id/${path}`,
        {
          schema: {
            tags,
            ...secured,
            summary: `Mark every message up to upToMessageId ${read ? 'read (and delivered)' : 'delivered'}; senders get message_status`,
            params: IdParams,
            body: MarkUpTo,
            response: responses({ 200: Ok(Marked) }, { body: true, params: true, also: ['NOT_FOUND'] }),
          },
        },
        async (request) => {
          const p = principalOf(request);
          const data = read
            ? await chat.markRead(p, request.params.id, request.body.upToMessageId)
            : await chat.markDelivered(p, request.params.id, request.body.upToMessageId);
          return { success: true as const, data };
        },
      );
    }
    app.patch(
      '/api/messages/:id',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Edit your message',
          params: IdParams,
          body: MessageEdit,
          response: responses({ 200: Ok(Message) }, { body: true, params: true, also: writeErrors }),
        },
      },
      async (request) => ({ success: true as const, data: await chat.edit(principalOf(request), request.params.id, request.body.content) }),
    );
    app.delete(
      '/api/messages/:id',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Delete a message (yours, or any as a group admin): it stays as a tombstone without content',
          params: IdParams,
          response: responses({ 204: Type.Null() }, { body: true, params: true, also: writeErrors }),
        },
      },
      async (request, reply) => {
        await chat.remove(principalOf(request), request.params.id);
        return reply.status(204).send(null);
      },
    );
  };
}
