import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHANGE_ERROR_CODES,
  ERROR_CODES,
  ErrorCatalogue,
  ErrorCodes,
  errorCatalogueTable,
  errorEnvelope,
  statusOf,
  type ChangeErrorCode,
  type ErrorCode,
} from '@fieldsync/protocol/errors';
import { ClientEventPayloads, ServerEventPayloads } from '@fieldsync/protocol/events';
import { PushBody, SYNC_ENTITIES, type SyncChange } from '@fieldsync/protocol/sync';
import type { ChangeErrorCode as EngineChangeErrorCode } from '../src/sync/push.js';
import { FRAMEWORK_CODES } from '../src/http/error-handler.js';
import { compileBodyValidator } from '../src/lib/validation.js';
import type { CollectionDef } from '../src/sync/collections.js';
import { authedProbe } from './helpers/sockets.js';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

/*
 * The whole contract is in the schemas (issue 8, item 5): the OpenAPI document names every
 * operation, its success and every error it answers; the push's change union covers every
 * registered entity type; the error catalogue, docs/errors.md and the answers agree.
 */

type Schema = Record<string, any>;
const ENVELOPE_REF = '#/components/schemas/ErrorEnvelope';
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
/** Error answers documented with another schema on purpose: GET /health answers 503 with its own report (SPEC §11). */
const OWN_ERROR_SCHEMAS = new Set(['GET /health 503']);
/** tus 1.0 answers carry headers only (Location, Upload-Offset): their successes have no body schema. */
const HEADER_ONLY = /^(POST|HEAD|PATCH|DELETE) \/api\/files\/tus/;

// The push engine's per-change codes are catalogue codes marked per change (a type-level check).
const engineCodesAreCatalogued = (code: EngineChangeErrorCode): ChangeErrorCode => code;
void engineCodesAreCatalogued;

describe('the error catalogue', () => {
  it('gives every code a status and a meaning, and ErrorCodes agrees with it', () => {
    for (const code of ERROR_CODES) {
      const info = ErrorCatalogue[code];
      expect(info.status, code).toBeGreaterThanOrEqual(400);
      expect(info.status, code).toBeLessThan(600);
      expect(info.meaning.length, code).toBeGreaterThan(20);
      expect(ErrorCodes[code]).toBe(info.status);
    }
    expect(CHANGE_ERROR_CODES).toEqual(expect.arrayContaining(['VALIDATION_FAILED', 'NOT_FOUND', 'FORBIDDEN', 'DUPLICATE', 'VERSION_MISMATCH']));
  });

  it('holds the codes the upcoming work needs, with their statuses', () => {
    expect(ErrorCodes).toMatchObject({ CHECKSUM_MISMATCH: 400, INCOMPLETE: 409, QUOTA_EXCEEDED: 413, METHOD_NOT_ALLOWED: 405, FORBIDDEN: 403 });
  });

  it('is the table of docs/errors.md, so the two cannot drift', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    const table = /<!-- error-catalogue:start -->\n([\s\S]*?)\n<!-- error-catalogue:end -->/.exec(doc)?.[1];
    const expected = errorCatalogueTable();
    if (table !== expected) console.log(`docs/errors.md is out of date; its table should read:\n\n${expected}\n`);
    expect(table).toBe(expected);
  });

  it('maps every framework status to a code of that same status', () => {
    for (const [status, code] of Object.entries(FRAMEWORK_CODES)) expect(statusOf(code as ErrorCode), code).toBe(Number(status));
  });

  it('builds the envelope with details only when there are some', () => {
    expect(errorEnvelope('NOT_FOUND', 'Contact not found')).toEqual({ success: false, error: 'NOT_FOUND', message: 'Contact not found' });
    expect(errorEnvelope('VALIDATION_FAILED', 'bad', [])).not.toHaveProperty('details');
  });
});

describe('the push body schema', () => {
  const check = compileBodyValidator<PushBody>(PushBody);
  const ts = new Date().toISOString();

  it('is validated leniently at the edge: a change that fails its entity schema does not fail the body', () => {
    const body = {
      deviceId: 'dev-1',
      changes: [
        { localId: 'a', entityType: 'contacts', operation: 'create', timestamp: ts, data: { firstName: 'A', phonePrimary: '+14155550100' } },
        { localId: 'b', entityType: 'contact', operation: 'explode', timestamp: ts, data: { firstName: 5 } },
        42,
      ],
    };
    expect(check(body).ok).toBe(true);
  });

  it('still refuses a body whose envelope is wrong', () => {
    expect(check({ deviceId: 'dev 1', changes: [] }).ok).toBe(false);
    expect(check({ deviceId: 'dev-1', changes: {} }).ok).toBe(false);
    expect(check({ deviceId: 'dev-1', changes: [], extra: 1 }).ok).toBe(false);
    expect(check({ deviceId: 'dev-1', changes: Array.from({ length: 1001 }, () => ({})) }).ok).toBe(false);
  });

  it('types a change by entity type and operation (a compile-time check)', () => {
    const change: SyncChange = { entityType: 'item', operation: 'update', id: randomUUID(), timestamp: 1, data: { isCompleted: true, categoryLocalId: 'c-1' } };
    // @ts-expect-error a contact create needs a firstName
    const bad: SyncChange = { entityType: 'contacts', operation: 'create', timestamp: 1, data: { phonePrimary: '+1' } };
    expect([change, bad]).toHaveLength(2);
  });
});

describe('socket event payloads', () => {
  it('has a schema for every client and server event, and the client ones validate as the gateway does', () => {
    expect(Object.keys(ClientEventPayloads).sort()).toEqual(['authenticate', 'heartbeat', 'sync:pull', 'sync:push']);
    expect(Object.keys(ServerEventPayloads)).toEqual(
      expect.arrayContaining(['authenticated', 'auth_error', 'changes', 'contact_created', 'contact_updated', 'contact_deleted', 'server_shutdown']),
    );
    const auth = compileBodyValidator(ClientEventPayloads.authenticate);
    expect(auth({ apiKey: 'k', deviceId: 'd-1' }).ok).toBe(true);
    expect(auth({ token: 't' }).ok).toBe(true);
    expect(auth({ apiKey: 'k', deviceId: 'bad id' }).ok).toBe(false);
    const pull = compileBodyValidator(ClientEventPayloads['sync:pull']);
    expect(pull({ version: 0, limit: 10, collections: ['contacts'] }).ok).toBe(true);
    expect(pull({ version: -1 }).ok).toBe(false);
  });
});

describe('the OpenAPI document', () => {
  let app: TestApp;
  let doc: Schema;
  const operations: { name: string; path: string; op: Schema }[] = [];
  beforeAll(async () => {
    app = await startTestApp('pglite');
    const res = await app.api('GET', '/docs/json', { key: null });
    expect(res.status).toBe(200);
    doc = res.body;
    for (const [path, item] of Object.entries<Schema>(doc.paths)) {
      for (const [method, op] of Object.entries<Schema>(item)) {
        if (METHODS.includes(method)) operations.push({ name: `${method.toUpperCase()} ${path}`, path, op });
      }
    }
  });
  afterAll(async () => {
    await app?.close();
  });

  it('gives every operation a summary and a tag', () => {
    expect(operations.length).toBeGreaterThan(30);
    const missing = operations.filter(({ op }) => !(typeof op.summary === 'string' && op.summary.length > 5 && op.tags?.length > 0)).map((o) => o.name);
    expect(missing).toEqual([]);
  });

  it('gives every operation a success response with its schema (204: no content)', () => {
    const missing = operations
      .filter(({ name, op }) => {
        const ok = Object.entries<Schema>(op.responses ?? {}).filter(([status]) => /^2\d\d$/.test(status));
        if (HEADER_ONLY.test(name) && ok.length > 0) return false;
        if (ok.length === 0) return true;
        return ok.some(([status, response]) => status !== '204' && !Object.values<Schema>(response.content ?? {}).some((media) => media.schema));
      })
      .map((o) => o.name);
    expect(missing).toEqual([]);
  });

  it('answers every error with the envelope, described by catalogue codes of that status', () => {
    const problems: string[] = [];
    for (const { name, op } of operations) {
      for (const [status, response] of Object.entries<Schema>(op.responses ?? {})) {
        if (!/^[45]\d\d$/.test(status) || OWN_ERROR_SCHEMAS.has(`${name} ${status}`)) continue;
        if (response.content?.['application/json']?.schema?.$ref !== ENVELOPE_REF) problems.push(`${name} ${status}: not the ErrorEnvelope`);
        const codes = [...String(response.description).matchAll(/`([A-Z_]+)`:/g)].map((m) => m[1]);
        if (codes.length === 0) problems.push(`${name} ${status}: names no code`);
        for (const code of codes) {
          if (!(code in ErrorCatalogue)) problems.push(`${name} ${status}: ${code} is not in the catalogue`);
          else if (statusOf(code as ErrorCode) !== Number(status)) problems.push(`${name} ${status}: ${code} is a ${statusOf(code as ErrorCode)}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('documents the errors every API operation can answer: bad input, rate limit, 500, 503, and 401/403 when authenticated', () => {
    const problems: string[] = [];
    for (const { name, path, op } of operations) {
      if (!path.startsWith('/api/')) continue;
      const expected = ['400', '429', '500', '503', ...(op.security ? ['401', '403'] : [])];
      if (['post', 'put', 'patch', 'delete'].includes(name.split(' ')[0].toLowerCase())) expected.push('413', '415');
      if (path.includes('{')) expected.push('414');
      for (const status of expected) if (!op.responses?.[status]) problems.push(`${name}: no ${status}`);
    }
    expect(problems).toEqual([]);
  });

  it('lists every catalogue code in the ErrorEnvelope component', () => {
    expect(doc.components.schemas.ErrorEnvelope.properties.error.enum).toEqual(ERROR_CODES);
  });

  it('shows the push changes as a union with every registered entity type, plural and singular, and its operations', () => {
    const body = doc.paths['/api/sync'].post.requestBody.content['application/json'].schema;
    const variants: Schema[] = body.properties.changes.items.anyOf;
    const shown = variants.map((v) => ({ names: v.properties.entityType.enum as string[], operation: v.properties.operation.enum[0] as string, data: v.properties.data }));
    const registered = app.built.services.registry.all().filter((def: CollectionDef) => def.write);
    expect(registered.length).toBeGreaterThanOrEqual(4);
    for (const def of registered) {
      for (const operation of def.write!.operations) {
        const variant = shown.find((s) => s.names[0] === def.name && s.operation === operation);
        expect(variant, `${def.name} ${operation}`).toBeDefined();
        expect([...variant!.names].sort()).toEqual([def.name, ...def.aliases].sort());
        if (operation !== 'delete') expect(variant!.data.properties ?? variant!.data.anyOf, `${def.name} ${operation} data`).toBeDefined();
      }
    }
    // Nothing documented that the server does not take.
    expect(new Set(shown.map((s) => s.names[0]))).toEqual(new Set(registered.map((d: CollectionDef) => d.name)));
  });

  it('matches the protocol entity list to the collection registry: names, operations, data schemas and local references', () => {
    const registered = new Map(app.built.services.registry.all().filter((d: CollectionDef) => d.write).map((d: CollectionDef) => [d.name, d]));
    expect(SYNC_ENTITIES.map((e) => e.name).sort()).toEqual([...registered.keys()].sort());
    for (const entity of SYNC_ENTITIES) {
      const def = registered.get(entity.name)!;
      expect([entity.alias], entity.name).toEqual(def.aliases);
      expect([...entity.operations].sort(), entity.name).toEqual([...def.write!.operations].sort());
      const localRefs = Object.fromEntries((def.write!.refs ?? []).map((r) => [r.field, r.localField]));
      expect(entity.localRefs ?? {}, entity.name).toEqual(localRefs);
      // The push's data schemas are the collection's, plus the local-id references.
      const fieldsOf = (schema: Schema): string[] =>
        [...new Set<string>((schema.anyOf ?? [schema]).flatMap((s: Schema) => Object.keys(s.properties ?? {})))].filter((f) => !Object.values(localRefs).includes(f)).sort();
      expect(fieldsOf(entity.create as Schema), `${entity.name} create`).toEqual(fieldsOf(def.write!.createSchema as Schema));
      expect(fieldsOf(entity.update as Schema), `${entity.name} update`).toEqual(fieldsOf(def.write!.updateSchema as Schema));
    }
  });
});

describe('POST /api/sync with the typed change union', () => {
  let app: TestApp;
  let key: string;
  beforeAll(async () => {
    app = await startTestApp('pglite');
    key = (await createAgent(app, 'contract-1')).apiKey;
  });
  afterAll(async () => {
    await app?.close();
  });

  it('applies the valid changes of every entity type and acks each change that breaks its schema with VALIDATION_FAILED, without sinking the batch', async () => {
    const ts = new Date().toISOString();
    const changes: unknown[] = [
      { localId: 's-1', entityType: 'space', operation: 'create', timestamp: ts, data: { name: 'Route' } },
      { localId: 'c-1', entityType: 'category', operation: 'create', timestamp: ts, data: { spaceLocalId: 's-1', name: 'Today' } },
      { localId: 'i-1', entityType: 'items', operation: 'create', timestamp: ts, data: { spaceLocalId: 's-1', categoryLocalId: 'c-1', title: 'Visit' } },
      { localId: 'p-1', entityType: 'contacts', operation: 'create', timestamp: ts, data: { firstName: 'Ada', phonePrimary: uniquePhone() } },
      { localId: 'p-2', entityType: 'contacts', operation: 'create', timestamp: ts, data: { firstName: 7, phonePrimary: uniquePhone() } },
      { localId: 'x-1', entityType: 'rockets', operation: 'create', timestamp: ts, data: {} },
      { localId: 'i-2', entityType: 'item', operation: 'create', timestamp: ts, data: { title: 'No space' } },
      'not a change',
    ];
    const res = await app.api('POST', '/api/sync', { key, body: { deviceId: 'contract-dev', changes } });
    expect(res.status).toBe(200);
    const acks = res.body.data.acknowledged as { success: boolean; code?: string }[];
    expect(acks.map((a) => a.success)).toEqual([true, true, true, true, false, false, false, false]);
    for (const ack of acks.slice(4)) expect(ack.code).toBe('VALIDATION_FAILED');
  });

  it('answers a body whose envelope is wrong with a 400 envelope naming the field', async () => {
    const res = await app.api('POST', '/api/sync', { key, body: { deviceId: 'contract-dev', changes: 'all of them' } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
    expect(res.body.details).toEqual(expect.arrayContaining([expect.objectContaining({ field: 'changes' })]));
  });

  it('acks a bad change over sync:push on its own too (the gateway validates with the same schema)', async () => {
    const sock = await authedProbe(app.url, { apiKey: key, deviceId: 'contract-sock' });
    try {
      const ts = new Date().toISOString();
      const answer = await sock.ack('sync:push', {
        deviceId: 'contract-sock',
        changes: [
          { localId: 'q-1', entityType: 'contact', operation: 'create', timestamp: ts, data: { firstName: 'Bo', phonePrimary: uniquePhone() } },
          { localId: 'q-2', entityType: 'contact', operation: 'create', timestamp: ts, data: { firstName: 'Bo', phonePrimary: uniquePhone(), shoeSize: 44 } },
        ],
      });
      expect(answer.success).toBe(true);
      expect(answer.data.acknowledged.map((a: { success: boolean; code?: string }) => [a.success, a.code])).toEqual([
        [true, undefined],
        [false, 'VALIDATION_FAILED'],
      ]);
    } finally {
      sock.socket.disconnect();
    }
  });
});
