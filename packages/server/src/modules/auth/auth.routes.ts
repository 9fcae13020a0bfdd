import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { LoginBody, RefreshBody, Tokens } from '@fieldsync/protocol/auth';
import { Ok } from '@fieldsync/protocol/envelope';
import { responses } from '../../http/schemas.js';
import type { AuthService } from './auth.service.js';

/** Login, token refresh (rotating) and logout for people (JWT). */
export function authRoutes(deps: { auth: AuthService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['auth'];
    app.post(
      '/api/auth/login',
      {
        config: { auth: false },
        schema: {
          tags,
          summary: 'Log in with an email or agent code and a password: an access token and a refresh token',
          body: LoginBody,
          response: responses({ 200: Ok(Tokens) }, { public: true, body: true, also: ['UNAUTHORIZED', 'FORBIDDEN', 'CONFLICT'] }),
        },
      },
      async (request) => ({ success: true as const, data: await deps.auth.login(request.body) }),
    );
    app.post(
      '/api/auth/refresh',
      {
        config: { auth: false },
        schema: {
          tags,
          summary: 'Trade a refresh token for new tokens (it rotates; a reused one revokes its family)',
          body: RefreshBody,
          response: responses({ 200: Ok(Tokens) }, { public: true, body: true, also: ['UNAUTHORIZED', 'FORBIDDEN'] }),
        },
      },
      async (request) => ({ success: true as const, data: await deps.auth.refresh(request.body.refreshToken) }),
    );
    app.post(
      '/api/auth/logout',
      {
        config: { auth: false },
        schema: {
          tags,
          summary: 'Log out: revoke a refresh token (an unknown one is a no-op)',
          body: RefreshBody,
          response: responses({ 204: Type.Null() }, { public: true, body: true }),
        },
      },
      async (request, reply) => {
        await deps.auth.logout(request.body.refreshToken);
        return reply.status(204).send(null);
      },
    );
  };
}
