import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, eventually, quiet, type Probe } from './helpers/sockets.js';
import { bytesOf, createTenant, uploadChunked } from './helpers/files.js';

/*
 * Team chat end to end (SPEC §8, issue 11): REST, several real socket.io-client users, the
 * delta pull and the offline push, on every backend this machine has.
 */

interface Agent {
  apiKey: string;
  agent: { id: string; agentCode: string };
}

describe.each(backends)('team chat on %s', (backend) => {
  let app: TestApp;
  let ana: Agent; // the sender
  let ben: Agent;
  let cy: Agent;
  let dee: Agent; // never a participant
  let seq = 0;
  const cid = () => `c-${++seq}-${randomUUID().slice(0, 8)}`;
  const as = (who: Agent) => ({ key: who.apiKey });

  const group = async (owner: Agent, members: Agent[], title = 'Team') => {
    const res = await app.api('POST', '/api/conversations', { ...as(owner), body: { type: 'group', title, participants: members.map((m) => m.agent.id) } });
    expect(res.status, res.text).toBe(201);
    return res.body.data as { id: string; participants: string[]; admins: string[]; version: number };
  };
  const send = async (who: Agent, conversationId: string, content: string, extra: Record<string, unknown> = {}) => {
    const res = await app.api('POST', `/api/conversations/${conversationId}/messages`, { ...as(who), body: { clientMessageId: cid(), content, type: 'text', ...extra } });
    expect(res.status, res.text).toBe(201);
    return res.body.data as { id: string; content: string; version: number; readBy: string[]; deliveredTo: string[]; senderId: string };
  };
  const socketOf = (who: Agent, deviceId = `${who.agent.agentCode}-phone`) => authedProbe(app.url, { apiKey: who.apiKey, deviceId });
  const pull = async (who: Agent, version = 0, deviceId = `${who.agent.agentCode}-pull`) => {
    const res = await app.api('GET', `/api/sync/delta?version=${version}&collections=conversations,messages&limit=5000`, { ...as(who), headers: { 'x-device-id': deviceId } });
    expect(res.status, res.text).toBe(200);
    return res.body.data as { changes: { collection: string; op: string; id: string; version: number; data: any }[]; nextVersion: number };
  };
  const upload = async (who: Agent, contentType = 'image/png') =>
    (await uploadChunked(app, bytesOf(2048), { key: who.apiKey, filename: 'photo.png', contentType })).fileId;

  beforeAll(async () => {
    app = await startTestApp(backend);
    [ana, ben, cy, dee] = await Promise.all(['ana', 'ben', 'cy', 'dee'].map((n) => createAgent(app, `${n}-${backend}`, { email: `${n}@example.com` })));
  });
  afterAll(async () => {
    await app?.close();
  });

  describe('the team directory', () => {
    it('lists active users to everyone, emails only to admins and managers and the user; renaming yourself re-versions your synced entry', async () => {
      const seen = await app.api('GET', '/api/users', as(ben));
      expect(seen.status).toBe(200);
      const anaEntry = seen.body.data.find((u: any) => u.id === ana.agent.id);
      expect(anaEntry).toMatchObject({ name: `Agent ana-${backend}`, agentCode: `ana-${backend}`, role: 'agent', status: 'offline', avatarFileId: null });
      expect(anaEntry.email).toBeUndefined();
      expect(seen.body.data.find((u: any) => u.id === ben.agent.id).email).toBe('ben@example.com');
      const byAdmin = await app.api('GET', '/api/users?search=ana');
      expect(byAdmin.body.data.map((u: any) => u.id)).toEqual([ana.agent.id]);
      expect(byAdmin.body.data[0].email).toBe('ana@example.com');

      const before = await app.api('GET', '/api/sync/delta?version=0&collections=users', as(ben));
      const entry = before.body.data.changes.find((c: any) => c.id === ana.agent.id);
      expect(entry.data).toMatchObject({ name: `Agent ana-${backend}`, isDeleted: false });
      expect(entry.data.email).toBeUndefined();
      const renamed = await app.api('PATCH', '/api/users/me', { ...as(ana), body: { name: 'Ana Field' } });
      expect(renamed.status, renamed.text).toBe(200);
      expect(renamed.body.data.name).toBe('Ana Field');
      const after = await app.api('GET', `/api/sync/delta?version=${entry.version}&collections=users`, as(ben));
      expect(after.body.data.changes.filter((c: any) => c.id === ana.agent.id).map((c: any) => c.data.name)).toEqual(['Ana Field']);
    });

    it('takes an avatar only from an image you uploaded', async () => {
      const image = await upload(ana);
      const other = await upload(ben);
      expect((await app.api('PATCH', '/api/users/me', { ...as(ana), body: { avatarFileId: other } })).status).toBe(400);
      expect((await app.api('PATCH', '/api/users/me', { ...as(ana), body: { avatarFileId: randomUUID() } })).status).toBe(400);
      const ok = await app.api('PATCH', '/api/users/me', { ...as(ana), body: { avatarFileId: image } });
      expect(ok.status, ok.text).toBe(200);
      expect(ok.body.data.avatarFileId).toBe(image);
    });
  });

  describe('conversations', () => {
    it('has one private conversation per pair: created again from either side it is the same one (200)', async () => {
      const first = await app.api('POST', '/api/conversations', { ...as(ana), body: { type: 'private', participants: [ben.agent.id] } });
      expect(first.status, first.text).toBe(201);
      expect([...first.body.data.participants].sort()).toEqual([ana.agent.id, ben.agent.id].sort());
      expect(first.body.data.admins).toEqual([]);
      const again = await app.api('POST', '/api/conversations', { ...as(ben), body: { type: 'private', participants: [ana.agent.id, ben.agent.id] } });
      expect(again.status).toBe(200);
      expect(again.body.data.id).toBe(first.body.data.id);
      const concurrent = await Promise.all([
        app.api('POST', '/api/conversations', { ...as(cy), body: { type: 'private', participants: [dee.agent.id] } }),
        app.api('POST', '/api/conversations', { ...as(dee), body: { type: 'private', participants: [cy.agent.id] } }),
      ]);
      expect(concurrent.map((r) => r.status).sort()).toEqual([200, 201]);
      expect(concurrent[0].body.data.id).toBe(concurrent[1].body.data.id);
    });

    it('refuses a private conversation with yourself, with two others, with a title, or with an unknown user', async () => {
      for (const body of [
        { type: 'private', participants: [ana.agent.id] },
        { type: 'private', participants: [ben.agent.id, cy.agent.id] },
        { type: 'private', participants: [ben.agent.id], title: 'x' },
        { type: 'private', participants: [randomUUID()] },
        { type: 'group', participants: [ben.agent.id] },
        { type: 'channel', participants: [ben.agent.id] },
        { type: 'group', title: 'x', participants: [ben.agent.id], admins: [cy.agent.id] },
      ]) {
        const res = await app.api('POST', '/api/conversations', { ...as(ana), body });
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.success).toBe(false);
      }
    });

    it('makes the creator a participant and admin of a group; admins rename and add; members may only leave', async () => {
      const g = await group(ana, [ben]);
      expect(g.participants.sort()).toEqual([ana.agent.id, ben.agent.id].sort());
      expect(g.admins).toEqual([ana.agent.id]);
      expect((await app.api('PATCH', `/api/conversations/${g.id}`, { ...as(ben), body: { title: 'Mine' } })).status).toBe(403);
      expect((await app.api('POST', `/api/conversations/${g.id}/participants`, { ...as(ben), body: { userIds: [cy.agent.id] } })).status).toBe(403);
      const renamed = await app.api('PATCH', `/api/conversations/${g.id}`, { ...as(ana), body: { title: 'Closers' } });
      expect(renamed.body.data.title).toBe('Closers');
      const added = await app.api('POST', `/api/conversations/${g.id}/participants`, { ...as(ana), body: { userIds: [cy.agent.id] } });
      expect(added.status, added.text).toBe(200);
      expect(added.body.data.participants).toContain(cy.agent.id);
      expect((await app.api('DELETE', `/api/conversations/${g.id}/participants/${cy.agent.id}`, as(ben))).status).toBe(403);
      expect((await app.api('DELETE', `/api/conversations/${g.id}/participants/${ben.agent.id}`, as(ben))).status).toBe(204);
      expect((await app.api('GET', `/api/conversations/${g.id}`, as(ben))).status).toBe(404);
      expect((await app.api('GET', `/api/conversations/${g.id}`, as(cy))).status).toBe(200);
    });

    it('lists your conversations by latest activity with the last message and your unread count', async () => {
      const older = await group(ben, [cy], 'older');
      const newer = await group(ben, [cy], 'newer');
      await send(ben, newer.id, 'first');
      const last = await send(ben, older.id, 'now the older one is the latest');
      await send(cy, older.id, 'mine do not count');
      const list = await app.api('GET', '/api/conversations?limit=2', as(cy));
      expect(list.status).toBe(200);
      expect(list.body.data.map((c: any) => c.id)).toEqual([older.id, newer.id]);
      expect(list.body.data[0].lastMessage.content).toBe('mine do not count');
      expect(list.body.data[0].unreadCount).toBe(1);
      expect(list.body.data[1].unreadCount).toBe(1);
      const read = await app.api('POST', `/api/conversations/${older.id}/read`, { ...as(cy), body: { upToMessageId: last.id } });
      expect(read.status, read.text).toBe(200);
      expect(read.body.data.marked).toBe(1);
      const after = await app.api('GET', `/api/conversations/${older.id}`, as(cy));
      expect(after.body.data.unreadCount).toBe(0);
      const next = await app.api('GET', `/api/conversations?limit=1&before=${older.id}`, as(cy));
      expect(next.body.data.map((c: any) => c.id)).toEqual([newer.id]);
    });

    it('hides a conversation from everyone else, a tenant admin included, and from another tenant: 404 everywhere', async () => {
      const g = await group(ana, [ben]);
      const m = await send(ana, g.id, 'private to us');
      const other = await createTenant(app, `chat-other-${backend}-${seq++}`);
      for (const key of [app.adminKey, dee.apiKey, other.apiKey]) {
        expect((await app.api('GET', `/api/conversations/${g.id}`, { key })).status).toBe(404);
        expect((await app.api('GET', `/api/conversations/${g.id}/messages`, { key })).status).toBe(404);
        expect((await app.api('POST', `/api/conversations/${g.id}/messages`, { key, body: { clientMessageId: cid(), content: 'hi' } })).status).toBe(404);
        expect((await app.api('POST', `/api/conversations/${g.id}/read`, { key, body: { upToMessageId: m.id } })).status).toBe(404);
        expect((await app.api('PATCH', `/api/messages/${m.id}`, { key, body: { content: 'x' } })).status).toBe(404);
        expect((await app.api('DELETE', `/api/messages/${m.id}`, { key })).status).toBe(404);
        expect((await app.api('POST', `/api/conversations/${g.id}/participants`, { key, body: { userIds: [dee.agent.id] } })).status).toBe(404);
        const listed = await app.api('GET', '/api/conversations', { key });
        expect(listed.body.data.map((c: any) => c.id)).not.toContain(g.id);
      }
      const adminPull = await app.api('GET', '/api/sync/delta?version=0&collections=conversations,messages&limit=5000');
      expect(adminPull.body.data.changes.map((c: any) => c.id)).not.toContain(m.id);
      expect(adminPull.body.data.changes.map((c: any) => c.id)).not.toContain(g.id);
    });
  });

  describe('messages', () => {
    it('is idempotent on the sender’s clientMessageId: a re-send is 200 with the stored message', async () => {
      const g = await group(ana, [ben]);
      const body = { clientMessageId: cid(), content: 'once', type: 'text' };
      const first = await app.api('POST', `/api/conversations/${g.id}/messages`, { ...as(ana), body });
      const again = await app.api('POST', `/api/conversations/${g.id}/messages`, { ...as(ana), body: { ...body, content: 'changed?' } });
      expect([first.status, again.status]).toEqual([201, 200]);
      expect(again.body.data).toEqual(first.body.data);
      // The same client id from another sender is another message.
      const bens = await app.api('POST', `/api/conversations/${g.id}/messages`, { ...as(ben), body });
      expect(bens.status).toBe(201);
      expect(bens.body.data.id).not.toBe(first.body.data.id);
      const page = await app.api('GET', `/api/conversations/${g.id}/messages`, as(ben));
      expect(page.body.data.messages.map((m: any) => m.content)).toEqual(['once', 'once']);
    });

    it('counts the 10,000-character limit in code points and refuses bad messages with 400, storing nothing', async () => {
      const g = await group(ana, [ben]);
      const emoji = '😀'.repeat(10_000); // 20,000 UTF-16 units, 10,000 code points
      expect((await app.api('POST', `/api/conversations/${g.id}/messages`, { ...as(ana), body: { clientMessageId: cid(), content: emoji } })).status).toBe(201);
      const foreign = await upload(ben);
      const other = await createTenant(app, `chat-files-${backend}-${seq++}`);
      for (const body of [
        { clientMessageId: cid(), content: 'x'.repeat(10_001) },
        { clientMessageId: cid(), content: '😀'.repeat(10_001) },
        { clientMessageId: cid(), content: 'hi', type: 'sticker' },
        { clientMessageId: cid(), content: '   ' },
        { clientMessageId: cid() },
        { clientMessageId: cid(), type: 'image' },
        { clientMessageId: cid(), type: 'image', attachments: [{ fileId: foreign }] },
        { clientMessageId: cid(), type: 'file', attachments: [{ fileId: randomUUID() }] },
        { clientMessageId: cid(), type: 'file', attachments: [{ fileId: 'not-a-uuid' }] },
        { clientMessageId: cid(), content: 'a\u0000b' },
        { clientMessageId: '', content: 'x' },
        { content: 'no client id' },
        { clientMessageId: cid(), content: 'x', senderId: ben.agent.id },
      ]) {
        const res = await app.api('POST', `/api/conversations/${g.id}/messages`, { ...as(ana), body });
        expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
        expect(res.body.success).toBe(false);
      }
      const otherFile = (await uploadChunked(app, bytesOf(100), { key: other.apiKey, contentType: 'image/png' })).fileId;
      expect((await app.api('POST', `/api/conversations/${g.id}/messages`, { ...as(ana), body: { clientMessageId: cid(), type: 'file', attachments: [{ fileId: otherFile }] } })).status).toBe(400);
      const page = await app.api('GET', `/api/conversations/${g.id}/messages`, as(ana));
      expect(page.body.data.messages).toHaveLength(1);
    });

    it('attaches files the sender uploaded, readable by participants only', async () => {
      const g = await group(ana, [ben]);
      const fileId = await upload(ana);
      const res = await app.api('POST', `/api/conversations/${g.id}/messages`, { ...as(ana), body: { clientMessageId: cid(), type: 'image', attachments: [{ fileId }] } });
      expect(res.status, res.text).toBe(201);
      expect(res.body.data.attachments).toEqual([{ fileId, filename: 'photo.png', contentType: 'image/png', size: 2048, url: `/api/files/${fileId}` }]);
      expect(res.body.data.content).toBe('');
      expect((await fetch(`${app.url}/api/files/${fileId}`, { headers: { 'x-api-key': ben.apiKey } })).status).toBe(200);
      expect((await fetch(`${app.url}/api/files/${fileId}`, { headers: { 'x-api-key': dee.apiKey } })).status).toBe(404);
      expect((await fetch(`${app.url}/api/files/${fileId}`, { headers: { 'x-api-key': app.adminKey } })).status).toBe(404);
    });

    it('pages by message ids, oldest first within a page', async () => {
      const g = await group(ana, [ben]);
      const sent = [];
      for (let i = 0; i < 7; i++) sent.push(await send(i % 2 ? ben : ana, g.id, `m${i}`));
      const contents = (r: any) => r.body.data.messages.map((m: any) => m.content);
      const latest = await app.api('GET', `/api/conversations/${g.id}/messages?limit=3`, as(ana));
      expect(contents(latest)).toEqual(['m4', 'm5', 'm6']);
      expect(latest.body.data.hasMore).toBe(true);
      const older = await app.api('GET', `/api/conversations/${g.id}/messages?limit=3&before=${sent[4].id}`, as(ana));
      expect(contents(older)).toEqual(['m1', 'm2', 'm3']);
      expect(older.body.data.hasMore).toBe(true);
      const oldest = await app.api('GET', `/api/conversations/${g.id}/messages?limit=3&before=${sent[1].id}`, as(ana));
      expect(contents(oldest)).toEqual(['m0']);
      expect(oldest.body.data.hasMore).toBe(false);
      const newer = await app.api('GET', `/api/conversations/${g.id}/messages?after=${sent[2].id}&limit=2`, as(ana));
      expect(contents(newer)).toEqual(['m3', 'm4']);
      expect(newer.body.data.hasMore).toBe(true);
      const between = await app.api('GET', `/api/conversations/${g.id}/messages?after=${sent[1].id}&before=${sent[4].id}`, as(ana));
      expect(contents(between)).toEqual(['m2', 'm3']);
      const elsewhere = await send(ana, (await group(ana, [cy])).id, 'elsewhere');
      expect((await app.api('GET', `/api/conversations/${g.id}/messages?before=${elsewhere.id}`, as(ana))).status).toBe(404);
      expect((await app.api('GET', `/api/conversations/${g.id}/messages?limit=201`, as(ana))).status).toBe(400);
    });

    it('lets only the sender edit, the sender or a group admin delete; a delete leaves a tombstone without content', async () => {
      const g = await group(ana, [ben, cy]);
      const bens = await send(ben, g.id, 'typo');
      expect((await app.api('PATCH', `/api/messages/${bens.id}`, { ...as(cy), body: { content: 'mine now' } })).status).toBe(403);
      expect((await app.api('PATCH', `/api/messages/${bens.id}`, { ...as(ana), body: { content: 'admin edit' } })).status).toBe(403);
      const edited = await app.api('PATCH', `/api/messages/${bens.id}`, { ...as(ben), body: { content: 'fixed' } });
      expect(edited.status).toBe(200);
      expect(edited.body.data).toMatchObject({ content: 'fixed' });
      expect(edited.body.data.editedAt).toMatch(/^\d{4}-/);
      expect((await app.api('DELETE', `/api/messages/${bens.id}`, as(cy))).status).toBe(403);
      expect((await app.api('DELETE', `/api/messages/${bens.id}`, as(ana))).status).toBe(204);
      const page = await app.api('GET', `/api/conversations/${g.id}/messages`, as(cy));
      expect(page.body.data.messages[0]).toMatchObject({ id: bens.id, isDeleted: true, content: '', attachments: [] });
      expect((await app.api('DELETE', `/api/messages/${bens.id}`, as(ben))).status).toBe(404);
      const pulled = await pull(cy);
      expect(pulled.changes.find((c) => c.id === bens.id)).toMatchObject({ op: 'delete', data: { isDeleted: true, content: '' } });
      const stored = await app.testDb.db.query<{ content: string }>('SELECT content FROM messages WHERE id = $1', [bens.id]);
      expect(stored.rows[0].content).toBe('');
    });
  });

  describe('real time', () => {
    let anaPhone: Probe;
    let anaTablet: Probe;
    let benPhone: Probe;
    let cyPhone: Probe;
    let deePhone: Probe;
    let adminSocket: Probe;
    beforeAll(async () => {
      anaPhone = await socketOf(ana);
      anaTablet = await socketOf(ana, 'ana-tablet');
      benPhone = await socketOf(ben);
      cyPhone = await socketOf(cy);
      deePhone = await socketOf(dee);
      adminSocket = await authedProbe(app.url, { apiKey: app.adminKey, deviceId: 'admin-desk' });
    });
    afterAll(() => closeAll(anaPhone, anaTablet, benPhone, cyPhone, deePhone, adminSocket));

    it('acknowledges send_message, tells the sending socket message_sent and every other participant socket receive_message once', async () => {
      const g = await group(ana, [ben, cy]);
      const clientMessageId = cid();
      const ack = await anaPhone.ack('send_message', { conversationId: g.id, clientMessageId, content: 'live', type: 'text' });
      expect(ack.success, JSON.stringify(ack)).toBe(true);
      const id = ack.data.message.id;
      expect(ack.data.message).toMatchObject({ conversationId: g.id, senderId: ana.agent.id, clientMessageId, content: 'live' });
      await anaPhone.waitFor('message_sent', (p) => p.message.id === id);
      for (const s of [anaTablet, benPhone, cyPhone]) await s.waitFor('receive_message', (p) => p.message.id === id);
      // A re-send is acknowledged with the same message and broadcast to no one.
      const again = await anaPhone.ack('send_message', { conversationId: g.id, clientMessageId, content: 'live', type: 'text' });
      expect(again.data.message.id).toBe(id);
      await quiet();
      for (const s of [anaTablet, benPhone, cyPhone]) expect(s.all('receive_message').filter((p) => p.message.id === id)).toHaveLength(1);
      expect(anaPhone.all('receive_message').filter((p) => p.message.id === id)).toHaveLength(0);
      for (const s of [deePhone, adminSocket]) {
        expect(s.all('receive_message').filter((p) => p.message.id === id)).toHaveLength(0);
        expect(JSON.stringify(s.all('changes'))).not.toContain(id);
      }
    });

    it('tells the sender message_status delivered when a recipient’s socket got it, and read when read, once per message', async () => {
      const g = await group(ana, [ben]);
      const from = anaPhone.received.length;
      const ack = await anaPhone.ack('send_message', { conversationId: g.id, clientMessageId: cid(), content: 'did you get it?' });
      const id = ack.data.message.id;
      await anaPhone.waitFor('message_status', (p) => p.messageId === id && p.status === 'delivered' && p.userId === ben.agent.id, { from });
      const marked = await benPhone.ack('mark_read', { conversationId: g.id, upToMessageId: id });
      expect(marked).toMatchObject({ success: true, data: { marked: 1 } });
      await anaPhone.waitFor('message_status', (p) => p.messageId === id && p.status === 'read', { from });
      await anaTablet.waitFor('message_status', (p) => p.messageId === id && p.status === 'read', { from: 0 });
      await quiet();
      expect(anaPhone.all('message_status', from).filter((p) => p.messageId === id && p.status === 'delivered')).toHaveLength(1);
      expect(benPhone.all('message_status').filter((p) => p.messageId === id)).toHaveLength(0);
      const page = await app.api('GET', `/api/conversations/${g.id}/messages`, as(ana));
      expect(page.body.data.messages[0]).toMatchObject({ readBy: [ben.agent.id], deliveredTo: [ben.agent.id] });
    });

    it('relays typing to the other participants only', async () => {
      const g = await group(ana, [ben]);
      const ack = await anaPhone.ack('typing', { conversationId: g.id, isTyping: true });
      expect(ack.success).toBe(true);
      await benPhone.waitFor('typing', (p) => p.conversationId === g.id && p.userId === ana.agent.id && p.isTyping === true);
      await quiet();
      for (const s of [anaPhone, anaTablet, cyPhone, deePhone]) expect(s.all('typing').filter((p) => p.conversationId === g.id)).toHaveLength(0);
      const refused = await deePhone.ack('typing', { conversationId: g.id, isTyping: true });
      expect(refused).toMatchObject({ success: false, error: 'NOT_FOUND' });
    });

    it('answers junk over the socket with an error ack, storing and broadcasting nothing', async () => {
      const g = await group(ana, [ben]);
      const from = benPhone.received.length;
      for (const payload of [
        null,
        'hello',
        [],
        { conversationId: g.id },
        { conversationId: g.id, clientMessageId: cid(), content: 'x'.repeat(10_001) },
        { conversationId: g.id, clientMessageId: cid(), content: 'x', type: 'video' },
        { conversationId: 'nope', clientMessageId: cid(), content: 'x' },
        { conversationId: randomUUID(), clientMessageId: cid(), content: 'x' },
        { conversationId: g.id, clientMessageId: cid(), content: 'x', extra: true },
        { conversationId: g.id, clientMessageId: cid(), type: 'file', attachments: [{ fileId: randomUUID() }] },
        { conversationId: g.id, clientMessageId: cid(), content: { $gt: '' } },
      ]) {
        const ack = await anaPhone.ack('send_message', payload);
        expect(ack.success, JSON.stringify(payload)?.slice(0, 60)).toBe(false);
        expect(ack.error).toMatch(/^(BAD_REQUEST|VALIDATION_FAILED|NOT_FOUND)$/);
      }
      for (const payload of [null, { conversationId: g.id }, { conversationId: g.id, isTyping: 'yes' }]) {
        expect((await anaPhone.ack('typing', payload)).success).toBe(false);
      }
      await quiet();
      expect(benPhone.all('receive_message', from)).toHaveLength(0);
      const page = await app.api('GET', `/api/conversations/${g.id}/messages`, as(ben));
      expect(page.body.data.messages).toHaveLength(0);
    });

    it('announces presence on a user’s first socket and their last', async () => {
      const eve = await createAgent(app, `eve-${backend}`);
      const from = benPhone.received.length;
      const one = await socketOf(eve, 'eve-1');
      await benPhone.waitFor('presence', (p) => p.userId === eve.agent.id && p.status === 'online', { from });
      const two = await socketOf(eve, 'eve-2');
      const dir = await app.api('GET', '/api/users', as(ben));
      expect(dir.body.data.find((u: any) => u.id === eve.agent.id).status).toBe('online');
      one.close();
      await quiet(400);
      expect(benPhone.all('presence', from).filter((p) => p.userId === eve.agent.id).map((p) => p.status)).toEqual(['online']);
      two.close();
      const off = await benPhone.waitFor('presence', (p) => p.userId === eve.agent.id && p.status === 'offline', { from });
      expect(Date.parse(off.lastSeen)).toBeGreaterThan(Date.now() - 60_000);
      await eventually(async () => (await app.api('GET', '/api/users', as(ben))).body.data.find((u: any) => u.id === eve.agent.id).status === 'offline');
    });
  });

  describe('sync', () => {
    it('refuses pushes of what the server owns: the directory, a sender, receipts, a conversation delete', async () => {
      const g = await group(ana, [ben]);
      const m = await send(ana, g.id, 'mine');
      const change = (entityType: string, operation: string, extra: Record<string, unknown>) => ({ changeId: randomUUID(), entityType, operation, timestamp: Date.now(), ...extra });
      const res = await app.api('POST', '/api/sync', {
        ...as(ana),
        headers: { 'x-device-id': 'ana-owned' },
        body: {
          deviceId: 'ana-owned',
          changes: [
            change('users', 'update', { id: ana.agent.id, data: { name: 'Boss' } }),
            change('messages', 'create', { data: { conversationId: g.id, clientMessageId: cid(), content: 'x', senderId: ben.agent.id } }),
            change('messages', 'create', { data: { conversationId: g.id, clientMessageId: cid(), content: 'x', readBy: [ben.agent.id] } }),
            change('messages', 'update', { id: m.id, data: { deliveredTo: [ben.agent.id] } }),
            change('conversations', 'delete', { id: g.id }),
            change('messages', 'update', { id: m.id, data: { content: 'edited offline' } }),
          ],
        },
      });
      expect(res.status, res.text).toBe(200);
      const acks = res.body.data.acknowledged;
      expect(acks.map((a: any) => a.success)).toEqual([false, false, false, false, false, true]);
      expect(acks.slice(0, 5).map((a: any) => a.code)).toEqual(['VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED']);
      const me = await app.api('GET', '/api/users/me', as(ana));
      expect(me.body.data.name).not.toBe('Boss');
      const page = await app.api('GET', `/api/conversations/${g.id}/messages`, as(ben));
      expect(page.body.data.messages.map((x: any) => [x.content, x.senderId])).toEqual([['edited offline', ana.agent.id]]);
      expect((await app.api('GET', `/api/conversations/${g.id}`, as(ana))).status).toBe(200);
    });

    it('catches a device up by the delta pull and by after=; a new participant gets the history, a removed one deletes', async () => {
      const g = await group(ana, [ben]);
      const base = await pull(cy);
      const m1 = await send(ana, g.id, 'one');
      const m2 = await send(ben, g.id, 'two');
      const benPull = await pull(ben);
      expect(benPull.changes.filter((c) => c.collection === 'messages' && [m1.id, m2.id].includes(c.id)).map((c) => c.data.content)).toEqual(['one', 'two']);
      const after = await app.api('GET', `/api/conversations/${g.id}/messages?after=${m1.id}`, as(ben));
      expect(after.body.data.messages.map((m: any) => m.id)).toEqual([m2.id]);

      // Cy joins: her next pull from her checkpoint brings the conversation and its history.
      expect((await pull(cy, base.nextVersion)).changes.map((c) => c.id)).not.toContain(m1.id);
      await app.api('POST', `/api/conversations/${g.id}/participants`, { ...as(ana), body: { userIds: [cy.agent.id] } });
      const joined = await pull(cy, base.nextVersion);
      const ids = joined.changes.map((c) => c.id);
      expect(ids).toEqual(expect.arrayContaining([g.id, m1.id, m2.id]));
      expect(joined.changes.find((c) => c.id === m1.id)!.op).toBe('upsert');

      // Ben leaves: his pull from his checkpoint deletes the conversation and its messages.
      expect((await app.api('DELETE', `/api/conversations/${g.id}/participants/${ben.agent.id}`, as(ben))).status).toBe(204);
      const left = await pull(ben, benPull.nextVersion);
      const deletes = left.changes.filter((c) => c.op === 'delete').map((c) => c.id);
      expect(deletes).toEqual(expect.arrayContaining([g.id, m1.id, m2.id]));
      const m3 = await send(ana, g.id, 'after ben left');
      expect((await pull(ben, left.nextVersion)).changes.map((c) => c.id)).not.toContain(m3.id);
    });

    it('takes a conversation and its messages pushed offline in one batch, by local ids, and a re-push is a duplicate', async () => {
      const device = `ana-offline-${backend}`;
      const convLocal = `local-conv-${seq++}`;
      const clientMessageId = cid();
      const batch = {
        deviceId: device,
        changes: [
          { changeId: randomUUID(), entityType: 'conversations', operation: 'create', localId: convLocal, timestamp: Date.now(), data: { type: 'group', title: 'Offline', participants: [ben.agent.id] } },
          { changeId: randomUUID(), entityType: 'messages', operation: 'create', localId: `lm-${seq}`, timestamp: Date.now(), data: { conversationLocalId: convLocal, clientMessageId, content: 'sent from the road' } },
          { changeId: randomUUID(), entityType: 'message', operation: 'create', localId: `lm2-${seq}`, timestamp: Date.now(), data: { conversationLocalId: convLocal, clientMessageId: cid(), content: 'x'.repeat(10_001) } },
        ],
      };
      const res = await app.api('POST', '/api/sync', { ...as(ana), headers: { 'x-device-id': device }, body: batch });
      expect(res.status, res.text).toBe(200);
      const list = res.body.data.acknowledged;
      expect(list.map((a: any) => a.success)).toEqual([true, true, false]);
      const [conv, msg] = list;
      const page = await app.api('GET', `/api/conversations/${conv.serverId}/messages`, as(ben));
      expect(page.body.data.messages.map((m: any) => [m.id, m.content, m.senderId])).toEqual([[msg.serverId, 'sent from the road', ana.agent.id]]);
      // The same message again (a new change id, same clientMessageId): the stored one.
      const again = await app.api('POST', '/api/sync', {
        ...as(ana),
        headers: { 'x-device-id': device },
        body: { deviceId: device, changes: [{ changeId: randomUUID(), entityType: 'messages', operation: 'create', timestamp: Date.now(), data: { conversationId: conv.serverId, clientMessageId, content: 'sent from the road' } }] },
      });
      const second = again.body.data.acknowledged[0];
      expect(second).toMatchObject({ success: true, status: 'duplicate', serverId: msg.serverId });
      // A device that names its own id keeps it; the same message sent again over REST is that one.
      const ownId = randomUUID();
      const sentWithId = cid();
      const pushed = await app.api('POST', '/api/sync', {
        ...as(ana),
        headers: { 'x-device-id': device },
        body: { deviceId: device, changes: [{ changeId: randomUUID(), id: ownId, entityType: 'messages', operation: 'create', timestamp: Date.now(), data: { conversationId: conv.serverId, clientMessageId: sentWithId, content: 'own id' } }] },
      });
      expect(pushed.body.data.acknowledged[0]).toMatchObject({ success: true, serverId: ownId });
      const resent = await app.api('POST', `/api/conversations/${conv.serverId}/messages`, { ...as(ana), body: { clientMessageId: sentWithId, content: 'own id' } });
      expect(resent.status, resent.text).toBe(200);
      expect(resent.body.data.id).toBe(ownId);
      // Pushing into a conversation you are not in is NOT_FOUND.
      const intruder = await app.api('POST', '/api/sync', {
        ...as(dee),
        headers: { 'x-device-id': 'dee-1' },
        body: { deviceId: 'dee-1', changes: [{ changeId: randomUUID(), entityType: 'messages', operation: 'create', timestamp: Date.now(), data: { conversationId: conv.serverId, clientMessageId: cid(), content: 'let me in' } }] },
      });
      expect(intruder.body.data.acknowledged[0]).toMatchObject({ success: false, code: 'NOT_FOUND' });
    });
  });
});
