import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { SyncAnalytics, SyncAnalyticsQuery } from '@fieldsync/protocol/fleet';
import { Ok } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import type { AnalyticsService } from './analytics.service.js';

/** `GET /api/analytics/sync` (SPEC §11), for admins and managers. */
export function analyticsRoutes(deps: { analytics: AnalyticsService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/api/analytics/sync',
      {
        config: { auth: { roles: ['admin', 'manager'] } },
        schema: {
          tags: ['operations'],
          ...secured,
          summary: "The tenant's sync analytics per hour in [from, to) (default: the last 24 hours), the current hour as it happens",
          querystring: SyncAnalyticsQuery,
          response: responses({ 200: Ok(SyncAnalytics) }),
        },
      },
      async (request) => ({ success: true as const, data: await deps.analytics.sync(principalOf(request).tenantId, request.query) }),
    );
  };
}
