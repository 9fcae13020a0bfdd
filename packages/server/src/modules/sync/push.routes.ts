import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Ok } from '@fieldsync/protocol/envelope';
import { MAX_PUSH_CHANGES, PushBody, PushResult } from '@fieldsync/protocol/sync';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import type { SyncService } from '../../sync/sync.service.js';
import { deviceFactsOf } from './sync.routes.js';

/** `POST /api/sync`: a device's batched offline changes (SPEC §4), idempotent by key and by change. */
export function pushRoutes(deps: { sync: SyncService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      '/api/sync',
      {
        bodyLimit: 16 * 1024 * 1024,
        config: { idempotent: true, jsonItems: 'changes' },
        schema: {
          tags: ['sync'],
          ...secured,
          summary: `Push up to ${MAX_PUSH_CHANGES} changes; each is acknowledged on its own`,
          description:
            'Changes apply in order; accepted ones commit atomically. Each change is checked against the schema of its `entityType` and `operation` on its own: one that does not match gets its own ack with `VALIDATION_FAILED` (a per-change code of the error catalogue) and does not sink the batch. A re-sent change (same changeId, or same localId/id + operation + timestamp) gets its original result. Send an Idempotency-Key header to replay a whole answer.',
          body: PushBody,
          response: responses({ 200: Ok(PushResult) }, { body: true, also: ['IDEMPOTENCY_IN_FLIGHT', 'IDEMPOTENCY_KEY_REUSED'] }),
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const data = await deps.sync.push(principal, request.body, deviceFactsOf(request));
        return { success: true as const, data };
      },
    );
  };
}
