import type { Readable } from 'node:stream';
import { Type } from 'typebox';
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ok } from '@fieldsync/protocol/envelope';
import { ErrorEnvelope } from '@fieldsync/protocol/errors';
import { ChunkReceipt, FinalizedUpload, Sha256Hex, UploadInit, UploadStatus, UploadTicket } from '@fieldsync/protocol/files';
import { AppError } from '../../errors.js';
import { principalOf } from '../../http/auth.hook.js';
import { responses, secured } from '../../http/schemas.js';
import { contentDisposition, parseRange } from './files.metadata.js';
import { MAX_CHUNKS, type Caller, type FilesService } from './files.service.js';

const UploadParams = Type.Object({ uploadId: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const ChunkParams = Type.Object(
  { uploadId: Type.String({ maxLength: 64 }), index: Type.Integer({ minimum: 0, maximum: MAX_CHUNKS - 1 }) },
  { additionalProperties: false },
);
const FileParams = Type.Object({ fileId: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

/** A download's body, for OpenAPI: the file's bytes in its stored content type. */
const bytes = (description: string) => ({
  description,
  content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
});

const callerOf = (request: Parameters<typeof principalOf>[0]): Caller => {
  const principal = principalOf(request);
  return { tenantId: principal.tenantId, userId: principal.userId };
};

/** The chunked upload API and downloads (SPEC §10). */
export function filesRoutes(deps: { files: FilesService }): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { files } = deps;
    const tags = ['files'];

    app.post(
      '/api/uploads/init',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Open a chunked upload: declare name, size, type and SHA-256; reserves the size against the quota',
          body: UploadInit,
          response: responses({ 201: Ok(UploadTicket) }, { body: true, also: ['QUOTA_EXCEEDED', 'VALIDATION_FAILED'] }),
        },
      },
      async (request, reply) => reply.status(201).send({ success: true as const, data: await files.initUpload(callerOf(request), request.body) }),
    );

    app.get(
      '/api/uploads/:uploadId',
      {
        schema: { tags, ...secured, summary: 'An upload: chunks received and missing, the file once finalized', params: UploadParams, response: responses({ 200: Ok(UploadStatus) }, { params: true, also: ['NOT_FOUND'] }) },
      },
      async (request) => ({ success: true as const, data: await files.uploadStatus(callerOf(request), request.params.uploadId) }),
    );

    // Chunks arrive as raw bytes and are streamed to disk: in this scope the only body is
    // application/octet-stream, handed over unread (never buffered); anything else is a 415.
    await app.register(async (scope) => {
      const raw = scope.withTypeProvider<TypeBoxTypeProvider>();
      raw.removeAllContentTypeParsers();
      raw.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
      raw.put(
        '/api/uploads/:uploadId/chunks/:index',
        {
          schema: {
            tags,
            ...secured,
            summary: 'Send chunk `index` (from 0) as application/octet-stream with X-Chunk-SHA256; a re-sent chunk is harmless',
            params: ChunkParams,
            headers: Type.Object({ 'x-chunk-sha256': Sha256Hex }),
            response: responses({ 200: Ok(ChunkReceipt) }, { body: true, params: true, also: ['NOT_FOUND', 'CHECKSUM_MISMATCH', 'CONFLICT'] }),
          },
        },
        async (request) => {
          const length = request.headers['content-length'];
          const receipt = await files.receiveChunk(
            callerOf(request),
            request.params.uploadId,
            request.params.index,
            request.headers['x-chunk-sha256'],
            request.body as Readable,
            length === undefined ? undefined : Number(length),
          );
          return { success: true as const, data: receipt };
        },
      );
    });

    app.post(
      '/api/uploads/:uploadId/finalize',
      {
        schema: {
          tags,
          ...secured,
          summary: 'Make the file once every chunk is there (409 INCOMPLETE lists the missing) and the whole SHA-256 matches; again: the same file',
          params: UploadParams,
          response: responses({ 200: Ok(FinalizedUpload) }, { body: true, params: true, also: ['NOT_FOUND', 'INCOMPLETE', 'CHECKSUM_MISMATCH'] }),
        },
      },
      async (request) => ({ success: true as const, data: await files.finalize(callerOf(request), request.params.uploadId) }),
    );

    app.get(
      '/api/files/:fileId',
      {
        compress: false,
        schema: {
          tags,
          ...secured,
          summary: 'Download a file (streamed; Range gives 206), as an attachment with its sanitised name and stored type',
          params: FileParams,
          response: responses(
            {
              200: bytes('the whole file'),
              206: bytes('the requested range; Content-Range says which'),
              304: Type.Null({ description: 'If-None-Match named the current ETag' }),
            },
            { params: true, also: ['NOT_FOUND', 'RANGE_NOT_SATISFIABLE'] },
          ),
        },
      },
      async (request, reply) => {
        const file = await files.readable(callerOf(request), request.params.fileId);
        const etag = file.sha256 ? `"${file.sha256}"` : undefined;
        // A Range for another version of the file (If-Range) is ignored: the whole file goes.
        const ifRange = request.headers['if-range'];
        const range = ifRange === undefined || ifRange === etag ? parseRange(request.headers.range, file.size) : undefined;
        if (range === 'unsatisfiable') {
          throw new AppError('RANGE_NOT_SATISFIABLE', `The file has ${file.size} bytes`, undefined, { 'content-range': `bytes */${file.size}` });
        }
        reply
          .header('content-type', file.contentType)
          .header('content-disposition', contentDisposition(file.filename))
          .header('accept-ranges', 'bytes')
          .header('cache-control', 'private, no-cache')
          // Uploaded bytes are never a page of this origin, whatever they contain.
          .header('content-security-policy', "default-src 'none'; sandbox");
        if (etag) reply.header('etag', etag);
        if (etag && request.headers['if-none-match'] === etag) return reply.status(304).send(null);
        if (range) {
          return reply
            .status(206)
            .header('content-range', `bytes ${range.start}-${range.end}/${file.size}`)
            .header('content-length', range.end - range.start + 1)
            .send(files.read(file, range));
        }
        return reply.header('content-length', file.size).send(files.read(file));
      },
    );
  };
}
