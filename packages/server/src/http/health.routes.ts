import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { hostname } from 'node:os';
import type { Db } from '../db/db.js';

export interface HealthDeps {
  db: Db;
  /** Pings Redis when configured; undefined when Redis is not used. */
  pingRedis?: () => Promise<void>;
  version: string;
}

const Check = Type.Object({ status: Type.String(), latencyMs: Type.Optional(Type.Number()), error: Type.Optional(Type.String()) });
const Health = Type.Object({
  status: Type.String(),
  uptime: Type.Number(),
  version: Type.String(),
  /** Which instance answered (host:pid): behind a load balancer, where a client landed. */
  instance: Type.String(),
  checks: Type.Object({ database: Check, redis: Check }),
});

async function timed(fn: () => Promise<unknown>, timeoutMs = 2000) {
  const started = performance.now();
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);
    return { status: 'up', latencyMs: Math.round((performance.now() - started) * 100) / 100 };
  } catch (error) {
    return { status: 'down', error: (error as Error).message };
  }
}

/** `GET /health`: 200 when every dependency answers, 503 naming the one that does not. */
export function healthRoutes(deps: HealthDeps): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/health',
      {
        config: { auth: false, rateLimit: false },
        schema: { tags: ['operations'], summary: 'Liveness and readiness', response: { 200: Health, 503: Health } },
      },
      async (_request, reply) => {
        const [database, redis] = await Promise.all([
          timed(() => deps.db.query('SELECT 1')),
          deps.pingRedis ? timed(deps.pingRedis) : Promise.resolve({ status: 'disabled' }),
        ]);
        const healthy = database.status === 'up' && redis.status !== 'down';
        return reply.status(healthy ? 200 : 503).send({
          status: healthy ? 'ok' : 'unavailable',
          uptime: Math.round(process.uptime()),
          version: deps.version,
          instance: `${hostname()}:${process.pid}`,
          checks: { database, redis },
        });
      },
    );
  };
}
