import { Type } from 'typebox';
import { timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../../errors.js';
import { responses, secured } from '../../http/schemas.js';
import { sha256 } from '../auth/credentials.js';
import type { AuthService } from '../auth/auth.service.js';
import type { Metrics } from './metrics.js';

/** Equal strings, compared in constant time (by their hashes, so lengths leak nothing either). */
const sameSecret = (a: string, b: string) => timingSafeEqual(Buffer.from(sha256(a), 'hex'), Buffer.from(sha256(b), 'hex'));

/**
 * `GET /metrics` (SPEC §11): Prometheus text. With METRICS_TOKEN set, only
 * `Authorization: Bearer <METRICS_TOKEN>` opens it (a scraper holds no user); otherwise an
 * admin's credentials (API key or access token). Checked here rather than by the auth hook,
 * because the token is no user's credential.
 */
export function metricsRoutes(deps: { metrics: Metrics; auth: AuthService; token: string | undefined }): FastifyPluginAsyncTypebox {
  const check = async (request: FastifyRequest) => {
    const authorization = request.headers.authorization;
    const bearer = typeof authorization === 'string' && /^Bearer\s+\S+$/i.test(authorization) ? authorization.replace(/^Bearer\s+/i, '') : undefined;
    if (deps.token !== undefined) {
      if (bearer === undefined || !sameSecret(bearer, deps.token)) throw new AppError('UNAUTHORIZED', 'Send Authorization: Bearer <METRICS_TOKEN>');
      return;
    }
    const apiKey = request.headers['x-api-key'];
    let role: string;
    if (typeof apiKey === 'string' && apiKey.length > 0) role = (await deps.auth.authenticateApiKey(apiKey)).role;
    else if (bearer !== undefined) role = (await deps.auth.authenticateAccessToken(bearer)).role;
    else throw new AppError('UNAUTHORIZED', "Send an admin's X-API-Key or Authorization: Bearer token");
    if (role !== 'admin') throw new AppError('FORBIDDEN', 'Metrics are for admins (or set METRICS_TOKEN for a scraper)');
  };

  return async (app) => {
    app.get(
      '/metrics',
      {
        config: { auth: false },
        schema: {
          tags: ['operations'],
          ...secured,
          summary: 'Prometheus metrics (METRICS_TOKEN as a bearer token when set, else an admin)',
          response: responses(
            { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: Type.String() } } } },
            { public: true, also: ['UNAUTHORIZED', 'FORBIDDEN'] },
          ),
        },
      },
      async (request, reply) => {
        await check(request);
        const text = await deps.metrics.registry.metrics();
        return reply.header('content-type', deps.metrics.registry.contentType).header('cache-control', 'no-store').send(text);
      },
    );
  };
}
