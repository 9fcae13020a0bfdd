/**
 * The deployment-shape reference of the pulls: the pull limit's stored bytes (`STORED_PAGE_SQL`)
 * served over HTTP by a bare `node:http` server, no framework, no auth, no logging. It answers
 * `GET /api/sync/delta?version=V&limit=L` with the envelope the server writes, so the same
 * HTTP load (load/http-load.ts) runs against it unchanged; request headers are ignored. Beside
 * the server and the limit, it tells the HTTP hop's share from the product's own cost.
 */
import http from 'node:http';
import pg from 'pg';
import { serve } from '../lib/ipc.js';
import { storedPage } from '../lib/stored-page.js';
import { deltaEnvelopeJson, pageOf, type PullRow } from '../../src/sync/pull.js';

pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** The query's bounds, as the server's `DeltaQuery` has them (defaults included). */
const MAX_LIMIT = 5000;
const DEFAULT_LIMIT = 1000;

let server: http.Server | undefined;
let pool: pg.Pool | undefined;

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
  /** Listens on a free port of 127.0.0.1 and answers pulls of `tenantId` from `poolMax` connections. */
  async start(arg: { databaseUrl: string; tenantId: string; poolMax: number }) {
    if (server) throw new Error('the reference server is running already');
    // As the server's pull runs: named statements planned once per connection (src/db/postgres.ts).
    const db = (pool = new pg.Pool({ connectionString: arg.databaseUrl, max: arg.poolMax, options: '-c plan_cache_mode=force_generic_plan' }));
    db.on('error', () => {});
    // The server's connections are open when a scenario starts: open these too.
    const clients = await Promise.all(Array.from({ length: arg.poolMax }, () => db.connect()));
    for (const c of clients) c.release();
    const statement = storedPage(arg.tenantId);
    server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      if (req.method !== 'GET' || path !== '/api/sync/delta') {
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

  /** Closes the listener, its kept-alive connections and the pool. */
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
  },
});
