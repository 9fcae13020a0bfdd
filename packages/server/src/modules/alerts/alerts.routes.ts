import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Alert, AlertsQuery } from '@fieldsync/protocol/fleet';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import type { AlertsService } from './alerts.service.js';

/** `GET /api/alerts` (SPEC §11), for admins and managers. */
export function alertsRoutes(deps: { alerts: AlertsService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/api/alerts',
      {
        config: { auth: { roles: ['admin', 'manager'] } },
        schema: {
          tags: ['operations'],
          ...secured,
          summary: 'Alerts raised by the periodic rules (active by default, or resolved), newest first',
          querystring: AlertsQuery,
          response: responses({ 200: Ok(Type.Array(Alert)) }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await deps.alerts.list(principalOf(request).tenantId, request.query.status ?? 'active', request.query.limit ?? 100),
      }),
    );
  };
}
