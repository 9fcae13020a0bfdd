/** HTTP load: devices pulling and pushing against the real server, from a process of their own. */
import { contactsCsv, PUSH_PHONE_BASE, pushBatch, type Known } from '../lib/data.js';
import { HttpClient } from '../lib/http.js';
import { serve } from '../lib/ipc.js';
import { checkpoints, closedLoop, sequential, type CheckpointMode } from '../lib/loops.js';
import { wallNow } from '../lib/stats.js';

/** A device of the load: its key, its id, and its index (which picks its phone range). */
interface Device {
  apiKey: string;
  deviceId: string;
  index: number;
  /** Records this device edits (disjoint between devices, so edits never conflict). */
  known?: Known[];
  /** The first phone of its new contacts, when not its index's range (`PUSH_PHONE_BASE`). */
  phoneBase?: number;
}

const clientOf = (url: string, d: Device) => new HttpClient(url, { 'x-api-key': d.apiKey, 'x-device-id': d.deviceId });

/** The end of a delta answer as the server writes it (the envelope's last fields). */
const DELTA_TAIL = /"nextVersion":(\d+),"hasMore":(true|false)\}\}$/;
const CHANGE_START = '{"collection":';
const checked = new WeakSet<HttpClient>();

/**
 * GET /api/sync/delta; returns the number of changes. A device's first answer is parsed in
 * full and checked against the light reading; later ones are read like a load tool reads them
 * (status, change count, tail), so the load processes spend their share of the machine on
 * requests rather than on parsing answers they do not use.
 */
async function pull(client: HttpClient, version: number, limit: number): Promise<{ changes: number; hasMore: boolean; nextVersion: number }> {
  const answer = await client.request('GET', `/api/sync/delta?version=${version}&limit=${limit}`);
  if (answer.status !== 200) throw new Error(`pull: ${answer.status} ${answer.text.slice(0, 300)}`);
  const tail = DELTA_TAIL.exec(answer.text.slice(-80));
  let changes = 0;
  for (let at = answer.text.indexOf(CHANGE_START); at !== -1; at = answer.text.indexOf(CHANGE_START, at + CHANGE_START.length)) changes++;
  const light = tail ? { changes, hasMore: tail[2] === 'true', nextVersion: Number(tail[1]) } : undefined;
  if (light && checked.has(client)) return light;
  const { data } = JSON.parse(answer.text) as { data: { changes: unknown[]; hasMore: boolean; nextVersion: number } };
  const full = { changes: data.changes.length, hasMore: data.hasMore, nextVersion: data.nextVersion };
  if (light && JSON.stringify(light) !== JSON.stringify(full)) throw new Error(`pull: the light reading ${JSON.stringify(light)} differs from the answer ${JSON.stringify(full)}`);
  if (light) checked.add(client);
  return full;
}

/** A device that pushes batches: new contacts from its own phone range, edits of its own records. */
function pusher(url: string, d: Device, size: number, creates: number) {
  const client = clientOf(url, d);
  let phone = d.phoneBase ?? PUSH_PHONE_BASE(d.index);
  const known = d.known ?? [];
  const byId = new Map(known.map((k) => [k.id, k]));
  const cursor = { i: 0 };
  return {
    client,
    /** Sends one batch; returns how many changes were applied. */
    async push(): Promise<number> {
      const body = pushBatch({ deviceId: d.deviceId, size, creates, nextPhone: () => phone++, known, cursor });
      const answer = await client.request('POST', '/api/sync', JSON.stringify(body));
      if (answer.status !== 200) throw new Error(`push: ${answer.status} ${answer.text.slice(0, 300)}`);
      const acks = (JSON.parse(answer.text) as { data: { acknowledged: { success: boolean; status?: string; serverId?: string; version?: number; error?: string }[] } }).data
        .acknowledged;
      let applied = 0;
      for (const ack of acks) {
        if (!ack.success) throw new Error(`push: change ${ack.status ?? ''} ${ack.error ?? ''}`);
        applied++;
        const record = ack.serverId ? byId.get(ack.serverId) : undefined;
        if (record && ack.version !== undefined) record.version = ack.version;
      }
      return applied;
    },
  };
}

serve({
  /** GET requests one after the other, round robin over `paths`, each answered 200 with `expect` items when given. */
  async getSequential(arg: { url: string; apiKey: string; paths: string[]; requests: number; warmup: number; minItems?: number }) {
    const client = new HttpClient(arg.url, { 'x-api-key': arg.apiKey });
    let items = 0;
    const run = await sequential(arg.requests, arg.warmup, async (i) => {
      const path = arg.paths[Math.abs(i) % arg.paths.length];
      const answer = await client.request('GET', path);
      if (answer.status !== 200) throw new Error(`GET ${path}: ${answer.status} ${answer.text.slice(0, 300)}`);
      const count = answer.text.split('"contactId":').length - 1;
      if (arg.minItems !== undefined && count < arg.minItems) throw new Error(`GET ${path}: ${count} items, expected at least ${arg.minItems}`);
      items += count;
    });
    client.close();
    return { ...run, items };
  },

  /** One device pulling a delta of `expect` changes again and again, from the checkpoints `mode` says. */
  async pullSequential(arg: { url: string; device: Device; version: number; limit: number; requests: number; warmup: number; expect: number; mode: CheckpointMode }) {
    const client = clientOf(arg.url, arg.device);
    const next = checkpoints(arg.version, arg.mode);
    const check = async () => {
      const answer = await pull(client, next(), arg.limit);
      if (answer.changes !== arg.expect) throw new Error(`expected ${arg.expect} changes, the pull returned ${answer.changes}`);
    };
    const run = await sequential(arg.requests, arg.warmup, check);
    client.close();
    return run;
  },

  /** Devices pulling back to back (closed loop); this process is `part` of `parts` of the load. */
  async pullConcurrent(arg: {
    url: string;
    devices: Device[];
    version: number;
    limit: number;
    durationMs: number;
    warmupMs: number;
    mode: CheckpointMode;
    part: number;
    parts: number;
  }) {
    const clients = arg.devices.map((d) => clientOf(arg.url, d));
    const next = checkpoints(arg.version, arg.mode, arg.part, arg.parts);
    const result = await closedLoop({
      concurrency: clients.length,
      durationMs: arg.durationMs,
      warmupMs: arg.warmupMs,
      op: async (i) => {
        await pull(clients[i], next(), arg.limit);
        return 1;
      },
    });
    for (const c of clients) c.close();
    return result;
  },

  /**
   * A new device downloading everything, page by page. Each repetition asks for one record
   * fewer per page, so no page is one the server's page cache holds from the repetition before.
   */
  async initialSync(arg: { url: string; device: Device; pageSize: number; reps: number }) {
    const reps: { records: number; ms: number; pages: number }[] = [];
    for (let r = 0; r < arg.reps; r++) {
      const pageSize = arg.pageSize - r;
      const client = clientOf(arg.url, { ...arg.device, deviceId: `${arg.device.deviceId}-${r}` });
      const t0 = wallNow();
      let version = 0;
      let records = 0;
      let pages = 0;
      for (; pages < 10_000; pages++) {
        const page = await pull(client, version, pageSize);
        records += page.changes;
        version = page.nextVersion;
        if (!page.hasMore) break;
      }
      reps.push({ records, ms: wallNow() - t0, pages: pages + 1 });
      client.close();
    }
    return reps;
  },

  /** One device pushing batches one after the other. */
  async pushSequential(arg: { url: string; device: Device; batches: number; warmup: number; size: number; creates: number }) {
    const device = pusher(arg.url, arg.device, arg.size, arg.creates);
    let applied = 0;
    const run = await sequential(arg.batches, arg.warmup, async (i) => {
      const n = await device.push();
      if (i >= 0) applied += n;
    });
    device.client.close();
    return { ...run, applied };
  },

  /** Devices pushing batches back to back (closed loop). */
  async pushConcurrent(arg: { url: string; devices: Device[]; durationMs: number; warmupMs: number; size: number; creates: number }) {
    const devices = arg.devices.map((d) => pusher(arg.url, d, arg.size, arg.creates));
    const result = await closedLoop({
      concurrency: devices.length,
      durationMs: arg.durationMs,
      warmupMs: arg.warmupMs,
      op: (i) => devices[i].push(),
    });
    for (const d of devices) d.client.close();
    return result;
  },

  /** POST /api/contacts/import with `count` generated contacts. */
  async importCsv(arg: { url: string; adminKey: string; count: number }) {
    const csv = contactsCsv(arg.count);
    const client = new HttpClient(arg.url, { 'x-api-key': arg.adminKey });
    const t0 = wallNow();
    const answer = await client.request('POST', '/api/contacts/import', csv, { 'content-type': 'text/csv' }, 600_000);
    const ms = wallNow() - t0;
    client.close();
    if (answer.status !== 200 && answer.status !== 201) throw new Error(`import: ${answer.status} ${answer.text.slice(0, 500)}`);
    return { ms, bytes: Buffer.byteLength(csv), answer: JSON.parse(answer.text).data as Record<string, unknown> };
  },
});
