import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { LoginBody, PasswordChange, RefreshBody, Tokens } from '@fieldsync/protocol/auth';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { secured, withErrors } from '../../http/schemas.js';
import type { AuthService } from './auth.service.js';

/** Login, token refresh (rotating), logout and password changes for people (JWT). */
export function authRoutes(deps: { auth: AuthService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['auth'];
    app.post(
      '/api/auth/login',
      { config: { auth: false }, schema: { tags, body: LoginBody, response: withErrors({ 200: Ok(Tokens) }) } },
      // request.ip is the socket's address unless TRUST_PROXY names the proxies in front.
      async (request) => ({ success: true as const, data: await deps.auth.login(request.body, { address: request.ip }) }),
    );
    app.post(
      '/api/auth/refresh',
      { config: { auth: false }, schema: { tags, body: RefreshBody, response: withErrors({ 200: Ok(Tokens) }) } },
      async (request) => ({ success: true as const, data: await deps.auth.refresh(request.body.refreshToken) }),
    );
    app.post(
      '/api/auth/logout',
      { config: { auth: false }, schema: { tags, body: RefreshBody, response: withErrors({ 204: Type.Null() }) } },
      async (request, reply) => {
        await deps.auth.logout(request.body.refreshToken);
        return reply.status(204).send(null);
      },
    );
    app.post(
      '/api/auth/password',
      { schema: { tags, ...secured, body: PasswordChange, response: withErrors({ 204: Type.Null() }) } },
      async (request, reply) => {
        await deps.auth.changePassword(principalOf(request), request.body, { address: request.ip });
        return reply.status(204).send(null);
      },
    );
  };
}
