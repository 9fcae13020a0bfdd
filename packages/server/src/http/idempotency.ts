import { createHash, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import type { Db } from '../db/db.js';
import { AppError } from '../errors.js';
import { principalOf } from './auth.hook.js';

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
/** How long a request may hold its key in flight (in memory) before another may take it over. */
const IN_FLIGHT_TTL_MS = 120_000;
/**
 * In Redis the in-flight mark outlives a crashed process, so it lives only this long unless
 * the running request renews it: a killed request's key is free again within seconds.
 */
const REDIS_IN_FLIGHT_TTL_MS = 5_000;
const REDIS_RENEW_MS = 1_500;
// Compare-and-set: a request renews or removes only its own mark, never a successor's.
const RENEW_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const KEY_RE = /^[\x21-\x7e]{1,255}$/;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Honour the Idempotency-Key header on this route. */
    idempotent?: boolean;
  }
  interface FastifyRequest {
    idempotency?: { scope: string; key: string; bodyHash: string; tenantId: string; principal: string; token: string };
  }
}

interface Stored {
  bodyHash: string;
  status: number;
  body: unknown;
}

/**
 * Idempotency-Key support (SPEC §4): a finished request's answer is stored for 24 hours with
 * the SHA-256 of its body, in PostgreSQL (survives restarts) and cached in Redis when present.
 * The same key and body replays it (`Idempotent-Replayed: true`), another body is a 422, and a
 * duplicate still in flight is a 409. In-flight marks live in Redis or in memory with a TTL,
 * never in the database, so a crash cannot leave a key stuck; the retry then runs again, and
 * the push engine's per-change receipts make that retry apply each change exactly once.
 */
export function registerIdempotency(app: FastifyInstance, deps: { db: Db; redis?: Redis }): void {
  const { db, redis } = deps;
  const local = new Map<string, { token: string; until: number }>();
  const lockKey = (scope: string) => `fieldsync:idem:lock:${scope}`;
  const renewals = new Map<string, NodeJS.Timeout>();
  const stopRenewal = (token: string) => {
    clearInterval(renewals.get(token));
    renewals.delete(token);
  };

  /** Marks `scope` in flight; the mark's token, or undefined when another request holds it. */
  const acquire = async (scope: string, reply: FastifyReply): Promise<string | undefined> => {
    const token = randomUUID();
    if (redis) {
      let ok: boolean;
      try {
        ok = (await redis.set(lockKey(scope), token, 'PX', REDIS_IN_FLIGHT_TTL_MS, 'NX')) === 'OK';
      } catch {
        throw new AppError('UNAVAILABLE', 'Idempotency-Key requests need Redis, which is unreachable; retry later', undefined, { 'retry-after': '5' });
      }
      if (!ok) return undefined;
      // Renewed while the response is open; a crash or a hung-up client lets the mark expire.
      const renew = setInterval(() => {
        redis.eval(RENEW_SCRIPT, 1, lockKey(scope), token, String(REDIS_IN_FLIGHT_TTL_MS)).catch(() => {});
      }, REDIS_RENEW_MS);
      renew.unref();
      renewals.set(token, renew);
      reply.raw.once('close', () => stopRenewal(token));
      return token;
    }
    const held = local.get(scope);
    if (held !== undefined && held.until > Date.now()) return undefined;
    local.set(scope, { token, until: Date.now() + IN_FLIGHT_TTL_MS });
    return token;
  };
  const release = async (scope: string, token: string) => {
    stopRenewal(token);
    if (redis) await redis.eval(RELEASE_SCRIPT, 1, lockKey(scope), token).catch(() => {});
    else if (local.get(scope)?.token === token) local.delete(scope);
  };

  const lookup = async (tenantId: string, principal: string, key: string, scope: string): Promise<Stored | undefined> => {
    const cached = redis ? await redis.get(`fieldsync:idem:done:${scope}`).catch(() => null) : null;
    if (cached) return JSON.parse(cached) as Stored;
    const { rows } = await db.query<{ body_hash: string; response_status: number; response_body: unknown }>(
      `SELECT body_hash, response_status, response_body FROM idempotency_keys
        WHERE tenant_id = $1 AND principal = $2 AND key = $3 AND expires_at > now()`,
      [tenantId, principal, key],
    );
    const row = rows[0];
    return row ? { bodyHash: row.body_hash, status: row.response_status, body: row.response_body } : undefined;
  };

  const replayOrReject = (reply: FastifyReply, stored: Stored, bodyHash: string) => {
    if (stored.bodyHash !== bodyHash) {
      throw new AppError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used with another request body');
    }
    return reply.header('idempotent-replayed', 'true').status(stored.status).send(stored.body);
  };

  app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    if (!request.routeOptions.config?.idempotent) return;
    const header = request.headers['idempotency-key'];
    if (header === undefined) return;
    if (typeof header !== 'string' || !KEY_RE.test(header)) {
      throw new AppError('VALIDATION_FAILED', 'Idempotency-Key must be 1-255 printable characters', [
        { field: 'Idempotency-Key', message: 'invalid' },
      ]);
    }
    const p = principalOf(request);
    const principal = p.keyId ?? p.userId;
    const scope = `${p.tenantId}:${principal}:${header}`;
    const bodyHash = createHash('sha256').update(JSON.stringify(request.body ?? null)).digest('hex');

    const stored = await lookup(p.tenantId, principal, header, scope);
    if (stored) return replayOrReject(reply, stored, bodyHash);
    const token = await acquire(scope, reply);
    if (!token) {
      throw new AppError('IDEMPOTENCY_IN_FLIGHT', 'A request with this Idempotency-Key is still in flight', undefined, { 'retry-after': '1' });
    }
    // It may have finished between the lookup and the lock.
    const finished = await lookup(p.tenantId, principal, header, scope);
    if (finished) {
      await release(scope, token);
      return replayOrReject(reply, finished, bodyHash);
    }
    request.idempotency = { scope, key: header, bodyHash, tenantId: p.tenantId, principal, token };
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const idem = request.idempotency;
    if (!idem || reply.statusCode >= 500 || typeof payload !== 'string') return payload;
    let body: unknown;
    try {
      body = JSON.parse(payload);
    } catch {
      return payload;
    }
    const stored: Stored = { bodyHash: idem.bodyHash, status: reply.statusCode, body };
    await db.query(
      `INSERT INTO idempotency_keys (tenant_id, principal, key, body_hash, response_status, response_body, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, now() + interval '24 hours')
       ON CONFLICT (tenant_id, principal, key) DO UPDATE SET body_hash = EXCLUDED.body_hash,
         response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
         created_at = now(), expires_at = EXCLUDED.expires_at`,
      [idem.tenantId, idem.principal, idem.key, idem.bodyHash, reply.statusCode, payload],
    );
    if (redis) await redis.set(`fieldsync:idem:done:${idem.scope}`, JSON.stringify(stored), 'PX', IDEMPOTENCY_TTL_MS).catch(() => {});
    return payload;
  });

  app.addHook('onResponse', async (request) => {
    if (request.idempotency) await release(request.idempotency.scope, request.idempotency.token);
  });
}

/** Deletes idempotency records past their 24 hours. */
export async function pruneIdempotencyKeys(db: Db): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM idempotency_keys WHERE expires_at <= now()');
  return rowCount;
}
