import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FieldsyncClient, Message, MessageStatusEvent, PresenceEvent, TypingEvent } from '../src/index.js';
import { createAgent, device, startTestApp, until, type TestApp } from './helpers.js';

/*
 * The SDK's chat (issue 11) against the real server: messages sent offline through the outbox,
 * live messages, typing, presence and receipts, and a private conversation created twice.
 */
let app: TestApp;
let ana: { apiKey: string; agent: { id: string } };
let ben: { apiKey: string; agent: { id: string } };
const clients: FieldsyncClient[] = [];
const open = async (who: { apiKey: string }, deviceId: string, opts = {}) => {
  const c = await device(app, who.apiKey, deviceId, opts);
  clients.push(c);
  return c;
};

beforeAll(async () => {
  app = await startTestApp('pglite');
  ana = await createAgent(app, 'sdk-chat-ana');
  ben = await createAgent(app, 'sdk-chat-ben');
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await app?.close();
});

describe('chat through the SDK', () => {
  it('holds the directory, sends messages offline and delivers them once when back online', async () => {
    let online = false;
    const offlineFetch = (input: string | URL | Request, init?: RequestInit) => (online ? fetch(input, init) : Promise.reject(new TypeError('offline')));
    const phone = await open(ana, 'ana-chat-phone', { fetch: offlineFetch });
    const reader = await open(ben, 'ben-chat-phone');
    const group = await app.api('POST', '/api/conversations', { key: ana.apiKey, body: { type: 'group', title: 'Road', participants: [ben.agent.id] } });
    expect(group.status).toBe(201);
    const conversationId = group.body.data.id;
    await reader.sync();
    reader.connect();
    const live: Message[] = [];
    reader.on('message', (m) => live.push(m));
    await until(() => reader.state.live === 'connected', 5000, 'live');

    // Offline: the message is visible locally and waits in the outbox.
    const sent = await phone.sendMessage(conversationId, 'from the tunnel');
    expect(await phone.get('messages', sent.id)).toMatchObject({ content: 'from the tunnel', conversationId, version: 0 });
    await expect(phone.sync()).rejects.toThrow();
    expect(phone.state.pending).toBe(1);

    online = true;
    const summary = await phone.sync();
    expect(summary.pushed).toBe(1);
    await until(() => live.some((m) => m.id === sent.id), 5000, 'receive_message');
    // The directory came with the pull: the phone can name people offline.
    expect((await phone.list('users')).map((u) => u.id)).toEqual(expect.arrayContaining([ana.agent.id, ben.agent.id]));
    await phone.sync();
    await until(async () => (await reader.get('messages', sent.id)) !== undefined, 5000, 'the message in the reader replica');
    expect(live.filter((m) => m.id === sent.id)).toHaveLength(1);
    const stored = await app.api('GET', `/api/conversations/${conversationId}/messages`, { key: ben.apiKey });
    expect(stored.body.data.messages.map((m: Message) => m.id)).toEqual([sent.id]);
  });

  it('hears typing, presence and receipts live, and marks messages read', async () => {
    // A user with no socket yet: their first one is announced.
    const cy = await createAgent(app, 'sdk-chat-cy');
    const a = await open(ana, 'ana-live');
    const b = await open(cy, 'cy-live');
    const conversation = (await app.api('POST', '/api/conversations', { key: ana.apiKey, body: { type: 'private', participants: [cy.agent.id] } })).body.data;
    const typing: TypingEvent[] = [];
    const presence: PresenceEvent[] = [];
    const statuses: MessageStatusEvent[] = [];
    b.on('typing', (e) => typing.push(e));
    a.on('presence', (e) => presence.push(e));
    a.on('messageStatus', (e) => statuses.push(e));
    a.connect();
    await until(() => a.state.live === 'connected', 5000, 'a live');
    b.connect();
    await until(() => presence.some((p) => p.userId === cy.agent.id && p.status === 'online'), 5000, 'presence');
    await a.sync();
    await b.sync();
    a.typing(conversation.id, true);
    await until(() => typing.some((t) => t.userId === ana.agent.id && t.isTyping), 5000, 'typing');
    const m = await a.sendMessage(conversation.id, 'read me');
    await a.sync();
    await until(() => statuses.some((s) => s.messageId === m.id && s.status === 'delivered'), 5000, 'delivered');
    expect(await b.markRead(conversation.id, m.id)).toEqual({ marked: 1 });
    await until(() => statuses.some((s) => s.messageId === m.id && s.status === 'read'), 5000, 'read');
    await b.sync();
    expect(await b.get('messages', m.id)).toMatchObject({ readBy: [cy.agent.id] });
  });

  it('drops a local private conversation the server answers with the existing one, and pulls that one', async () => {
    const existing = (await app.api('POST', '/api/conversations', { key: ana.apiKey, body: { type: 'private', participants: [ben.agent.id] } })).body.data;
    const phone = await open(ben, 'ben-private');
    const local = await phone.create('conversations', { type: 'private', participants: [ana.agent.id] });
    expect(local.id).not.toBe(existing.id);
    await phone.sync();
    expect(phone.state.pending).toBe(0);
    expect(await phone.get('conversations', local.id)).toBeUndefined();
    expect(await phone.get('conversations', existing.id)).toMatchObject({ type: 'private' });
  });
});

describe('a message written in a conversation the server then answers with another id', () => {
  it('lands in the conversation the server kept, once, and the app is told the new id', async () => {
    const dee = await createAgent(app, 'sdk-chat-dee');
    const existing = (await app.api('POST', '/api/conversations', { key: ana.apiKey, body: { type: 'private', participants: [dee.agent.id] } })).body.data;
    const phone = await open(dee, 'dee-offline');
    const moved: { collection: string; localId: string; serverId: string }[] = [];
    phone.on('idChanged', (e) => moved.push(e));
    // Offline, as a phone in a tunnel: the conversation and two messages in it, queued together.
    const local = await phone.create('conversations', { type: 'private', participants: [ana.agent.id] });
    const first = await phone.sendMessage(local.id, 'first, written offline');
    await phone.sendMessage(local.id, 'second');
    await phone.sync();
    expect(phone.state.pending).toBe(0);
    expect(moved).toEqual([{ collection: 'conversations', localId: local.id, serverId: existing.id }]);
    const onServer = await app.api('GET', `/api/conversations/${existing.id}/messages`, { key: ana.apiKey });
    expect(onServer.body.data.messages.map((m: Message) => m.content)).toEqual(['first, written offline', 'second']);
    expect(await phone.get('messages', first.id)).toMatchObject({ conversationId: existing.id });
    expect(await phone.list('messages', { where: { conversationId: local.id } })).toEqual([]);
  });
});
