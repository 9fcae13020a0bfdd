import { Type, type Static } from 'typebox';
import { Text, Uuid } from './envelope.js';

/*
 * Team chat (SPEC §8): the team directory, conversations and messages, as REST, sync and
 * socket payloads share them.
 */

const DateTime = Type.String({ format: 'date-time', maxLength: 64 });
/** A title: not blank, no NUL bytes. */
const Title = Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$' });

/** The longest message, in Unicode code points (JSON Schema's maxLength counts code points). */
export const MAX_MESSAGE_LENGTH = 10_000;
/** The most participants a group may have. */
export const MAX_PARTICIPANTS = 500;
/** The most attachments of one message. */
export const MAX_ATTACHMENTS = 10;

const UserIds = (minItems: number) => Type.Array(Uuid, { minItems, maxItems: MAX_PARTICIPANTS, uniqueItems: true });

/** A user of the team directory, as every user of the tenant sees it (and syncs it: `users`). */
export const DirectoryUser = Type.Object({
  id: Type.String(),
  name: Type.String(),
  agentCode: Type.String(),
  role: Type.String(),
  avatarFileId: Type.Union([Type.String(), Type.Null()]),
  version: Type.Integer(),
  isDeleted: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type DirectoryUser = Static<typeof DirectoryUser>;

/** A directory entry over REST: presence, and the email to admins, managers and the user. */
export const TeamMember = Type.Object({
  ...DirectoryUser.properties,
  status: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
  lastSeen: Type.Union([Type.String(), Type.Null()]),
  email: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});
export type TeamMember = Static<typeof TeamMember>;

export const ProfileUpdate = Type.Object(
  { name: Type.Optional(Title), avatarFileId: Type.Optional(Type.Union([Uuid, Type.Null()])) },
  { additionalProperties: false, minProperties: 1 },
);
export type ProfileUpdate = Static<typeof ProfileUpdate>;

export const ConversationType = Type.Union([Type.Literal('private'), Type.Literal('group')]);

/**
 * A new conversation: `private` names the other person (listing the creator too is allowed);
 * `group` has a title, participants and optional admins. The creator is always a participant
 * (and a group's admin).
 */
export const ConversationCreate = Type.Object(
  {
    type: ConversationType,
    title: Type.Optional(Type.Union([Title, Type.Null()])),
    participants: UserIds(1),
    admins: Type.Optional(UserIds(0)),
  },
  { additionalProperties: false },
);
export type ConversationCreate = Static<typeof ConversationCreate>;

/** A conversation change a device pushes: a group's title, participants or admins (group admins; anyone may leave). */
export const ConversationUpdate = Type.Object(
  { title: Type.Optional(Title), participants: Type.Optional(UserIds(0)), admins: Type.Optional(UserIds(0)) },
  { additionalProperties: false },
);
export type ConversationUpdate = Static<typeof ConversationUpdate>;

export const Conversation = Type.Object({
  id: Type.String(),
  type: ConversationType,
  title: Type.Union([Type.String(), Type.Null()]),
  participants: Type.Array(Type.String()),
  admins: Type.Array(Type.String()),
  createdBy: Type.Union([Type.String(), Type.Null()]),
  lastActivityAt: Type.String(),
  version: Type.Integer(),
  isDeleted: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type Conversation = Static<typeof Conversation>;

export const MessageType = Type.Union([Type.Literal('text'), Type.Literal('image'), Type.Literal('file')]);

export const Attachment = Type.Object({
  fileId: Type.String(),
  filename: Type.String(),
  contentType: Type.String(),
  size: Type.Integer(),
  url: Type.String(),
});
export type Attachment = Static<typeof Attachment>;

const MessageFields = {
  clientMessageId: Text(128, 1),
  /** Up to 10,000 code points; optional for image and file messages. */
  content: Type.Optional(Text(MAX_MESSAGE_LENGTH)),
  type: Type.Optional(MessageType),
  attachments: Type.Optional(Type.Array(Type.Object({ fileId: Uuid }, { additionalProperties: false }), { maxItems: MAX_ATTACHMENTS })),
};

/** A message sent over REST (the conversation is in the path). */
export const MessageSend = Type.Object(MessageFields, { additionalProperties: false });
export type MessageSend = Static<typeof MessageSend>;

/** A message pushed by a device, or sent over the socket: it names its conversation. */
export const MessageCreate = Type.Object({ conversationId: Uuid, ...MessageFields }, { additionalProperties: false });
export type MessageCreate = Static<typeof MessageCreate>;

/** As pushed: the conversation may be named by the local id of one this device created. */
export const MessagePushCreate = Type.Object(
  { ...MessageCreate.properties, conversationLocalId: Type.Optional(Text(128, 1)) },
  { additionalProperties: false },
);

/** An edit: the sender changes the content. */
export const MessageEdit = Type.Object({ content: Text(MAX_MESSAGE_LENGTH, 1) }, { additionalProperties: false });
export type MessageEdit = Static<typeof MessageEdit>;

export const Message = Type.Object({
  id: Type.String(),
  conversationId: Type.String(),
  senderId: Type.String(),
  clientMessageId: Type.String(),
  content: Type.String(),
  type: MessageType,
  attachments: Type.Array(Attachment),
  readBy: Type.Array(Type.String()),
  deliveredTo: Type.Array(Type.String()),
  editedAt: Type.Union([Type.String(), Type.Null()]),
  isDeleted: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  version: Type.Integer(),
});
export type Message = Static<typeof Message>;

/** A conversation in the caller's list: its latest message and what the caller has not read. */
export const ConversationSummary = Type.Object({
  ...Conversation.properties,
  lastMessage: Type.Union([Message, Type.Null()]),
  unreadCount: Type.Integer({ minimum: 0 }),
});
export type ConversationSummary = Static<typeof ConversationSummary>;

export const MessagePage = Type.Object({ messages: Type.Array(Message), hasMore: Type.Boolean() });
export type MessagePage = Static<typeof MessagePage>;

/** `POST /api/conversations/:id/read` (and `/delivered`): every message up to this one. */
export const MarkUpTo = Type.Object({ upToMessageId: Uuid }, { additionalProperties: false });
export type MarkUpTo = Static<typeof MarkUpTo>;

// Socket payloads.

/** `send_message`: a message over the socket, answered like the REST send. */
export const SendMessagePayload = MessageCreate;
export type SendMessagePayload = MessageCreate;

/** `typing` from a client. */
export const TypingPayload = Type.Object({ conversationId: Uuid, isTyping: Type.Boolean() }, { additionalProperties: false });
export type TypingPayload = Static<typeof TypingPayload>;

/** `typing` relayed to the other participants. */
export const TypingEvent = Type.Object({ conversationId: Type.String(), userId: Type.String(), isTyping: Type.Boolean() });
export type TypingEvent = Static<typeof TypingEvent>;

/** `mark_read` / `mark_delivered` from a client: the socket forms of the REST receipts. */
export const MarkPayload = Type.Object({ conversationId: Uuid, upToMessageId: Uuid }, { additionalProperties: false });
export type MarkPayload = Static<typeof MarkPayload>;

/** `message_sent` (to the sending socket) and `receive_message` (every other socket of the participants). */
export const MessageEvent = Type.Object({ message: Message });
export type MessageEvent = Static<typeof MessageEvent>;

/** `presence`: a user's first socket connected, or their last one closed. */
export const PresenceEvent = Type.Object({
  userId: Type.String(),
  status: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
  lastSeen: Type.String(),
});
export type PresenceEvent = Static<typeof PresenceEvent>;

/** `message_status`: to the sender, once per message and recipient, when it was delivered and when read. */
export const MessageStatusEvent = Type.Object({
  messageId: Type.String(),
  conversationId: Type.String(),
  userId: Type.String(),
  status: Type.Union([Type.Literal('delivered'), Type.Literal('read')]),
});
export type MessageStatusEvent = Static<typeof MessageStatusEvent>;

export const ChatQuery = {
  conversations: Type.Object(
    {
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
      /** A conversation id from the previous page (its activity and id), or a time. */
      before: Type.Optional(Type.Union([Uuid, DateTime])),
    },
    { additionalProperties: false },
  ),
  messages: Type.Object(
    {
      before: Type.Optional(Uuid),
      after: Type.Optional(Uuid),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    },
    { additionalProperties: false },
  ),
  users: Type.Object({ search: Type.Optional(Text(200)) }, { additionalProperties: false }),
};
