import { Type, type TObject, type TSchema } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Ok } from '@fieldsync/protocol/envelope';
import { Category, CategoryCreate, CategoryUpdate, Item, ItemCreate, ItemUpdate, Space, SpaceCreate, SpaceUpdate } from '@fieldsync/protocol/lists';
import { principalOf } from '../../http/auth.hook.js';
import { IdParams, responses, secured } from '../../http/schemas.js';
import type { ListCollection, ListsService } from './lists.service.js';

/** An update body plus the optional `version` for optimistic concurrency (409 when stale). */
const withVersion = (schema: TObject) =>
  Type.Object({ ...schema.properties, version: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false });

const ListQuery = Type.Object(
  {
    spaceId: Type.Optional(Type.String({ format: 'uuid' })),
    categoryId: Type.Optional(Type.String({ format: 'uuid' })),
    includeDeleted: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

/** REST for spaces, categories and items (SPEC §6): the same rules as a push. */
export function listsRoutes(deps: { lists: ListsService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const mount = (collection: ListCollection, one: string, record: TSchema, create: TSchema, update: TObject) => {
      const tags = ['lists'];
      const path = `/api/${collection}`;
      // Writes go through the push engine as one-change batches: its per-change codes are the answers.
      const writeErrors = { body: true, also: ['NOT_FOUND', 'FORBIDDEN', 'DUPLICATE'] } as const;
      app.get(
        path,
        { schema: { tags, ...secured, summary: `List the ${collection} the caller may see`, querystring: ListQuery, response: responses({ 200: Ok(Type.Array(record)) }) } },
        async (request) => ({ success: true as const, data: await deps.lists.list(principalOf(request), collection, request.query) }),
      );
      app.post(
        path,
        { schema: { tags, ...secured, summary: `Create a ${one}`, body: create, response: responses({ 201: Ok(record) }, writeErrors) } },
        async (request, reply) =>
          reply.status(201).send({ success: true as const, data: await deps.lists.create(principalOf(request), collection, request.body as Record<string, unknown>) }),
      );
      app.get(
        `${path}/:id`,
        { schema: { tags, ...secured, summary: `One ${one}`, params: IdParams, response: responses({ 200: Ok(record) }, { params: true, also: ['NOT_FOUND'] }) } },
        async (request) => ({ success: true as const, data: await deps.lists.get(principalOf(request), collection, request.params.id) }),
      );
      app.patch(
        `${path}/:id`,
        {
          schema: {
            tags,
            ...secured,
            summary: `Update the fields sent of a ${one}; \`version\` asks for optimistic concurrency`,
            params: IdParams,
            body: withVersion(update),
            response: responses({ 200: Ok(record) }, { ...writeErrors, params: true, also: [...writeErrors.also, 'VERSION_MISMATCH'] }),
          },
        },
        async (request) => {
          const { version, ...fields } = request.body as Record<string, unknown> & { version?: number };
          return { success: true as const, data: await deps.lists.update(principalOf(request), collection, request.params.id, fields, version) };
        },
      );
      app.delete(
        `${path}/:id`,
        {
          schema: {
            tags,
            ...secured,
            summary: collection === 'spaces' ? 'Delete a space (a tombstone; its categories and items too)' : `Delete a ${one} (a tombstone)`,
            params: IdParams,
            response: responses({ 204: Type.Null() }, { ...writeErrors, params: true }),
          },
        },
        async (request, reply) => {
          await deps.lists.remove(principalOf(request), collection, request.params.id);
          return reply.status(204).send(null);
        },
      );
    };
    mount('spaces', 'space', Space, SpaceCreate, SpaceUpdate);
    mount('categories', 'category', Category, CategoryCreate, CategoryUpdate);
    mount('items', 'item', Item, ItemCreate, ItemUpdate);
  };
}
