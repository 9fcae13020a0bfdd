import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Ok, Page } from '@fieldsync/protocol/envelope';
import { principalOf } from '../../http/auth.hook.js';
import { IdParams, responses, secured } from '../../http/schemas.js';
import { STRATEGIES } from '../../sync/conflicts.js';
import type { ConflictsService } from './conflicts.service.js';

const Strategy = Type.Union(STRATEGIES.map((s) => Type.Literal(s)));
const Monotonic = Type.Record(
  Type.String({ maxLength: 64 }),
  Type.Array(Type.Union([Type.String({ maxLength: 200 }), Type.Number(), Type.Boolean(), Type.Null()]), { minItems: 2, maxItems: 50 }),
  { maxProperties: 20 },
);
const PolicyOut = Type.Object({ collection: Type.String(), strategy: Type.String(), monotonic: Type.Optional(Type.Record(Type.String(), Type.Array(Type.Unknown()))) });
const ConflictOut = Type.Object({
  id: Type.String(),
  collection: Type.String(),
  recordId: Type.String(),
  deviceId: Type.Union([Type.String(), Type.Null()]),
  userId: Type.Union([Type.String(), Type.Null()]),
  strategy: Type.String(),
  clientChange: Type.Record(Type.String(), Type.Unknown()),
  serverBefore: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  outcome: Type.String(),
  status: Type.String(),
  resolution: Type.Union([Type.String(), Type.Null()]),
  resolverId: Type.Union([Type.String(), Type.Null()]),
  resolvedAt: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
});

/** Conflict policies (`/api/conflict-policies`) and the review queue (`/api/conflicts`), for admins and managers. */
export function conflictsRoutes(deps: { conflicts: ConflictsService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const config = { auth: { roles: ['admin' as const, 'manager' as const] } };
    const tags = ['conflicts'];
    app.get(
      '/api/conflict-policies',
      { config, schema: { tags, ...secured, summary: 'The conflict policy of every synced collection', response: responses({ 200: Ok(Type.Array(PolicyOut)) }) } },
      async (request) => ({ success: true as const, data: await deps.conflicts.listPolicies(principalOf(request).tenantId) }),
    );
    app.put(
      '/api/conflict-policies/:collection',
      {
        config,
        schema: {
          tags,
          ...secured,
          summary: "Set a collection's conflict policy (strategy, and monotonic fields for preserve_escalation)",
          params: Type.Object({ collection: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
          body: Type.Object({ strategy: Strategy, monotonic: Type.Optional(Monotonic) }, { additionalProperties: false }),
          response: responses({ 200: Ok(PolicyOut) }, { body: true, params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await deps.conflicts.setPolicy(principalOf(request).tenantId, request.params.collection, request.body),
      }),
    );
    app.get(
      '/api/conflicts',
      {
        config,
        schema: {
          tags,
          ...secured,
          summary: 'The conflict log and review queue (`status=pending`), newest first',
          querystring: Type.Object(
            {
              status: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('resolved'), Type.Literal('logged')])),
              collection: Type.Optional(Type.String({ maxLength: 64 })),
              page: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, default: 1 })),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
            },
            { additionalProperties: false },
          ),
          response: responses({ 200: Page(ConflictOut) }),
        },
      },
      async (request) => {
        const { page = 1, limit = 50, ...filter } = request.query;
        const { items, total } = await deps.conflicts.list(principalOf(request), { ...filter, page, limit });
        return { success: true as const, data: items, pagination: { page, limit, total } };
      },
    );
    app.post(
      '/api/conflicts/:id/resolve',
      {
        config,
        schema: {
          tags,
          ...secured,
          summary: 'Resolve a pending conflict: keep the server state, apply the client change, or merged data (a new version for every device)',
          params: IdParams,
          body: Type.Object(
            {
              choose: Type.Union([Type.Literal('server'), Type.Literal('client'), Type.Literal('merged')]),
              data: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 50 })),
            },
            { additionalProperties: false },
          ),
          response: responses({ 200: Ok(ConflictOut) }, { body: true, params: true, also: ['NOT_FOUND', 'CONFLICT', 'DUPLICATE'] }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await deps.conflicts.resolve(principalOf(request), request.params.id, request.body),
      }),
    );
  };
}
