import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

/*
 * Throws junk at every operation of the OpenAPI document and checks that each answer is a 4xx
 * with the error envelope (or a 2xx only where a request is harmless), never a 5xx, and that
 * nothing changed. Junk must never be valid input: if a new route legitimately accepts one of
 * these values, change the junk, not the checks.
 * Reproduce a failure with FUZZ_SEED=<seed printed in the failure>.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_f00d);
const BODY_LIMIT = 1024 * 1024;

/** mulberry32: small, fast, seeded. */
function rngOf(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick<T>(items: readonly T[]): T {
      return items[Math.floor(next() * items.length)];
    },
    uuid(): string {
      const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16)).join('');
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
    },
  };
}
type Rng = ReturnType<typeof rngOf>;

type Schema = Record<string, any>;
interface Operation {
  method: string;
  path: string;
  pathParams: string[];
  queryParams: string[];
  bodySchema?: Schema;
  key: string;
}

const SQL = "'; DROP TABLE contacts; --";
/** Path parameter values no route may take for a real record. */
const JUNK_PARAMS = [
  SQL,
  "1' OR '1'='1",
  '../../etc/passwd',
  '..',
  '-1',
  '0',
  '1e999',
  'NaN',
  '__proto__',
  'constructor',
  'x'.repeat(65),
  'x'.repeat(199),
  '😀🔥',
  'Zoë 北京',
  '%',
  '{"a":1}',
  '00000000-0000-0000-0000-00000000000g',
  ' ',
  'null',
];
/** Raw (already encoded) path segments: invalid percent-encoding, NUL, encoded slashes. */
const RAW_SEGMENTS = ['%E0%A4%A', '%FF%FE', '%C3%28', '%00', 'a%00b', '%2e%2e%2f%2e%2e', '%', 'x'.repeat(201)];
const JUNK_QUERIES = [
  'limit=abc&page=-1&version=1e999&x[y]=z',
  'limit=1e999',
  'version=-1',
  'version=99999999999999999999999999',
  'page=0&limit=0',
  'limit=1&limit=2',
  `search=${encodeURIComponent(SQL)}&agent=${encodeURIComponent(SQL)}`,
  `collections=${encodeURIComponent(SQL)}&deviceId=${encodeURIComponent(SQL)}`,
  'search=%00',
  'search=%FF%FE',
  'updatedSince=yesterday&includeDeleted=maybe',
  'format=xml&threshold=-5',
  `search=${'x'.repeat(5000)}`,
  '__proto__[admin]=1&constructor[prototype][x]=1',
  'unknownParam=1',
];
const CONTENT_TYPES = [
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/octet-stream',
  'text/csv',
  ';;;',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
];

/** A value of the schema's type and within its limits, or undefined when none is found. */
function validValue(schema: Schema, doc: Schema, rng: Rng, depth = 0): unknown {
  if (depth > 8) return undefined;
  if (schema.$ref) return validValue(resolveRef(schema.$ref, doc), doc, rng, depth + 1);
  if ('const' in schema) return schema.const;
  if (schema.enum) return schema.enum[0];
  const options = schema.anyOf ?? schema.oneOf;
  if (options) {
    for (const option of options) if (option.type !== 'null') return validValue(option, doc, rng, depth + 1);
    return null;
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t: string) => t !== 'null') : schema.type;
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [name, prop] of Object.entries<Schema>(schema.properties ?? {})) {
        const value = validValue(prop, doc, rng, depth + 1);
        if (value !== undefined) out[name] = value;
      }
      return out;
    }
    case 'array':
      return Array.from({ length: schema.minItems ?? 0 }, () => validValue(schema.items ?? {}, doc, rng, depth + 1));
    case 'integer':
    case 'number':
      return Math.max(schema.minimum ?? 0, Math.min(schema.maximum ?? 1, 1));
    case 'boolean':
      return true;
    case 'string':
      return validString(schema, rng);
    default:
      return undefined;
  }
}

function validString(schema: Schema, rng: Rng): string | undefined {
  if (schema.format === 'uuid') return rng.uuid();
  if (schema.format === 'email') return `fuzz${rng.int(1e6)}@example.com`;
  if (schema.format === 'date-time') return '2024-01-02T03:04:05.000Z';
  const min = schema.minLength ?? 0;
  const candidates = ['fuzz', 'fuzz-1', 'f', 'ab', '0', 'a1'].map((c) => c.padEnd(Math.max(min, c.length), 'z'));
  const pattern = schema.pattern ? new RegExp(schema.pattern, 'u') : undefined;
  return candidates.find((c) => (!pattern || pattern.test(c)) && c.length <= (schema.maxLength ?? Infinity));
}

function resolveRef(ref: string, doc: Schema): Schema {
  return ref.replace(/^#\//, '').split('/').reduce((node, part) => node?.[part], doc) ?? {};
}

/** A JSON value whose type the schema does not allow. */
function wrongValue(schema: Schema, rng: Rng): unknown {
  const types = new Set<string>();
  const collect = (s: Schema) => {
    if (s.anyOf || s.oneOf) (s.anyOf ?? s.oneOf).forEach(collect);
    else if (Array.isArray(s.type)) s.type.forEach((t: string) => types.add(t));
    else if (s.type) types.add(s.type);
    if (s.nullable) types.add('null');
  };
  collect(schema);
  const wrong: [string, unknown][] = [
    ['string', 12345],
    ['number', 'not a number'],
    ['integer', 1.5],
    ['boolean', 'yes'],
    ['object', [1, 2, 3]],
    ['array', { not: 'an array' }],
    ['null', false],
  ];
  const byType: [string, unknown][] = [
    ['string', 'text'],
    ['number', 1.5],
    ['integer', 7],
    ['boolean', true],
    ['object', { a: 1 }],
    ['array', ['a']],
    ['null', null],
  ];
  if (types.size === 0) return undefined;
  // An integer is also a number; for integer-only fields a fraction is the wrong number.
  const disallowed = byType.filter(([t]) => !types.has(t) && !(t === 'integer' && types.has('number')));
  const [, value] = rng.pick(disallowed.length > 0 ? disallowed : wrong);
  return value;
}

interface Sent {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  error?: string;
}

/** A raw HTTP request: any method, path bytes, headers and body, exactly as given. */
function send(url: URL, agent: http.Agent, method: string, path: string, headers: Record<string, string>, body?: Buffer | string) {
  return new Promise<Sent>((resolve) => {
    let settled = false;
    const req = http.request(
      { host: url.hostname, port: url.port, method, path, agent, headers: body === undefined ? headers : { 'content-length': String(Buffer.byteLength(body)), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          settled = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (e) => !settled && ((settled = true), resolve({ status: 0, headers: {}, text: '', error: e.message })));
      },
    );
    // The server may answer (413, 415) and close before the whole body is written.
    req.on('error', (e) => setTimeout(() => !settled && ((settled = true), resolve({ status: 0, headers: {}, text: '', error: e.message })), 200));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** One junk request. */
interface Case {
  name: string;
  path: string;
  query?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/**
 * What is wrong with the answer to a junk request, if anything: no answer, a 5xx, an error
 * without the envelope, or a 2xx where junk must be refused. A 2xx is fine for reads (an
 * operation with a query schema refuses names it does not know), for two writes harmless by
 * design (bulk reports per row; logging out an unknown token is a no-op) and when `may2xx`.
 */
function checkAnswer(op: Operation, c: Case, res: Sent, may2xx = false): string | undefined {
  const where = `${op.method} ${op.path} [${c.name}] -> ${res.status}`;
  if (res.error || res.status === 0) return `${where}: no answer (${res.error})`;
  if (res.status >= 500) return `${where}: ${res.text.slice(0, 200)}`;
  if (res.status >= 400) {
    let body: any;
    try {
      body = JSON.parse(res.text);
    } catch {
      body = undefined;
    }
    const ok = body?.success === false && typeof body.error === 'string' && typeof body.message === 'string';
    return ok ? undefined : `${where}: not the error envelope: ${res.text.slice(0, 200)}`;
  }
  const unknownQuery =
    c.query !== undefined && op.queryParams.length > 0 && [...new URLSearchParams(c.query).keys()].some((k) => !op.queryParams.includes(k));
  const harmless =
    may2xx ||
    (op.method === 'GET' && !unknownQuery) ||
    (op.method === 'POST' && op.path === '/api/contacts/bulk') ||
    (op.method === 'POST' && op.path === '/api/auth/logout');
  return harmless ? undefined : `${where}: junk was accepted: ${res.text.slice(0, 200)}`;
}

describe.each(backends)('bad input on %s', (backend) => {
  let app: TestApp;
  let url: URL;
  let operations: Operation[];
  let openapi: Schema;
  let docPaths: string[];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  /**
   * Row counts of every table and the tenant's latest version: what must not change. Sync
   * analytics and alerts are left out: junk sync requests are failed syncs, and counting them
   * (a periodic flush, an alert on failures per minute) is their job (docs/operations.md).
   */
  const snapshot = async () => {
    const { rows: tables } = await app.testDb.db.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables
        WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
          AND table_name NOT IN ('sync_analytics', 'sync_recent', 'alerts') ORDER BY table_name`,
    );
    const counts: Record<string, number> = {};
    for (const { table_name } of tables) {
      const { rows } = await app.testDb.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${table_name}"`);
      counts[table_name] = rows[0].n;
    }
    const delta = await app.api('GET', '/api/sync/delta?version=0&limit=1');
    expect(delta.status).toBe(200);
    return { latestVersion: delta.body.data.latestVersion as number, counts };
  };

  beforeAll(async () => {
    app = await startTestApp(backend);
    url = new URL(app.url);
    // Something to destroy: a contact and an agent, so junk has real rows to hit.
    expect((await app.api('POST', '/api/contacts', { body: { firstName: 'Keep', phonePrimary: uniquePhone() } })).status).toBe(201);
    expect((await app.api('POST', '/api/agents', { body: { agentCode: `keep-${backend}`, name: 'Keep' } })).status).toBe(201);
    const doc = await app.api('GET', '/docs/json');
    expect(doc.status).toBe(200);
    openapi = doc.body;
    docPaths = Object.keys(doc.body.paths);
    operations = [];
    for (const [path, item] of Object.entries<Record<string, Schema>>(doc.body.paths)) {
      for (const [method, op] of Object.entries<Schema>(item)) {
        if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
        const params: Schema[] = [...((item.parameters as unknown as Schema[]) ?? []), ...(op.parameters ?? [])];
        const json = op.requestBody?.content?.['application/json']?.schema;
        operations.push({
          method: method.toUpperCase(),
          path,
          pathParams: params.filter((p) => p.in === 'path').map((p) => p.name),
          queryParams: params.filter((p) => p.in === 'query').map((p) => p.name),
          bodySchema: json ? (json.$ref ? resolveRef(json.$ref, doc.body) : json) : undefined,
          key: app.adminKey,
        });
      }
    }
  });
  afterAll(async () => {
    agent.destroy();
    await app?.close();
  });

  it('finds the operations to fuzz in the OpenAPI document', () => {
    const names = operations.map((o) => `${o.method} ${o.path}`);
    for (const expected of ['POST /api/contacts', 'POST /api/contacts/bulk', 'POST /api/contacts/import', 'PATCH /api/contacts/{id}', 'POST /api/agents', 'POST /api/tenants', 'GET /api/sync/delta']) {
      expect(names).toContain(expected);
    }
  });

  it('answers every junk request to every operation with a 4xx envelope (or a harmless 2xx), never a 5xx, and changes nothing', async () => {
    const started = performance.now();
    const before = await snapshot();
    const problems: string[] = [];
    const sqlCreates: { op: Operation; c: Case }[] = [];
    let sentCount = 0;
    const exchange = async (op: Operation, c: Case) => {
      const headers: Record<string, string> = { 'x-api-key': op.key, ...c.headers };
      if (headers['x-api-key'] === '') delete headers['x-api-key'];
      sentCount++;
      return send(url, agent, op.method, c.query ? `${c.path}?${c.query}` : c.path, headers, c.body);
    };

    for (const [opIndex, op] of operations.entries()) {
      const rng = rngOf(SEED + opIndex);
      const fill = (value: (name: string) => string) => op.path.replace(/\{(\w+)\}/g, (_, name: string) => value(name));
      const junkPath = () => fill(() => encodeURIComponent(rng.pick(JUNK_PARAMS)));
      const uuidPath = () => fill(() => rng.uuid());
      const anyPath = () => (op.pathParams.length === 0 ? op.path : rng.next() < 0.5 ? junkPath() : uuidPath());
      const hasBody = op.method !== 'GET';
      const valid = op.bodySchema ? validValue(op.bodySchema, openapi, rng) : undefined;
      const props = Object.entries<Schema>(op.bodySchema?.properties ?? {});
      const isText = (s: Schema) => s.type === 'string' || (s.anyOf ?? s.oneOf ?? []).some((o: Schema) => o.type === 'string');
      const strings = props.filter(([, s]) => isText(s));
      const json = (value: unknown) => JSON.stringify(value);

      const cases: Case[] = [];
      const jsonCase = (name: string, body: string | Buffer, extra: Partial<Case> = {}) =>
        cases.push({ name, path: anyPath(), headers: { 'content-type': 'application/json' }, body, ...extra });

      // Path parameters: junk, raw bytes, valid-looking ids of nothing.
      if (op.pathParams.length > 0) {
        for (const value of JUNK_PARAMS) cases.push({ name: `path ${json(value)}`, path: fill(() => encodeURIComponent(value)) });
        for (const raw of RAW_SEGMENTS) cases.push({ name: `raw path ${raw.slice(0, 20)}`, path: fill(() => raw) });
        for (let i = 0; i < 3; i++) cases.push({ name: 'path uuid', path: uuidPath(), ...(hasBody && valid !== undefined ? { headers: { 'content-type': 'application/json' }, body: json(valid) } : {}) });
      }
      // Query strings: wrong types, unknown and nested names, NULs, invalid UTF-8.
      for (const query of JUNK_QUERIES) cases.push({ name: `query ${query.slice(0, 40)}`, path: anyPath(), query });
      // Bodies, for every method that takes one: the valid shape with one thing wrong, then junk.
      if (op.bodySchema && valid && typeof valid === 'object' && !Array.isArray(valid)) {
        for (const [name, schema] of props.slice(0, 8)) {
          const wrong = wrongValue(schema, rng);
          if (wrong !== undefined) jsonCase(`wrong type for ${name}`, json({ ...valid, [name]: wrong }));
        }
        jsonCase('unknown field', json({ ...valid, zzUnknownField: rng.int(100) }));
        jsonCase('server-owned fields', json({ ...valid, id: rng.uuid(), tenantId: rng.uuid(), isDeleted: true, version: 1, createdAt: 'x' }));
        if (strings.length > 0) {
          const [name] = rng.pick(strings);
          jsonCase(`1 MB string in ${name}`, json({ ...valid, [name]: 'x'.repeat(BODY_LIMIT - 1000) }));
          jsonCase(`NUL (escaped) in ${name}`, json({ ...valid, [name]: 'a\u0000b' }));
          jsonCase(`NUL (raw) in ${name}`, Buffer.concat([Buffer.from(`{"${name}":"a`), Buffer.from([0]), Buffer.from('b"}')]));
          jsonCase(`invalid UTF-8 in ${name}`, Buffer.concat([Buffer.from(`{"${name}":"a`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('b"}')]));
          jsonCase(`lone surrogate in ${name}`, `{"${name}":"a\\ud800b"}`);
          // SQL in every string field at once. With a path (a record that does not exist) it
          // must be refused; a create may legitimately store it as text, so creates run after
          // the unchanged-state check, where they must leave every table and row in place.
          const sql = Object.fromEntries(strings.map(([n]) => [n, SQL]));
          const sqlCase = { name: 'SQL in every string field', path: anyPath(), headers: { 'content-type': 'application/json' }, body: json({ ...valid, ...sql }) };
          if (op.pathParams.length > 0) cases.push(sqlCase);
          else sqlCreates.push({ op, c: sqlCase });
        }
        jsonCase('array where an object belongs', json([valid]));
      }
      if (hasBody) {
        jsonCase('10k-deep arrays', '['.repeat(10_000) + ']'.repeat(10_000));
        jsonCase('10k-deep objects', '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000));
        jsonCase('__proto__ key', '{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"x":1}}}');
        jsonCase('truncated JSON', '{"firstName":"a",');
        jsonCase('empty JSON body', '');
        jsonCase('whitespace body', '   \n ');
        for (const scalar of ['null', 'true', '0', '"x"', '[]', '{}', '1e999', '[[[]]]']) jsonCase(`scalar ${scalar}`, scalar);
        jsonCase('over the body limit', json({ junk: 'x'.repeat(BODY_LIMIT + 10) }));
        jsonCase('over the body limit (multi-byte)', json({ junk: 'é'.repeat(BODY_LIMIT / 2 + 10) }));
        cases.push({ name: 'no body, no content type', path: anyPath() });
        for (const contentType of CONTENT_TYPES) {
          cases.push({ name: `content type ${contentType}`, path: anyPath(), headers: { 'content-type': contentType }, body: json(valid ?? { a: 1 }) });
        }
      }
      // Credentials and device headers that must be refused before anything runs.
      cases.push({ name: 'junk API key', path: anyPath(), headers: { 'x-api-key': 'x'.repeat(rng.int(3000) + 1) } });
      cases.push({ name: 'junk bearer', path: anyPath(), headers: { 'x-api-key': '', authorization: `Bearer ${SQL.replace(/ /g, '')}` } });
      cases.push({ name: 'junk device id', path: anyPath(), headers: { 'x-device-id': "dev'; DROP--" } });
      cases.push({ name: 'junk agent code', path: anyPath(), headers: { 'x-agent-code': 'nobody-at-all' } });

      for (const c of cases) {
        const res = await exchange(op, c);
        const problem = checkAnswer(op, c, res);
        if (problem) problems.push(problem);
      }

      const after = await snapshot();
      if (JSON.stringify(after) !== JSON.stringify(before)) {
        problems.push(`${op.method} ${op.path}: state changed: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
        Object.assign(before, after);
      }
    }

    // SQL-looking text given to creates: stored or refused, never run, never a 5xx.
    for (const { op, c } of sqlCreates) {
      const problem = checkAnswer(op, c, await exchange(op, c), true);
      if (problem) problems.push(problem);
    }
    const afterSql = await snapshot();
    for (const [table, count] of Object.entries(before.counts)) {
      if (!(afterSql.counts[table] >= count)) problems.push(`SQL in creates: ${table} went from ${count} to ${afterSql.counts[table]} rows`);
    }

    const seconds = (performance.now() - started) / 1000;
    console.log(`[${backend}] fuzzed ${operations.length} operations with ${sentCount} junk requests in ${seconds.toFixed(1)} s (seed ${SEED})`);
    expect(problems, `seed ${SEED}`).toEqual([]);
    expect(sentCount).toBeGreaterThan(operations.length * 20);
  }, 120_000);

  it('answers unknown routes and methods with a 404 envelope', async () => {
    for (const [method, path] of [
      ['GET', '/api/nope'],
      ['POST', '/api/contacts/nope/deeper'],
      ['DELETE', '/api/contacts'],
      ['PATCH', '/api/agents'],
      ['GET', '/nope'],
      ['PUT', '/api/sync/delta'],
    ]) {
      const res = await send(url, agent, method, path, { 'x-api-key': app.adminKey });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(JSON.parse(res.text)).toMatchObject({ success: false, error: 'NOT_FOUND', message: expect.any(String) });
    }
    expect(docPaths.length).toBeGreaterThan(5);
  });

  it('answers URLs that do not decode, over-long parameters and unparseable HTTP with the envelope', async () => {
    for (const [path, status] of [
      ['/api/contacts/%E0%A4%A', 400],
      ['/api/contacts/%FF', 400],
      [`/api/contacts/${'x'.repeat(201)}`, 414],
    ] as const) {
      const res = await send(url, agent, 'GET', path, { 'x-api-key': app.adminKey });
      expect(res.status, path).toBe(status);
      expect(JSON.parse(res.text)).toMatchObject({ success: false, error: expect.any(String), message: expect.any(String) });
    }
    const huge = await send(url, agent, 'GET', `/api/contacts?search=${'x'.repeat(20_000)}`, { 'x-api-key': app.adminKey });
    expect(huge.status).toBe(431);
    expect(JSON.parse(huge.text)).toMatchObject({ success: false, error: 'HEADERS_TOO_LARGE', message: expect.any(String) });
    const garbage = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(url.port), url.hostname, () => socket.end('NOT HTTP AT ALL\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString('utf8')));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(garbage.slice(garbage.indexOf('\r\n\r\n') + 4))).toMatchObject({ success: false, error: 'BAD_REQUEST' });
  });

  it('answers a body over the 1 MB limit with a 413 envelope and writes nothing', async () => {
    const before = await snapshot();
    const body = JSON.stringify({ firstName: 'Big', phonePrimary: uniquePhone(), notes: 'x'.repeat(BODY_LIMIT) });
    const declared = await send(url, agent, 'POST', '/api/contacts', { 'x-api-key': app.adminKey, 'content-type': 'application/json' }, body);
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.text)).toMatchObject({ success: false, error: 'PAYLOAD_TOO_LARGE', message: expect.any(String) });
    // Chunked, with no content-length to refuse up front: counted while read.
    const chunked = await fetch(`${app.url}/api/contacts`, {
      method: 'POST',
      headers: { 'x-api-key': app.adminKey, 'content-type': 'application/json' },
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(body));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(await chunked.json()).toMatchObject({ success: false, error: 'PAYLOAD_TOO_LARGE' });
    expect(await snapshot()).toEqual(before);
  });

  it('answers an unsupported content type with a 415 envelope and writes nothing', async () => {
    const before = await snapshot();
    const body = JSON.stringify({ firstName: 'Typed', phonePrimary: uniquePhone() });
    for (const contentType of ['application/xml', 'text/plain', 'application/x-www-form-urlencoded', 'text/csv', 'application/json; charset=utf-16']) {
      const res = await send(url, agent, 'POST', '/api/contacts', { 'x-api-key': app.adminKey, 'content-type': contentType }, body);
      expect(res.status, contentType).toBe(415);
      expect(JSON.parse(res.text)).toMatchObject({ success: false, error: 'UNSUPPORTED_MEDIA_TYPE', message: expect.any(String) });
    }
    expect(await snapshot()).toEqual(before);
  });

  it('answers deep, NUL-carrying, non-UTF-8 and prototype-polluting JSON with a 400 envelope', async () => {
    const bodies: (string | Buffer)[] = [
      '['.repeat(10_000) + ']'.repeat(10_000),
      JSON.stringify({ firstName: 'a\u0000', phonePrimary: uniquePhone() }),
      Buffer.concat([Buffer.from('{"firstName":"'), Buffer.from([0xff, 0xfe]), Buffer.from(`","phonePrimary":"${uniquePhone()}"}`)]),
      `{"firstName":"a","phonePrimary":"${uniquePhone()}","__proto__":{"x":1}}`,
      `{"firstName":"a\\ud800","phonePrimary":"${uniquePhone()}"}`,
      '',
    ];
    for (const body of bodies) {
      const res = await send(url, agent, 'POST', '/api/contacts', { 'x-api-key': app.adminKey, 'content-type': 'application/json' }, body);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toMatchObject({ success: false, error: expect.any(String), message: expect.any(String) });
    }
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('treats an empty JSON body as no body: a DELETE runs, a create is a 400', async () => {
    const created = await app.api('POST', '/api/contacts', { body: { firstName: 'Gone', phonePrimary: uniquePhone() } });
    const headers = { 'x-api-key': app.adminKey, 'content-type': 'application/json' };
    expect((await send(url, agent, 'DELETE', `/api/contacts/${created.body.data.id}`, headers, '')).status).toBe(204);
    const empty = await send(url, agent, 'POST', '/api/contacts', headers, '');
    expect(empty.status).toBe(400);
    expect(JSON.parse(empty.text)).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
  });

  it('stores SQL-looking text as plain text', async () => {
    const res = await app.api('POST', '/api/contacts', { body: { firstName: SQL, lastName: "O'Brien", phonePrimary: uniquePhone(), notes: SQL } });
    expect(res.status).toBe(201);
    expect((await app.api('GET', `/api/contacts/${res.body.data.id}`)).body.data).toMatchObject({ firstName: SQL, lastName: "O'Brien", notes: SQL });
    const found = await app.api('GET', `/api/contacts?search=${encodeURIComponent("o'brien")}`);
    expect(found.body.data.map((c: { id: string }) => c.id)).toContain(res.body.data.id);
  });
});
