import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Heartbeat } from '@fieldsync/protocol/devices';
import { Ok } from '@fieldsync/protocol/envelope';
import { Delta, DeltaQuery } from '@fieldsync/protocol/sync';
import { principalOf } from '../../http/auth.hook.js';
import { deltaEnvelopeBytes } from '../../sync/pull.js';
import { sendJsonText } from '../../http/json-text.js';
import { responses, secured } from '../../http/schemas.js';
import type { SyncService } from '../../sync/sync.service.js';

/** Device facts a client may send as headers on any sync request; one longer than the heartbeat allows is ignored. */
export function deviceFactsOf(request: FastifyRequest): Heartbeat {
  const header = (name: string, field: 'platform' | 'appVersion' | 'osVersion' | 'networkType') => {
    const value = request.headers[name];
    const maxLength = (Heartbeat.properties[field] as { maxLength?: number }).maxLength ?? 64;
    return typeof value === 'string' && value.length <= maxLength ? value : undefined;
  };
  return {
    platform: header('x-platform', 'platform'),
    appVersion: header('x-app-version', 'appVersion'),
    osVersion: header('x-os-version', 'osVersion'),
    networkType: header('x-network-type', 'networkType'),
  };
}

/** `GET /api/sync/delta`: the changes after the device's checkpoint (SPEC §4). */
export function syncRoutes(deps: { sync: SyncService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/api/sync/delta',
      {
        schema: {
          tags: ['sync'],
          ...secured,
          summary: 'Delta pull: the changes the caller may see after `version`, in version order, paged',
          description: 'Page with `version=nextVersion` until `hasMore` is false; `version=0` is a full initial sync. Records the device checkpoint.',
          querystring: DeltaQuery,
          response: responses({ 200: Ok(Delta) }),
        },
      },
      async (request, reply) => {
        const principal = principalOf(request);
        const { version = 0, limit = 1000, collections, deviceId } = request.query;
        const page = await deps.sync.pullPage(
          { ...principal, deviceId: principal.deviceId ?? deviceId },
          {
            version,
            limit,
            collections: collections
              ?.split(',')
              .map((c) => c.trim())
              .filter(Boolean),
          },
          deviceFactsOf(request),
        );
        // The records are spliced in as PostgreSQL wrote them: JSON text is sent as it is.
        return sendJsonText(reply, deltaEnvelopeBytes(page));
      },
    );
  };
}
