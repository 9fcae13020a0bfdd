import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { LoginBody, PasswordChange, RefreshBody, Tokens } from '@fieldsync/protocol/auth';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import type { AuthService } from './auth.service.js';

/** Login, token refresh (rotating), logout and password changes for people (JWT). */
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
          response: responses({ 200: Ok(Tokens) }, { public: true, body: true, also: ['UNAUTHORIZED', 'RATE_LIMITED'] }),
        },
      },
      async (request) => ({ success: true as const, data: await deps.auth.login(request.body, { address: request.ip }) }),
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
    app.post(
      '/api/auth/password',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Change your own password (at least 10 characters); your refresh tokens are revoked',
          body: PasswordChange,
          response: responses({ 204: Type.Null() }, { body: true, also: ['VALIDATION_FAILED'] }),
        },
      },
      async (request, reply) => {
        await deps.auth.changePassword(principalOf(request), request.body, { address: request.ip });
        return reply.status(204).send(null);
      },
    );
  };
}
