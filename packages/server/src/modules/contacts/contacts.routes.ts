import type { Readable } from 'node:stream';
import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  BulkResult,
  Contact,
  ContactCreate,
  ContactListQuery,
  ContactPatch,
  ContactReplace,
  HistoryEntry,
  ImportResult,
} from '@fieldsync/protocol/contacts';
import { Ok, Page, VALIDATED_BY } from '@fieldsync/protocol/envelope';
import { AppError } from '../../errors.js';
import { principalOf } from '../../http/auth.hook.js';
import { IdParams, responses, secured } from '../../http/schemas.js';
import { compileBodyValidator } from '../../lib/validation.js';
import { RefusedItem } from '../../lib/values.js';
import { actorOf, type ContactsService } from './contacts.service.js';
import { EXPORT_CONTENT_TYPES, exportStream, type ExportFormat } from './contacts.export.js';
import { importContactsCsv } from './contacts.import.js';

export const MAX_BULK_ROWS = 5000;

/** The export's answer per format. Plain JSON Schema (`object`): the handler sends a stream, not a typed value. */
const EXPORT_RESPONSE: object = {
  description: 'The live contacts, streamed in the format asked for',
  content: {
    'text/csv': { schema: Type.String({ description: 'A header row naming the fields, then one contact per row' }) },
    'application/json': { schema: Type.Array(Contact) },
    'application/x-ndjson': { schema: Type.String({ description: 'One contact (JSON) per line' }) },
  },
};

const checkCreate = compileBodyValidator<ContactCreate>(ContactCreate);
/** Validates one bulk/import row: undefined when valid, else the first problems as text. */
export const contactRowError = (row: unknown): string | undefined => {
  if (row instanceof RefusedItem) return row.reason;
  const checked = checkCreate(row);
  return checked.ok ? undefined : checked.errors.slice(0, 3).map((e) => `${e.field}: ${e.message}`).join('; ');
};

/** REST for contacts (SPEC §5): CRUD, search, history, bulk, CSV import, streamed export. */
export function contactsRoutes(deps: { contacts: ContactsService; importBodyLimit: number }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['contacts'];
    const { contacts } = deps;

    app.get(
      '/api/contacts',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Search and page through contacts (names, phones in any format, email, company)',
          querystring: ContactListQuery,
          response: responses({ 200: Page(Contact) }),
        },
      },
      async (request) => {
        const { items, total, page, limit } = await contacts.list(principalOf(request).tenantId, request.query);
        return { success: true as const, data: items, pagination: { page, limit, total } };
      },
    );

    app.post(
      '/api/contacts',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Create a contact; a primary phone that exists already is a 409 DUPLICATE naming the existing id',
          body: ContactCreate,
          response: responses({ 201: Ok(Contact) }, { body: true, also: ['DUPLICATE'] }),
        },
      },
      async (request, reply) => {
        const contact = await contacts.create(actorOf(principalOf(request)), request.body);
        return reply.status(201).send({ success: true as const, data: contact });
      },
    );

    app.post(
      '/api/contacts/bulk',
      {
        bodyLimit: 16 * 1024 * 1024,
        schema: {
          tags,
          ...secured,
          summary: `Create up to ${MAX_BULK_ROWS} contacts; each row succeeds or fails on its own`,
          body: Type.Array(Type.Unknown(), { maxItems: MAX_BULK_ROWS }),
          response: responses({ 200: Ok(BulkResult) }, { body: true }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await contacts.bulk(actorOf(principalOf(request)), request.body, contactRowError),
      }),
    );

    // The import reads CSV only, streamed straight to the importer and never buffered: in its
    // own scope every other content type is a 415 before a byte of the body is read.
    await app.register(async (csvOnly) => {
      csvOnly.removeAllContentTypeParsers();
      csvOnly.addContentTypeParser(['text/csv', 'application/csv'], (request, payload, done) => {
        if (Number(request.headers['content-length']) > deps.importBodyLimit) {
          done(new AppError('PAYLOAD_TOO_LARGE', `The CSV body is larger than ${deps.importBodyLimit} bytes`), undefined);
        } else done(null, payload);
      });
      csvOnly.post(
        '/api/contacts/import',
        {
          schema: {
            tags,
            ...secured,
            summary: 'Import a CSV body (header row naming the fields), streamed',
            // The body is a stream the importer reads row by row (each row its own result): documented, not validated here.
            body: { content: { 'text/csv': { schema: { type: 'string', [VALIDATED_BY]: 'CSV importer, row by row' } } } },
            response: responses({ 200: Ok(ImportResult) }, { body: true }),
          },
        },
        async (request) => {
          if (!request.headers['content-type']?.match(/^(text|application)\/csv/)) {
            throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Send the CSV with Content-Type: text/csv');
          }
          const result = await importContactsCsv(contacts, actorOf(principalOf(request)), request.body as Readable, contactRowError, {
            maxBytes: deps.importBodyLimit,
          });
          return { success: true as const, data: result };
        },
      );
    });

    app.get(
      '/api/contacts/export',
      {
        compress: false,
        schema: {
          tags,
          ...secured,
          summary: 'Stream every live contact as csv, json or ndjson',
          querystring: Type.Object(
            { format: Type.Optional(Type.Union([Type.Literal('csv'), Type.Literal('json'), Type.Literal('ndjson')])) },
            { additionalProperties: false },
          ),
          response: responses({ 200: EXPORT_RESPONSE }),
        },
      },
      async (request, reply) => {
        const format: ExportFormat = request.query.format ?? 'csv';
        const tenantId = principalOf(request).tenantId;
        return reply
          .header('content-type', EXPORT_CONTENT_TYPES[format])
          .header('content-disposition', `attachment; filename="contacts.${format === 'ndjson' ? 'ndjson' : format}"`)
          .send(exportStream(contacts.pages(tenantId), format));
      },
    );

    app.get(
      '/api/contacts/:id',
      {
        schema: { tags, ...secured, summary: 'One contact', params: IdParams, response: responses({ 200: Ok(Contact) }, { params: true, also: ['NOT_FOUND'] }) },
      },
      async (request) => ({ success: true as const, data: await contacts.get(principalOf(request).tenantId, request.params.id) }),
    );

    app.patch(
      '/api/contacts/:id',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Update the fields sent; `version` asks for optimistic concurrency (409 VERSION_MISMATCH when stale)',
          params: IdParams,
          body: ContactPatch,
          response: responses({ 200: Ok(Contact) }, { body: true, params: true, also: ['NOT_FOUND', 'DUPLICATE', 'VERSION_MISMATCH'] }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await contacts.update(actorOf(principalOf(request)), request.params.id, request.body),
      }),
    );

    app.put(
      '/api/contacts/:id',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Replace every writable field (omitted optional fields become null or false)',
          params: IdParams,
          body: ContactReplace,
          response: responses({ 200: Ok(Contact) }, { body: true, params: true, also: ['NOT_FOUND', 'DUPLICATE', 'VERSION_MISMATCH'] }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await contacts.replace(actorOf(principalOf(request)), request.params.id, request.body),
      }),
    );

    app.delete(
      '/api/contacts/:id',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Delete a contact (a tombstone every device receives)',
          params: IdParams,
          response: responses({ 204: Type.Null() }, { body: true, params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request, reply) => {
        await contacts.remove(actorOf(principalOf(request)), request.params.id);
        return reply.status(204).send(null);
      },
    );

    app.get(
      '/api/contacts/:id/history',
      {
        schema: {
          tags,
          ...secured,
          summary: "A contact's audit log: every change with its fields before and after",
          params: IdParams,
          response: responses({ 200: Ok(Type.Array(HistoryEntry)) }, { params: true, also: ['NOT_FOUND'] }),
        },
      },
      async (request) => ({
        success: true as const,
        data: await contacts.history(principalOf(request).tenantId, request.params.id),
      }),
    );
  };
}
