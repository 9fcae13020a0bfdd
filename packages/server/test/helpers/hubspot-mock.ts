import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An object the mock holds, as HubSpot would: its HubSpot id and properties. */
export interface MockObject {
  id: string;
  properties: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

/** What the next request(s) get instead of a normal answer. */
export interface Scripted {
  status: number;
  /** Retry-After header value. */
  retryAfter?: string;
  /** Delay before answering (a slow HubSpot). */
  delayMs?: number;
  /** Only requests whose path contains this. */
  pathIncludes?: string;
}

export interface HubspotMock {
  url: string;
  /** Objects by type (contacts, deals, notes) and by unique id property value (fieldsync_id). */
  objects: Map<string, Map<string, MockObject>>;
  /** Associations as `fromType:fromId->toType:toId:type`. */
  associations: Set<string>;
  /** Every request: method, path, status answered, inputs count, when. */
  requests: { path: string; status: number; inputs: number; at: number; ids: string[] }[];
  /** How many times each unique id was sent in an upsert (by type). */
  sends: Map<string, number>;
  /** Answers the next requests with these, in order (then normally). */
  script(...answers: Scripted[]): void;
  /** Every request waits this long (0: none). */
  setDelay(ms: number): void;
  /** Answers every request with this status until cleared (undefined). */
  setDown(status: number | undefined): void;
  reset(): void;
  close(): Promise<void>;
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json;charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
};
const errorBody = (status: number, message: string, category: string) => ({ status: 'error', message, correlationId: crypto.randomUUID(), category, statusCode: status });

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

/**
 * A local server that answers HubSpot's CRM v3 batch upsert (contacts, deals, notes, matched on
 * an `idProperty` of unique values) and batch association create closely enough for
 * `@hubspot/api-client`, checks the bearer token and HubSpot's limit of 100 inputs, and answers
 * 429 with Retry-After, 5xx and slow responses on command.
 */
export async function startHubspotMock(opts: { token: string | string[] }): Promise<HubspotMock> {
  const tokens = new Set(Array.isArray(opts.token) ? opts.token : [opts.token]);
  const objects = new Map<string, Map<string, MockObject>>();
  const associations = new Set<string>();
  const requests: HubspotMock['requests'] = [];
  const sends = new Map<string, number>();
  let scripted: Scripted[] = [];
  let delay = 0;
  let down: number | undefined;
  let nextId = 1000;

  const typeStore = (type: string) => {
    let store = objects.get(type);
    if (!store) objects.set(type, (store = new Map()));
    return store;
  };
  const findById = (type: string, id: string) => [...typeStore(type).values()].find((o) => o.id === id);

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const record = (status: number, inputs = 0, ids: string[] = []) => requests.push({ path, status, inputs, at: Date.now(), ids });
    let body: { inputs?: unknown[] } | undefined;
    try {
      body = (await readBody(req)) as { inputs?: unknown[] } | undefined;
    } catch {
      record(400);
      return json(res, 400, errorBody(400, 'Invalid JSON', 'VALIDATION_ERROR'));
    }
    const inputs = Array.isArray(body?.inputs) ? body.inputs : [];
    const index = scripted.findIndex((s) => !s.pathIncludes || path.includes(s.pathIncludes));
    const script = index >= 0 ? scripted.splice(index, 1)[0] : undefined;
    const wait = script?.delayMs ?? delay;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const status = script?.status ?? down;
    if (status !== undefined && status !== 200) {
      record(status, inputs.length);
      const headers: Record<string, string> = script?.retryAfter ? { 'retry-after': script.retryAfter } : {};
      if (status === 429) return json(res, 429, { ...errorBody(429, 'You have reached your ten_secondly_rolling limit.', 'RATE_LIMITS'), policyName: 'TEN_SECONDLY_ROLLING' }, headers);
      return json(res, status, errorBody(status, `Scripted ${status}`, 'INTERNAL_ERROR'), headers);
    }
    if (!tokens.has((req.headers.authorization ?? '').replace(/^Bearer /, ''))) {
      record(401, inputs.length);
      return json(res, 401, errorBody(401, 'Authentication credentials not found.', 'INVALID_AUTHENTICATION'));
    }
    if (inputs.length > 100) {
      record(400, inputs.length);
      return json(res, 400, errorBody(400, 'Batch size too large: at most 100 inputs', 'VALIDATION_ERROR'));
    }
    const now = new Date().toISOString();

    const upsert = /^\/crm\/v3\/objects\/(contacts|deals|notes)\/batch\/upsert$/.exec(path);
    if (req.method === 'POST' && upsert) {
      const type = upsert[1];
      const store = typeStore(type);
      const seen = new Set<string>();
      const results: unknown[] = [];
      for (const raw of inputs as { id?: unknown; idProperty?: unknown; properties?: Record<string, unknown> }[]) {
        if (typeof raw.id !== 'string' || raw.idProperty !== 'fieldsync_id' || typeof raw.properties !== 'object') {
          record(400, inputs.length);
          return json(res, 400, errorBody(400, 'Each input needs id, idProperty and properties', 'VALIDATION_ERROR'));
        }
        if (seen.has(raw.id)) {
          record(400, inputs.length);
          return json(res, 400, errorBody(400, `Duplicate id ${raw.id} in batch`, 'VALIDATION_ERROR'));
        }
        seen.add(raw.id);
        const properties = Object.fromEntries(Object.entries(raw.properties ?? {}).map(([k, v]) => [k, String(v)]));
        const existing = store.get(raw.id);
        const isNew = !existing;
        const obj: MockObject = existing
          ? { ...existing, properties: { ...existing.properties, ...properties }, updatedAt: now }
          : { id: String(nextId++), properties: { ...properties, fieldsync_id: raw.id }, createdAt: now, updatedAt: now };
        store.set(raw.id, obj);
        sends.set(`${type}:${raw.id}`, (sends.get(`${type}:${raw.id}`) ?? 0) + 1);
        results.push({ id: obj.id, properties: obj.properties, createdAt: obj.createdAt, updatedAt: obj.updatedAt, archived: false, new: isNew });
      }
      record(200, inputs.length, [...seen]);
      return json(res, 200, { status: 'COMPLETE', results, startedAt: now, completedAt: now });
    }

    const associate = /^\/crm\/v3\/associations\/(\w+)\/(\w+)\/batch\/create$/.exec(path);
    if (req.method === 'POST' && associate) {
      const [, from, to] = associate;
      const results: unknown[] = [];
      for (const raw of inputs as { from?: { id?: string }; to?: { id?: string }; type?: string }[]) {
        if (!raw.from?.id || !raw.to?.id || !raw.type || !findById(from, raw.from.id) || !findById(to, raw.to.id)) {
          record(400, inputs.length);
          return json(res, 400, errorBody(400, `Unknown object in association ${JSON.stringify(raw)}`, 'VALIDATION_ERROR'));
        }
        associations.add(`${from}:${raw.from.id}->${to}:${raw.to.id}:${raw.type}`);
        results.push({ from: { id: raw.from.id }, to: [{ id: raw.to.id, type: raw.type }] });
      }
      record(201, inputs.length);
      return json(res, 201, { status: 'COMPLETE', results, startedAt: now, completedAt: now });
    }
    record(404);
    return json(res, 404, errorBody(404, `No route ${req.method} ${path}`, 'OBJECT_NOT_FOUND'));
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error) => json(res, 500, errorBody(500, String(error), 'INTERNAL_ERROR')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    objects,
    associations,
    requests,
    sends,
    script: (...answers) => void scripted.push(...answers),
    setDelay: (ms) => void (delay = ms),
    setDown: (status) => void (down = status),
    reset() {
      scripted = [];
      delay = 0;
      down = undefined;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
