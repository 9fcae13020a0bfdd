/**
 * The deployment-shape reference of the pulls and the pushes: the limits' work served over
 * HTTP by a bare `node:http` server, no framework, no auth, no logging, so the same HTTP load
 * (load/http-load.ts) runs against it unchanged; request headers are ignored. Beside the server
 * and the limit, it tells the HTTP hop's share from the product's own cost.
 *
 * - Pulls: `GET /api/sync/delta?version=V&limit=L` answered from the pull limit's stored bytes
 *   (`STORED_PAGE_SQL`) with the envelope the server writes.
 * - Pushes: `POST /api/sync` (`{deviceId, changes}` as the load sends it): the body read and
 *   parsed, the batch written by the push limit's transaction (`writePushBatch`: the same rows
 *   and index entries, versions from its sequence, no tenant lock, no reads), into the tenant
 *   the device was given at start, and one ack per change in the server's ack shape.
 */
import http from 'node:http';
import pg from 'pg';
import { serve } from '../lib/ipc.js';
import { storedPage } from '../lib/stored-page.js';
import { versionSequence, writePushBatch, type CreateRow, type UpdateRow } from '../lib/push-writes.js';
import { deltaEnvelopeJson, pageOf, type PullRow } from '../../src/sync/pull.js';

pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** The query's bounds, as the server's `DeltaQuery` has them (defaults included). */
const MAX_LIMIT = 5000;
const DEFAULT_LIMIT = 1000;

let server: http.Server | undefined;
let pool: pg.Pool | undefined;
let pushPool: pg.Pool | undefined;

/** A change of a pushed batch, as the load's `pushBatch` builds it (the fields the limit writes). */
interface PushedChange {
  changeId?: string;
  localId?: string;
  id?: string;
  entityType: string;
  operation: string;
  data?: { firstName?: string; phonePrimary?: string; notes?: string };
}

class BadRequest extends Error {}

/** Opens `max` connections of `db` now: the server's connections are open when a scenario starts. */
async function warm(db: pg.Pool, max: number) {
  const clients = await Promise.all(Array.from({ length: max }, () => db.connect()));
  for (const c of clients) c.release();
}

/**
 * A pushed batch: the creates and edits of `body` written by the push limit's transaction on a
 * connection of `db`, into the tenant of its device; answers the server's envelope with one ack
 * per change, in the order of the changes.
 */
async function pushBatch(db: pg.Pool, tenants: Map<string, string>, text: string): Promise<string> {
  let body: { deviceId?: unknown; changes?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new BadRequest('the body is not JSON');
  }
  const tenantId = typeof body.deviceId === 'string' ? tenants.get(body.deviceId) : undefined;
  if (tenantId === undefined || !Array.isArray(body.changes)) throw new BadRequest(`no tenant for device ${String(body.deviceId)}, or no changes`);
  const deviceId = body.deviceId as string;
  const changes = body.changes as PushedChange[];
  const creates: CreateRow[] = [];
  const updates: UpdateRow[] = [];
  for (const c of changes) {
    if (c.entityType !== 'contacts') throw new BadRequest(`entityType ${c.entityType}`);
    if (c.operation === 'create' && c.data?.firstName && c.data.phonePrimary && c.localId) {
      creates.push({ firstName: c.data.firstName, phone: c.data.phonePrimary, localId: c.localId });
    } else if (c.operation === 'update' && c.id && c.data?.notes !== undefined) {
      updates.push({ id: c.id, notes: c.data.notes });
    } else {
      throw new BadRequest(`a ${c.operation} change the limit does not write`);
    }
  }
  const client = await db.connect();
  let written: Awaited<ReturnType<typeof writePushBatch>>;
  try {
    written = await writePushBatch(client, tenantId, deviceId, creates, updates);
  } finally {
    client.release();
  }
  // Edits of records that are not in the tenant would write nothing: a reference doing less than the limit.
  if (written.updated.length !== updates.length) throw new Error(`${written.updated.length} of ${updates.length} edited records found in tenant ${tenantId}`);
  const versionOf = new Map(written.updated.map((r) => [r.id, r.version]));
  let created = 0;
  const acknowledged = changes.map((c) => {
    const row = c.operation === 'create' ? written.created[created++] : { id: c.id!, version: versionOf.get(c.id!)! };
    return {
      changeId: c.changeId,
      localId: c.localId ?? null,
      serverId: row.id,
      entityType: c.entityType,
      operation: c.operation,
      success: true,
      status: 'applied',
      version: row.version,
    };
  });
  return JSON.stringify({ success: true, data: { acknowledged } });
}

/** A whole number from a query parameter within [min, max], the default when absent, undefined when invalid. */
function intParam(params: URLSearchParams, name: string, fallback: number, min: number, max: number): number | undefined {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  return raw !== '' && Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

function send(res: http.ServerResponse, status: number, json: string) {
  const body = Buffer.from(json, 'utf8');
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
  res.end(body);
}

serve({
  /**
   * Listens on a free port of 127.0.0.1 and answers, from `poolMax` connections each: pulls of
   * `tenantId` when it is given (named statement, generic plans, as the server's pull runs), and
   * pushes when `pushTenants` (device id -> tenant id) is given (plain statements on a pool
   * without settings, as the push limit's and the server's writes run).
   */
  async start(arg: { databaseUrl: string; tenantId?: string; pushTenants?: Record<string, string>; poolMax: number }) {
    if (server) throw new Error('the reference server is running already');
    // As the server's pull runs: named statements planned once per connection (src/db/postgres.ts).
    const db = (pool =
      arg.tenantId === undefined ? undefined : new pg.Pool({ connectionString: arg.databaseUrl, max: arg.poolMax, options: '-c plan_cache_mode=force_generic_plan' }));
    if (db) {
      db.on('error', () => {});
      await warm(db, arg.poolMax);
    }
    const writes = (pushPool = arg.pushTenants === undefined ? undefined : new pg.Pool({ connectionString: arg.databaseUrl, max: arg.poolMax }));
    const tenants = new Map(Object.entries(arg.pushTenants ?? {}));
    if (writes) {
      writes.on('error', () => {});
      await versionSequence(writes);
      await warm(writes, arg.poolMax);
    }
    const statement = arg.tenantId === undefined ? undefined : storedPage(arg.tenantId);
    server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      if (writes && req.method === 'POST' && path === '/api/sync') {
        const chunks: Buffer[] = [];
        req.on('error', () => {});
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          pushBatch(writes, tenants, Buffer.concat(chunks).toString('utf8')).then(
            (json) => send(res, 200, json),
            (error: Error) =>
              error instanceof BadRequest
                ? send(res, 400, JSON.stringify({ success: false, error: { code: 'VALIDATION_FAILED', message: error.message } }))
                : send(res, 500, JSON.stringify({ success: false, error: { code: 'INTERNAL', message: error.message } })),
          );
        });
        return;
      }
      if (!db || !statement || req.method !== 'GET' || path !== '/api/sync/delta') {
        send(res, 404, '{"success":false,"error":{"code":"NOT_FOUND","message":"not found"}}');
        return;
      }
      const params = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
      const since = intParam(params, 'version', 0, 0, Number.MAX_SAFE_INTEGER);
      const limit = intParam(params, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT);
      if (since === undefined || limit === undefined) {
        send(res, 400, '{"success":false,"error":{"code":"VALIDATION_FAILED","message":"version and limit must be whole numbers in range"}}');
        return;
      }
      db.query<PullRow>({ name: statement.name, text: statement.sql, values: statement.params(since, limit) }).then(
        ({ rows }) => {
          if (rows.length === 0) send(res, 404, '{"success":false,"error":{"code":"NOT_FOUND","message":"Tenant not found"}}');
          else send(res, 200, deltaEnvelopeJson(pageOf(rows[0], { since, limit })));
        },
        (error: Error) => send(res, 500, JSON.stringify({ success: false, error: { code: 'INTERNAL', message: error.message } })),
      );
    });
    // Fastify's default, so devices keep their connections between requests as they do with the server.
    server.keepAliveTimeout = 72_000;
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}` };
  },

  /** Closes the listener, its kept-alive connections and the pools. */
  async stop() {
    const s = server;
    server = undefined;
    if (s) {
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      s.closeAllConnections();
      await closed;
    }
    await pool?.end();
    pool = undefined;
    await pushPool?.end();
    pushPool = undefined;
  },
});
