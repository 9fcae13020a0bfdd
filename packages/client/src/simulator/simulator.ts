import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Delta, PushResult } from '@fieldsync/protocol/sync';
import { createClient, type FieldsyncClient } from '../client.js';
import { FieldsyncError } from '../errors.js';
import { FileStore } from '../file-store.js';
import { MemoryStore } from '../memory-store.js';
import { newId } from '../outbox.js';
import type { Store } from '../store.js';
import { checkRun, type AckRecord, type CheckResult, type DeviceCopy, type ServerRecord } from './checker.js';
import { Rng } from './random.js';
import { ManagedServer } from './server.js';

export interface SimulationOptions {
  /** Devices (phones) to simulate (50). */
  devices?: number;
  /** How long devices work before the final sync and checks, in seconds (60). */
  seconds?: number;
  /** Seeds every random choice of the run (1). Timing still varies from run to run. */
  seed?: number;
  /** A running server; without it the simulator starts its own. */
  url?: string;
  /** The admin API key of `url` (or of the database given by `databaseUrl`). */
  adminKey?: string;
  /** Run the simulator's own server on this PostgreSQL database instead of the embedded one. */
  databaseUrl?: string;
  /** Kill (SIGKILL or SIGTERM, alternately) and restart the simulator's own server now and then. */
  chaos?: boolean;
  /** Drop device sockets at random (the transport closes; the SDK reconnects). */
  dropSockets?: boolean;
  /** The share of push answers lost after the server processed the push (0.05). */
  lossRate?: number;
  /** Local writes per device per second (1). */
  opsPerSecond?: number;
  /** How often a device loses its network, per device per second (0.08). */
  offlineRate?: number;
  /** How often a device app restarts (from its store), per device per second (0.02). */
  restartRate?: number;
  /** Agents the devices belong to (devices / 2, rounded up): some agents have two phones. */
  agents?: number;
  /** Shared contacts and items created before the devices start (20 each). */
  contacts?: number;
  items?: number;
  /** Device stores: `file` (JSON lines in a temp dir; restarts keep the outbox) or `memory`. */
  store?: 'file' | 'memory';
  /** Conflict policies to set first, by collection (contacts: most_recent_wins, items: field_merge). */
  policies?: Record<string, string>;
  /** Progress lines (none by default). */
  log?: (line: string) => void;
}

export interface SimulationReport {
  seed: number;
  devices: number;
  agents: number;
  seconds: number;
  server: { url: string; own: boolean; database: string; kills: { SIGKILL: number; SIGTERM: number }; downtimeMs: number };
  /** Local writes, by `collection.operation`. */
  operations: Record<string, number>;
  /** Acknowledgements by status (`applied`, `conflict`, `duplicate`, `rejected`). */
  acknowledged: Record<string, number>;
  /** Refused changes by error code. */
  rejected: Record<string, number>;
  /** Conflicts by outcome, and by strategy. */
  conflicts: { byOutcome: Record<string, number>; byStrategy: Record<string, number> };
  retries: { total: number; byOperation: Record<string, number>; byCode: Record<string, number> };
  faults: { lostResponses: number; droppedSockets: number; offlinePeriods: number; deviceRestarts: number };
  /** From a change's acknowledgement to its arrival on the other online, connected devices. */
  lagMs: { samples: number; p50: number; p95: number; max: number };
  /** The final sync of every device. */
  settleMs: number;
  finalVersion: number;
  checks: CheckResult['stats'];
  violations: CheckResult['violations'];
  durationMs: number;
}

/** The fields a device edits (overlapping on purpose), and which of them carry unique values. */
const CONTACT_FIELDS = ['notes', 'company', 'lastName', 'doNotCall'] as const;
const ITEM_FIELDS = ['title', 'notes', 'priority', 'isCompleted', 'tags'] as const;
const CHECKED_FIELDS = { contacts: ['notes', 'company', 'lastName', 'firstName'], items: ['title', 'notes', 'priority', 'tags'] };
const TAG_FIELDS = { contacts: 'externalId', items: 'refId', messages: 'clientMessageId' };
/** Every collection a device holds (the checker compares each with the server). */
const COLLECTIONS = ['contacts', 'spaces', 'categories', 'items', 'users', 'conversations', 'messages'];
const HOT_RECORDS = 6;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const count = (map: Record<string, number>, key: string, n = 1) => (map[key] = (map[key] ?? 0) + n);

/** A JSON request to the server as `key` (the admin's or an agent's). */
async function api<T>(url: string, key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url + path, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed = text ? JSON.parse(text) : undefined;
  if (!res.ok || !parsed?.success) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return parsed.data as T;
}

/** Everything `key` may see, pulled from version 0 (tombstones included). */
async function pullAll(url: string, key: string): Promise<{ records: ServerRecord[]; latest: number }> {
  const records = new Map<string, ServerRecord>();
  let version = 0;
  let latest = 0;
  for (;;) {
    const delta = await api<Delta>(url, key, 'GET', `/api/sync/delta?version=${version}&limit=5000`);
    for (const c of delta.changes) records.set(`${c.collection}:${c.id}`, { collection: c.collection, id: c.id, data: { ...c.data, isDeleted: c.op === 'delete' || c.data.isDeleted === true } });
    version = delta.nextVersion;
    latest = delta.latestVersion;
    if (!delta.hasMore) return { records: [...records.values()], latest };
  }
}

/** Runs `task` over `items` with at most `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, task: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await task(items[i], i);
      }
    }),
  );
  return out;
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]);

interface Agent {
  code: string;
  id: string;
  apiKey: string;
}

/** One simulated phone: an SDK client behind a network the simulator controls. */
class Device {
  client!: FieldsyncClient;
  online = true;
  /** When the device last came online (for lag samples). */
  onlineSince = Date.now();
  readonly offline: [number, number][] = [];
  readonly timeline: { t: number; checkpoint: number }[] = [];
  readonly deletedSeen = new Set<string>();
  readonly written: string[] = [];
  /** How often each chat message arrived live (`receive_message`): never more than once. */
  readonly liveMessages = new Map<string, number>();
  private writes = 0;
  private readonly store: Store;

  constructor(
    readonly index: number,
    readonly deviceId: string,
    readonly agent: Agent,
    readonly rng: Rng,
    private readonly sim: Simulation,
    storePath: string | undefined,
  ) {
    this.store = storePath ? new FileStore(storePath, { fsync: false }) : new MemoryStore();
  }

  /** The network between this phone and the server: down while offline; loses some push answers. */
  private readonly network = async (input: string, init: RequestInit): Promise<Response> => {
    if (!this.online) throw new TypeError('fetch failed: the device is offline');
    const res = await fetch(input, init);
    if (init.method === 'POST' && this.sim.faultsOn && this.sim.netRng.chance(this.sim.lossRate)) {
      await res.arrayBuffer().catch(() => undefined);
      this.sim.faults.lostResponses++;
      throw new TypeError('fetch failed: connection reset (answer lost)');
    }
    return res;
  };

  async open(): Promise<void> {
    this.client = await createClient({
      url: this.sim.url,
      apiKey: this.agent.apiKey,
      deviceId: this.deviceId,
      store: this.store,
      fetch: this.network,
      backoff: { baseMs: 100, maxMs: 2000, maxAttempts: 4 },
      random: this.sim.netRng.next,
      autoSyncDelayMs: 100,
      requestTimeoutMs: 10_000,
      deviceInfo: { platform: 'sim', appVersion: '1.0.0', networkType: 'wifi' },
    });
    const c = this.client;
    c.on('acknowledged', ({ change, ack, at }) => {
      this.sim.acks.push({
        device: this.deviceId,
        changeId: change.changeId,
        collection: change.collection,
        id: change.id,
        operation: change.operation,
        timestamp: change.timestamp,
        data: change.data,
        success: ack.success,
        status: ack.status,
        version: ack.version,
        code: ack.code,
      });
      count(this.sim.report.acknowledged, ack.success ? ack.status : 'rejected');
      if (!ack.success) count(this.sim.report.rejected, ack.code ?? 'unknown');
      if (ack.success && ack.status !== 'duplicate' && ack.version !== undefined) this.sim.commits.push({ device: this, version: ack.version, at });
    });
    c.on('conflict', ({ change, conflict }) => {
      for (let i = this.sim.acks.length - 1; i >= 0; i--) {
        const ack = this.sim.acks[i];
        if (ack.device === this.deviceId && ack.changeId === change.changeId) {
          ack.outcome = conflict.outcome;
          break;
        }
      }
      count(this.sim.report.conflicts.byOutcome, conflict.outcome);
      count(this.sim.report.conflicts.byStrategy, conflict.strategy);
    });
    c.on('retry', (r) => {
      this.sim.report.retries.total++;
      count(this.sim.report.retries.byOperation, r.operation);
      count(this.sim.report.retries.byCode, r.code);
    });
    c.on('change', (e) => {
      if (e.change) this.written.push(e.change.changeId);
      if (e.op === 'delete' && e.source === 'remote') this.deletedSeen.add(`${e.collection}:${e.id}`);
    });
    c.on('syncStateChanged', (s) => {
      const last = this.timeline[this.timeline.length - 1];
      if (!last || s.checkpoint > last.checkpoint) this.timeline.push({ t: Date.now(), checkpoint: s.checkpoint });
    });
    c.on('message', (message) => this.liveMessages.set(message.id, (this.liveMessages.get(message.id) ?? 0) + 1));
    c.on('error', () => undefined); // background failures surface as retries and in the final checks
  }

  /** Initial sync, then live. */
  async start(): Promise<void> {
    await this.open();
    await this.syncSettled();
    this.client.connect();
  }

  /** The device's working life: writes, network loss, app restarts, until `until`. */
  async run(until: number): Promise<void> {
    const { sim, rng } = this;
    const meanGap = 1000 / sim.opsPerSecond;
    while (Date.now() < until) {
      const gap = Math.min(rng.exponential(meanGap), until - Date.now());
      await sleep(Math.max(0, gap));
      if (Date.now() >= until) break;
      // Rates are per second: the chance within this gap.
      const seconds = gap / 1000;
      if (this.online && rng.chance(sim.offlineRate * seconds)) this.goOffline(rng.between(300, 3000));
      if (sim.restartRate > 0 && rng.chance(sim.restartRate * seconds)) await this.restart();
      if (sim.dropSockets && this.online && rng.chance(0.05)) {
        this.client.socket?.io.engine?.close();
        sim.faults.droppedSockets++;
      }
      await this.act().catch((error) => {
        if (!(error instanceof FieldsyncError && error.code === 'NOT_FOUND')) throw error;
      });
    }
  }

  private goOffline(ms: number): void {
    this.online = false;
    this.sim.faults.offlinePeriods++;
    const from = Date.now();
    this.client.disconnect();
    setTimeout(() => {
      this.offline.push([from, Date.now()]);
      this.online = true;
      this.onlineSince = Date.now();
      if (this.sim.settling) return;
      try {
        this.client.connect();
      } catch (error) {
        // The app is being restarted (or the run is over): restart() connects the new client.
        if (!(error instanceof FieldsyncError && error.code === 'CLOSED')) throw error;
      }
    }, ms);
  }

  /** The app is killed and started again on its store. */
  private async restart(): Promise<void> {
    this.sim.faults.deviceRestarts++;
    await this.client.close();
    await this.open();
    if (this.online) this.client.connect();
  }

  /** One local write: an edit of a shared record (often a hot one), a create or a delete. */
  private async act(): Promise<void> {
    const { rng, sim, client } = this;
    // Every written value is unique, so the checker can tell which write a field holds.
    const value = () => `${this.index}#${++this.writes}`;
    const tag = () => `${sim.runId}:${this.deviceId}:${++this.writes}`;
    const choose = async (collection: 'contacts' | 'items') => {
      const hot = (await Promise.all(sim.hot[collection].map((id) => client.get(collection, id)))).filter((r) => r !== undefined);
      const all = await client.list(collection as string, { where: collection === 'items' ? { spaceId: sim.spaceId } : undefined });
      if (hot.length > 0 && rng.chance(0.5)) return rng.pick(hot);
      return all.length > 0 ? rng.pick(all) : undefined;
    };
    const op = rng.weighted({
      'contacts.update': 30,
      'items.update': 30,
      'items.create': 12,
      'contacts.create': 6,
      'items.delete': 8,
      'contacts.delete': 3,
      'messages.create': 10,
      'messages.read': 3,
    });
    if (op === 'messages.create') {
      // Online or not: the message waits in the outbox, and its clientMessageId keeps it single.
      await client.sendMessage(sim.conversationId, value(), { clientMessageId: tag() });
      count(sim.report.operations, op);
      return;
    }
    if (op === 'messages.read') {
      const messages = await client.list('messages', { where: (m) => m.conversationId === sim.conversationId && m.version > 0 });
      const last = messages.sort((a, b) => Number(a.version) - Number(b.version)).at(-1);
      if (!this.online || !last) return;
      await client.markRead(sim.conversationId, last.id).catch((error) => {
        if (!(error instanceof FieldsyncError)) throw error; // offline, the server restarting: read later
      });
      count(sim.report.operations, op);
      return;
    }
    const [collection, operation] = op.split('.') as ['contacts' | 'items', 'create' | 'update' | 'delete'];
    if (operation === 'create') {
      if (collection === 'contacts') await client.create('contacts', { firstName: value(), phonePrimary: sim.phone(), externalId: tag() });
      else await client.create('items', { spaceId: sim.spaceId, title: value(), refId: tag() });
    } else {
      const target = await choose(collection);
      if (!target) return;
      // Keep the hot records alive: they are what devices fight over.
      if (operation === 'delete') {
        if (sim.hot[collection].includes(target.id) || (await client.list(collection)).length < 8) return;
        await client.delete(collection, target.id);
      } else {
        const names = collection === 'contacts' ? CONTACT_FIELDS : ITEM_FIELDS;
        const patch: Record<string, unknown> = {};
        for (const field of [rng.pick(names), rng.pick(names)]) {
          if (field === 'doNotCall' || field === 'isCompleted') patch[field] = rng.chance(0.5);
          else if (field === 'tags') patch[field] = [value()];
          else patch[field] = value();
        }
        await client.update(collection, target.id, patch);
      }
    }
    count(sim.report.operations, op);
  }

  /** Syncs until the outbox is empty (the final sync: the server may still be restarting). */
  async syncSettled(deadline = Date.now() + 120_000): Promise<void> {
    for (;;) {
      try {
        await this.client.sync();
        if (this.client.state.pending === 0) return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(250);
      }
    }
  }
}

/** The state of one run, shared by its devices. */
class Simulation {
  url = '';
  runId = '';
  spaceId = '';
  conversationId = '';
  faultsOn = true;
  settling = false;
  lossRate: number;
  opsPerSecond: number;
  offlineRate: number;
  restartRate: number;
  dropSockets: boolean;
  readonly netRng: Rng;
  readonly acks: AckRecord[] = [];
  readonly commits: { device: Device; version: number; at: number }[] = [];
  readonly hot = { contacts: [] as string[], items: [] as string[] };
  readonly faults = { lostResponses: 0, droppedSockets: 0, offlinePeriods: 0, deviceRestarts: 0 };
  report: Pick<SimulationReport, 'operations' | 'acknowledged' | 'rejected' | 'conflicts' | 'retries'> = {
    operations: {},
    acknowledged: {},
    rejected: {},
    conflicts: { byOutcome: {}, byStrategy: {} },
    retries: { total: 0, byOperation: {}, byCode: {} },
  };
  private phones = 0;
  private readonly phoneBase: number;

  constructor(
    readonly opts: SimulationOptions,
    readonly rng: Rng,
  ) {
    this.lossRate = opts.lossRate ?? 0.05;
    this.opsPerSecond = opts.opsPerSecond ?? 1;
    this.offlineRate = opts.offlineRate ?? 0.08;
    this.restartRate = opts.store === 'memory' ? 0 : (opts.restartRate ?? 0.02);
    this.dropSockets = opts.dropSockets ?? false;
    this.netRng = new Rng((opts.seed ?? 1) * 7919 + 17);
    // Not from the seed: a rerun of the same seed against the same server must not reuse numbers.
    this.phoneBase = Math.floor(Math.random() * 7_000_000);
  }

  /** A valid US number in E.164 no other device of this run uses. */
  phone(): string {
    return `+1415${String(2_000_000 + ((this.phoneBase + ++this.phones) % 7_999_999)).padStart(7, '0')}`;
  }
}

/**
 * Runs a fleet of SDK devices against a server, then syncs everyone and checks convergence,
 * acknowledged changes, duplicates and resurrected deletes. The report's `violations` is empty
 * when everything held.
 *
 * @example
 * const report = await runSimulation({ devices: 6, seconds: 8, seed: 7, chaos: true });
 * console.log(formatReport(report));
 */
export async function runSimulation(opts: SimulationOptions = {}): Promise<SimulationReport> {
  const started = Date.now();
  const log = opts.log ?? (() => undefined);
  const seed = opts.seed ?? 1;
  const rng = new Rng(seed);
  const sim = new Simulation(opts, rng);
  const deviceCount = opts.devices ?? 50;
  const agentCount = Math.max(1, Math.min(deviceCount, opts.agents ?? Math.ceil(deviceCount / 2)));
  const seconds = opts.seconds ?? 60;
  sim.runId = `sim${seed}-${newId().slice(0, 8)}`;

  let own: ManagedServer | undefined;
  let adminKey = opts.adminKey;
  if (opts.url) {
    if (!adminKey) throw new Error('--url needs --admin-key');
    if (opts.chaos) log('chaos needs the simulator\'s own server: ignored with --url');
    sim.url = opts.url.replace(/\/+$/, '');
  } else {
    adminKey ??= `fsk_sim_${newId().replace(/-/g, '')}`;
    log(`starting a server on ${opts.databaseUrl ? 'PostgreSQL' : 'the embedded database'}...`);
    own = await ManagedServer.start({ adminKey, databaseUrl: opts.databaseUrl });
    sim.url = own.url;
  }
  const storeDir = opts.store === 'memory' ? undefined : await mkdtemp(join(tmpdir(), 'fieldsync-sim-devices-'));
  const kills = { SIGKILL: 0, SIGTERM: 0 };
  let downtimeMs = 0;
  const devices: Device[] = [];

  try {
    // Setup: policies, agents, a shared space, shared contacts and items.
    const policies: Record<string, string> = { contacts: 'most_recent_wins', items: 'field_merge', ...opts.policies };
    for (const [collection, strategy] of Object.entries(policies)) {
      await api(sim.url, adminKey, 'PUT', `/api/conflict-policies/${collection}`, { strategy });
    }
    const agents = await pool(Array.from({ length: agentCount }, (_, i) => i), 8, async (i) => {
      const code = `${sim.runId}-a${i}`;
      const data = await api<{ agent: { id: string }; apiKey: string }>(sim.url, adminKey, 'POST', '/api/agents', { agentCode: code, name: `Sim agent ${i}` });
      return { code, id: data.agent.id, apiKey: data.apiKey };
    });
    const space = await api<{ id: string }>(sim.url, adminKey, 'POST', '/api/spaces', {
      name: `Simulation ${sim.runId}`,
      collaborators: agents.map((a) => ({ userId: a.id, role: 'editor' })),
    });
    sim.spaceId = space.id;
    // The team chat every agent is in (its creator, the admin, too).
    const conversation = await api<{ id: string }>(sim.url, adminKey, 'POST', '/api/conversations', {
      type: 'group',
      title: `Simulation ${sim.runId}`,
      participants: agents.map((a) => a.id),
    });
    sim.conversationId = conversation.id;
    const seedChanges = [
      ...Array.from({ length: opts.contacts ?? 20 }, (_, i) => ({
        changeId: newId(),
        id: newId(),
        entityType: 'contacts',
        operation: 'create' as const,
        timestamp: Date.now(),
        data: { firstName: `Seed ${i}`, phonePrimary: sim.phone(), externalId: `${sim.runId}:seed:c${i}` },
      })),
      ...Array.from({ length: opts.items ?? 20 }, (_, i) => ({
        changeId: newId(),
        id: newId(),
        entityType: 'items',
        operation: 'create' as const,
        timestamp: Date.now(),
        data: { spaceId: space.id, title: `Seed item ${i}`, refId: `${sim.runId}:seed:i${i}` },
      })),
    ];
    const seeded = await api<PushResult>(sim.url, adminKey, 'POST', '/api/sync', { deviceId: `${sim.runId}-seed`, changes: seedChanges }, { 'x-device-id': `${sim.runId}-seed` });
    const created = seedChanges.filter((c, i) => {
      const ack = seeded.acknowledged[i];
      // A number another client already uses (a server with other data) just means one seed fewer.
      if (!ack?.success) return false;
      sim.acks.push({ device: 'seed', changeId: c.changeId, collection: c.entityType, id: c.id, operation: 'create', timestamp: c.timestamp, data: c.data, success: true, status: ack.status, version: ack.version });
      return true;
    });
    sim.hot.contacts = created.filter((c) => c.entityType === 'contacts').slice(0, HOT_RECORDS).map((c) => c.id);
    sim.hot.items = created.filter((c) => c.entityType === 'items').slice(0, HOT_RECORDS).map((c) => c.id);

    // Devices: initial sync, then live.
    for (let i = 0; i < deviceCount; i++) {
      const id = `${sim.runId}-d${i}`;
      devices.push(new Device(i, id, agents[i % agentCount], new Rng(seed * 1000 + i + 1), sim, storeDir ? join(storeDir, `${id}.jsonl`) : undefined));
    }
    log(`${agentCount} agents, ${deviceCount} devices: initial sync...`);
    await pool(devices, 10, (d) => d.start());

    // The working period, with chaos beside it.
    log(`running for ${seconds} s${opts.chaos && own ? ' with chaos' : ''}...`);
    const until = Date.now() + seconds * 1000;
    let chaosDone = Promise.resolve();
    if (opts.chaos && own) {
      const server = own;
      chaosDone = (async () => {
        const chaosRng = new Rng(seed * 31 + 5);
        let n = 0;
        // The first kill comes a quarter to half-way through (so short runs get one), then every 3-8 s.
        let next = Date.now() + chaosRng.between(0.25, 0.5) * seconds * 1000;
        while (Date.now() < until) {
          await sleep(Math.max(0, Math.min(next, until) - Date.now()));
          if (Date.now() >= until - 500) break;
          const signal: NodeJS.Signals = n++ % 2 === 0 ? 'SIGKILL' : 'SIGTERM';
          const down = Date.now();
          await server.kill(signal);
          kills[signal]++;
          log(`chaos: ${signal} the server`);
          await sleep(chaosRng.between(200, 1000));
          await server.boot();
          downtimeMs += Date.now() - down;
          next = Date.now() + chaosRng.between(3000, 8000);
        }
      })();
    }
    await Promise.all(devices.map((d) => d.run(until)));
    await chaosDone;

    // Settle: everyone online, no more faults, everyone syncs, then pulls once more.
    log('settling: final sync of every device...');
    sim.faultsOn = false;
    sim.settling = true;
    const settleStart = Date.now();
    for (const d of devices) d.client.disconnect();
    await sleep(0);
    for (const d of devices) d.online = true;
    await pool(devices, 10, (d) => d.syncSettled());
    await pool(devices, 10, (d) => d.syncSettled());
    const settleMs = Date.now() - settleStart;

    // Check.
    log('checking...');
    const server: Record<string, ServerRecord[]> = {};
    let finalVersion = 0;
    for (const agent of agents) {
      const pulled = await pullAll(sim.url, agent.apiKey);
      server[agent.code] = pulled.records;
      finalVersion = Math.max(finalVersion, pulled.latest);
    }
    const copies: DeviceCopy[] = await Promise.all(devices.map(async (d) => ({
      device: d.deviceId,
      scope: d.agent.code,
      records: Object.fromEntries(await Promise.all(COLLECTIONS.map(async (c) => [c, (await d.client.list(c)) as Record<string, unknown>[]]))),
      liveMessages: Object.fromEntries(d.liveMessages),
      pending: d.client.state.pending,
      deletedSeen: [...d.deletedSeen],
      written: d.written,
    })));
    const result = checkRun({ server, devices: copies, acks: sim.acks, policies, checkedFields: CHECKED_FIELDS, tagFields: TAG_FIELDS });

    return {
      seed,
      devices: deviceCount,
      agents: agentCount,
      seconds,
      server: { url: sim.url, own: own !== undefined, database: opts.url ? 'external' : opts.databaseUrl ? 'postgres' : 'pglite', kills, downtimeMs },
      ...sim.report,
      faults: sim.faults,
      lagMs: lagOf(sim.commits, devices),
      settleMs,
      finalVersion,
      checks: result.stats,
      violations: result.violations,
      durationMs: Date.now() - started,
    };
  } finally {
    await Promise.all(devices.map((d) => d.client?.close().catch(() => undefined)));
    await own?.stop();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  }
}

/**
 * Live lag: for every change a device committed, how long until each other device that was
 * online throughout reached its version.
 */
function lagOf(commits: { device: Device; version: number; at: number }[], devices: Device[]): SimulationReport['lagMs'] {
  const samples: number[] = [];
  for (const { device, version, at } of commits) {
    for (const other of devices) {
      if (other === device || other.onlineSince > at) continue;
      const reached = firstReaching(other.timeline, version);
      if (!reached) continue;
      if (other.offline.some(([from, to]) => from < reached.t && to > at)) continue;
      samples.push(Math.max(0, reached.t - at));
    }
  }
  samples.sort((a, b) => a - b);
  return { samples: samples.length, p50: percentile(samples, 50), p95: percentile(samples, 95), max: samples[samples.length - 1] ?? 0 };
}

/** The first point of a timeline (checkpoints only grow) at or beyond `version`: a binary search. */
function firstReaching(timeline: { t: number; checkpoint: number }[], version: number): { t: number; checkpoint: number } | undefined {
  let lo = 0;
  let hi = timeline.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (timeline[mid].checkpoint >= version) hi = mid;
    else lo = mid + 1;
  }
  return timeline[lo];
}
