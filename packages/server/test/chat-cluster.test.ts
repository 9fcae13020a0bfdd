import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, quiet, type Probe } from './helpers/sockets.js';

/*
 * Chat across two instances of one deployment (PostgreSQL and the Redis adapter, SPEC §8 and
 * §14): messages, typing, receipts and presence reach sockets on the other instance.
 */

const clustered = Boolean(process.env.TEST_DATABASE_URL && process.env.TEST_REDIS_URL);

describe.runIf(clustered)('team chat across two instances through Redis', () => {
  let one: TestApp;
  let two: TestApp;
  let ana: { apiKey: string; agent: { id: string } };
  let ben: { apiKey: string; agent: { id: string } };
  let cy: { apiKey: string; agent: { id: string } };
  const open: Probe[] = [];
  const socket = async (app: TestApp, who: { apiKey: string }, deviceId: string) => {
    const p = await authedProbe(app.url, { apiKey: who.apiKey, deviceId });
    open.push(p);
    return p;
  };
  const group = async (members: { agent: { id: string } }[]) => {
    const res = await one.api('POST', '/api/conversations', { key: ana.apiKey, body: { type: 'group', title: 'Field', participants: members.map((m) => m.agent.id) } });
    expect(res.status, res.text).toBe(201);
    return res.body.data.id as string;
  };

  beforeAll(async () => {
    const env = { REDIS_URL: process.env.TEST_REDIS_URL! };
    one = await startTestApp('postgres', env);
    two = await startTestApp('postgres', env, { sharedDb: one.testDb });
    const tag = randomUUID().slice(0, 6);
    [ana, ben, cy] = await Promise.all(['ana', 'ben', 'cy'].map((n) => createAgent(one, `${n}-${tag}`)));
  });
  afterAll(async () => {
    closeAll(...open);
    await two?.close();
    await one?.close();
  });

  it('delivers a message sent on one instance to the participants’ sockets on the other, once each, and the delivered receipt back', async () => {
    const anaPhone = await socket(one, ana, 'ana-phone');
    const anaTablet = await socket(two, ana, 'ana-tablet');
    const benPhone = await socket(two, ben, 'ben-phone');
    const cyPhone = await socket(one, cy, 'cy-phone');
    const conversationId = await group([ben]);
    const ack = await anaPhone.ack('send_message', { conversationId, clientMessageId: randomUUID(), content: 'across' });
    expect(ack.success, JSON.stringify(ack)).toBe(true);
    const id = ack.data.message.id;
    await benPhone.waitFor('receive_message', (p) => p.message.id === id);
    await anaTablet.waitFor('receive_message', (p) => p.message.id === id);
    // Ben's instance wrote the receipt; Ana's instance tells her.
    await anaPhone.waitFor('message_status', (p) => p.messageId === id && p.status === 'delivered' && p.userId === ben.agent.id);
    await quiet();
    expect(benPhone.all('receive_message').filter((p) => p.message.id === id)).toHaveLength(1);
    expect(anaTablet.all('receive_message').filter((p) => p.message.id === id)).toHaveLength(1);
    expect(anaPhone.all('receive_message').filter((p) => p.message.id === id)).toHaveLength(0);
    expect(cyPhone.all('receive_message').filter((p) => p.message.id === id)).toHaveLength(0);
    expect(anaPhone.all('message_status').filter((p) => p.messageId === id && p.status === 'delivered')).toHaveLength(1);
  });

  it('relays typing to participants on the other instance', async () => {
    const anaPhone = await socket(one, ana, 'ana-typing');
    const benPhone = await socket(two, ben, 'ben-typing');
    const cyPhone = await socket(two, cy, 'cy-typing');
    const conversationId = await group([ben]);
    expect((await anaPhone.ack('typing', { conversationId, isTyping: true })).success).toBe(true);
    await benPhone.waitFor('typing', (p) => p.conversationId === conversationId && p.userId === ana.agent.id);
    await quiet();
    expect(cyPhone.all('typing').filter((p) => p.conversationId === conversationId)).toHaveLength(0);
  });

  it('keeps a user connected on both instances online until both sockets close', async () => {
    const dan = await createAgent(one, `dan-${randomUUID().slice(0, 6)}`);
    const watcher = await socket(one, ben, 'ben-watch');
    const onOne = await authedProbe(one.url, { apiKey: dan.apiKey, deviceId: 'dan-1' });
    await watcher.waitFor('presence', (p) => p.userId === dan.agent.id && p.status === 'online');
    const onTwo = await authedProbe(two.url, { apiKey: dan.apiKey, deviceId: 'dan-2' });
    const listed = await two.api('GET', '/api/users', { key: cy.apiKey });
    expect(listed.body.data.find((u: any) => u.id === dan.agent.id).status).toBe('online');
    onOne.close();
    await quiet(500);
    expect(watcher.all('presence').filter((p) => p.userId === dan.agent.id).map((p) => p.status)).toEqual(['online']);
    onTwo.close();
    await watcher.waitFor('presence', (p) => p.userId === dan.agent.id && p.status === 'offline');
    expect(watcher.all('presence').filter((p) => p.userId === dan.agent.id).map((p) => p.status)).toEqual(['online', 'offline']);
  });
});
