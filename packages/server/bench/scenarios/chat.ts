import { randomUUID } from 'node:crypto';
import { HttpClient } from '../lib/http.js';
import { withWorkers } from '../lib/ipc.js';
import { sleep } from '../../src/lib/child-server.js';
import { round, summarize, wallNow } from '../lib/stats.js';
import { metric, type Agent, type BenchContext, type Scenario } from '../lib/types.js';
import { latencyMetrics } from './common.js';
import { connectSocketIo, connectWs, fanoutMetrics, measureFanout, measureWsFanout, withWsServer } from './fanout.js';

/** Creates `count` agents of tenant A for a scenario (chat needs distinct users, not just devices). */
async function agentsFor(ctx: BenchContext, prefix: string, count: number): Promise<Agent[]> {
  const client = new HttpClient(ctx.server.url, { 'x-api-key': ctx.a.adminKey });
  try {
    const tag = randomUUID().slice(0, 6);
    const agents: Agent[] = [];
    for (let i = 0; i < count; i++) {
      const { data } = await client.json<{ data: { agent: { id: string; agentCode: string }; apiKey: string } }>('POST', '/api/agents', {
        agentCode: `${prefix}-${tag}-${i}`,
        name: `${prefix} ${i}`,
      });
      agents.push({ agentCode: data.agent.agentCode, apiKey: data.apiKey, userId: data.agent.id });
    }
    return agents;
  } finally {
    client.close();
  }
}

/** A group of `sender` and `members`, created by the sender. */
async function groupOf(ctx: BenchContext, sender: Agent, members: Agent[]): Promise<string> {
  const client = new HttpClient(ctx.server.url, { 'x-api-key': sender.apiKey });
  try {
    const { data } = await client.json<{ data: { id: string } }>('POST', '/api/conversations', {
      type: 'group',
      title: 'Bench group',
      participants: members.map((m) => m.userId),
    });
    return data.id;
  } finally {
    client.close();
  }
}

const GROUP = 50;

/**
 * A message to a 50-member group reaching every member's phone (SPEC §12, issue 11): sent over
 * REST by a member, `receive_message` on the other 49 phones and the sender's second device,
 * against the same payload broadcast by a bare ws server.
 */
export const chatGroup50: Scenario = {
  name: 'chat-group-50',
  title: 'a chat message reaching every phone of a 50-member group',
  budgetMs: ({ quick }) => (quick ? 90_000 : 180_000),
  async run(ctx) {
    const [sender, ...others] = await agentsFor(ctx, 'chat50', GROUP);
    const conversationId = await groupOf(ctx, sender, others);
    const devices = [...others.map((a, i) => ({ apiKey: a.apiKey, deviceId: `chat50-${i}` })), { apiKey: sender.apiKey, deviceId: 'chat50-sender-tablet' }];
    const receivers = devices.length;
    const messages = ctx.scale.fanoutChanges;
    const spacingMs = 150;
    const writer = new HttpClient(ctx.server.url, { 'x-api-key': sender.apiKey, 'x-device-id': 'chat50-sender-phone' });
    const send = async (marker: string) => {
      const answer = await writer.request('POST', `/api/conversations/${conversationId}/messages`, JSON.stringify({ clientMessageId: marker, content: marker }));
      if (answer.status !== 201) throw new Error(`chat send: ${answer.status}`);
    };
    try {
      return await withWorkers('sockets.ts', 1, async (workers) => {
        const server = await ctx.serverPhase(async () => {
          await connectSocketIo(ctx.server.url, workers, devices);
          await send(`warm-up-${randomUUID()}`);
          await sleep(500);
          return measureFanout(workers, receivers, messages, spacingMs, send);
        });
        const sample = (await workers[0].call('sample', 'receive_message')) as { message: { content: string } } | undefined;
        if (!sample?.message) throw new Error('no receive_message arrived to replay');
        await Promise.all(workers.map((w) => w.call('close')));
        const replay = (marker: string) => JSON.stringify({ ...sample, message: { ...sample.message, content: marker } });
        const limit = await withWsServer(async (ws) => {
          await connectWs(workers, ws.wsUrl, [{ room: 'a', count: receivers }]);
          const run = await measureWsFanout(workers, ws.url, replay, receivers, messages, spacingMs);
          await Promise.all(workers.map((w) => w.call('close')));
          return run;
        });
        return { metrics: fanoutMetrics('chat-group-50', server, limit, 20), details: { receivers, messages, spacingMs } };
      });
    } finally {
      writer.close();
    }
  },
};

const BACKLOG = 10_000;
const PUSH_BATCH = 1000;

/**
 * A phone that was offline while 10,000 messages arrived catches up (issue 11: <= 1 s): the
 * delta pull of `messages` from its checkpoint, pages of 5,000, until nothing is left.
 * Limit: the same rows read straight from PostgreSQL by the conversation's index.
 */
export const chatCatchUp: Scenario = {
  name: 'chat-catch-up',
  title: 'catching up on 10,000 chat messages after being offline',
  budgetMs: ({ quick }) => (quick ? 120_000 : 240_000),
  async run(ctx) {
    const [sender, reader] = await agentsFor(ctx, 'chatcu', 2);
    const conversationId = await groupOf(ctx, sender, [reader]);
    const readerClient = new HttpClient(ctx.server.url, { 'x-api-key': reader.apiKey, 'x-device-id': 'chatcu-reader' });
    const senderClient = new HttpClient(ctx.server.url, { 'x-api-key': sender.apiKey, 'x-device-id': 'chatcu-sender' });
    try {
      const pull = (version: number) =>
        readerClient.json<{ data: { changes: unknown[]; nextVersion: number; hasMore: boolean } }>('GET', `/api/sync/delta?version=${version}&collections=messages&limit=5000`);
      const checkpoint = (await pull(0)).data.nextVersion;
      for (let at = 0; at < BACKLOG; at += PUSH_BATCH) {
        const changes = Array.from({ length: PUSH_BATCH }, (_, k) => ({
          changeId: `cu-${at + k}`,
          entityType: 'messages',
          operation: 'create',
          timestamp: Date.now(),
          data: { conversationId, clientMessageId: `cu-${at + k}`, content: `Backlog message ${at + k}: the customer asked for a callback on Tuesday.` },
        }));
        const answer = await senderClient.json<{ data: { acknowledged: { success: boolean }[] } }>('POST', '/api/sync', { deviceId: 'chatcu-sender', changes }, 120_000);
        if (answer.data.acknowledged.some((a) => !a.success)) throw new Error('catch-up seed: a message was refused');
      }
      const reps = ctx.quick ? 3 : 7;
      const server = await ctx.serverPhase(async () => {
        const times: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t0 = wallNow();
          let version = checkpoint;
          let records = 0;
          for (;;) {
            const { data } = await pull(version);
            records += data.changes.length;
            version = data.nextVersion;
            if (!data.hasMore) break;
          }
          if (records < BACKLOG) throw new Error(`catch-up delivered ${records} messages, expected ${BACKLOG}`);
          times.push(wallNow() - t0);
        }
        return summarize(times);
      });
      const limitTimes: number[] = [];
      for (let r = 0; r < reps; r++) {
        const t0 = wallNow();
        const { rows } = await ctx.pool.query(
          `SELECT json_build_object('id', id, 'content', content, 'senderId', sender_id, 'version', version)::text AS data
             FROM messages WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY seq`,
          [ctx.a.id, conversationId],
        );
        if (rows.length < BACKLOG) throw new Error('catch-up limit read too few rows');
        limitTimes.push(wallNow() - t0);
      }
      const limit = summarize(limitTimes);
      const limitWhat = "the conversation's messages read straight from PostgreSQL by its index";
      return {
        metrics: [
          ...latencyMetrics('chat-catch-up.duration', `catch-up of ${BACKLOG.toLocaleString('en')} messages`, server, limit, limitWhat, { op: '<=', value: 1000 }),
          metric({ key: 'chat-catch-up.rate', label: 'messages/s at the median', unit: 'records/s', value: round(BACKLOG / (server.p50 / 1000)), better: 'higher' }),
        ],
        details: { backlog: BACKLOG, reps },
      };
    } finally {
      readerClient.close();
      senderClient.close();
    }
  },
};
