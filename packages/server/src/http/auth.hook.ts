import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Role } from '@fieldsync/protocol/auth';
import { AppError } from '../errors.js';
import type { AuthService } from '../modules/auth/auth.service.js';
import type { Principal } from '../modules/auth/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; set by the auth hook on every route not marked public. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** `false` for public routes; otherwise the roles allowed (all roles when omitted). */
    auth?: false | { roles?: Role[] };
  }
}

const DEVICE_ID_RE = /^[\w.:-]{1,128}$/;

/** The device a request names (`X-Device-Id` header): validated, or a 400. */
export function deviceIdOf(request: FastifyRequest): string | undefined {
  const raw = request.headers['x-device-id'];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !DEVICE_ID_RE.test(raw)) {
    throw new AppError('VALIDATION_FAILED', 'X-Device-Id must be 1-128 characters of letters, digits, _ . : -', [
      { field: 'X-Device-Id', message: 'invalid' },
    ]);
  }
  return raw;
}

/** The principal of an authenticated route; routes marked public never call it. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('UNAUTHORIZED', 'Authentication required');
  return request.principal;
}

/**
 * Authenticates every `/api/` route except those with `config.auth === false`: `X-API-Key` (with an
 * optional matching `X-Agent-Code`) or `Authorization: Bearer <accessToken>`. Missing or bad
 * credentials are 401, an inactive agent or a role not allowed 403.
 */
export function registerAuthHook(app: FastifyInstance, auth: AuthService): void {
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (request) => {
    const routeAuth = request.routeOptions.config?.auth;
    const url = request.routeOptions.url;
    // API routes are authenticated unless marked public; others (health, docs) only when they ask.
    if (routeAuth === false || url === undefined || (routeAuth === undefined && !url.startsWith('/api/'))) return;
    const deviceId = deviceIdOf(request);
    const apiKey = request.headers['x-api-key'];
    const authorization = request.headers.authorization;
    let principal: Principal;
    if (typeof apiKey === 'string' && apiKey.length > 0) {
      const agentCode = request.headers['x-agent-code'];
      principal = await auth.authenticateApiKey(apiKey, {
        agentCode: typeof agentCode === 'string' ? agentCode : undefined,
        deviceId,
      });
    } else if (typeof authorization === 'string' && /^Bearer\s+\S+$/i.test(authorization)) {
      principal = await auth.authenticateAccessToken(authorization.replace(/^Bearer\s+/i, ''), { deviceId });
    } else {
      throw new AppError('UNAUTHORIZED', 'Send an X-API-Key header or an Authorization: Bearer token');
    }
    const roles = routeAuth?.roles;
    if (roles && !roles.includes(principal.role)) throw new AppError('FORBIDDEN', 'Your role may not do this');
    request.principal = principal;
    request.log = request.log.child({ tenantId: principal.tenantId, agent: principal.agentCode, deviceId });
  });
}
