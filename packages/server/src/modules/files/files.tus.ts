import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomUUID } from 'node:crypto';
import { truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';
import { NodeRequest } from 'srvx/node';
import { Type } from 'typebox';
import type { ErrorCode } from '@fieldsync/protocol/errors';
import { AppError } from '../../errors.js';
import { principalOf } from '../../http/auth.hook.js';
import { envelope } from '../../http/error-handler.js';
import { responses, secured } from '../../http/schemas.js';
import type { Caller, FilesService } from './files.service.js';

/** Where the tus endpoint is mounted; an upload's URL is `${TUS_PATH}/<fileId>`. */
export const TUS_PATH = '/api/files/tus';

/** The tus 460 status: the body of a PATCH did not match its Upload-Checksum. */
const CHECKSUM_MISMATCH_STATUS = 460;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What one tus request carries through @tus/server into our hooks and the store. */
interface TusRequestContext {
  caller?: Caller;
  /** The SHA-256 the request's body must have (Upload-Checksum). */
  checksum?: Buffer;
  /** Our refusal (quota, type, size, ownership), answered in the error envelope. */
  refusal?: AppError;
  /** An unexpected failure in a hook, logged and answered as a plain 500. */
  failure?: unknown;
}

const requests = new AsyncLocalStorage<TusRequestContext>();

/**
 * @tus/file-store with the checksum extension (@tus/server has none): when a request declares
 * `Upload-Checksum: sha256 <base64>`, its body is hashed while it is written, and on a mismatch
 * the file is cut back to the offset it had (the bytes are not kept) and the answer is 460.
 */
class VerifyingFileStore extends FileStore {
  constructor(options: ConstructorParameters<typeof FileStore>[0]) {
    super(options);
    // The length must be known at creation (it is reserved against the quota): no deferred length.
    this.extensions = ['creation', 'creation-with-upload', 'termination', 'expiration', 'checksum'];
  }

  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    const expected = requests.getStore()?.checksum;
    if (!expected) return super.write(readable, id, offset);
    const hash = createHash('sha256');
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    });
    readable.once('error', (error) => tap.destroy(error));
    const written = await super.write(readable.pipe(tap), id, offset);
    if (!hash.digest().equals(expected)) {
      // Under the upload's lock (the PATCH holds it): no other write can be between.
      await truncate(join(this.directory, id), offset);
      throw { status_code: CHECKSUM_MISMATCH_STATUS, body: 'Checksum Mismatch' };
    }
    return written;
  }
}

/** The tus store: uploads written at their offsets under `directory`, expiring after `ttlMs` unfinished. */
export function createTusStore(directory: string, ttlMs: number): FileStore {
  return new VerifyingFileStore({ directory, expirationPeriodInMilliseconds: ttlMs });
}

/** Runs a hook's work; our refusals become tus errors that keep their envelope for the answer. */
async function guarded<T>(fn: (caller: Caller) => Promise<T>): Promise<T> {
  const context = requests.getStore();
  if (!context?.caller) throw { status_code: 401, body: 'Authentication required' };
  try {
    return await fn(context.caller);
  } catch (error) {
    if (error instanceof AppError) {
      context.refusal = error;
      throw { status_code: error.status, body: error.message };
    }
    context.failure = error;
    throw { status_code: 500, body: 'Internal server error' };
  }
}

/** The envelope code of a tus error status. */
const TUS_CODES: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'BAD_REQUEST', // @tus/server answers 403 for missing Upload-Offset / Content-Type headers
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  410: 'UPLOAD_EXPIRED',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  [CHECKSUM_MISMATCH_STATUS]: 'CHECKSUM_MISMATCH',
};

/** Parses `Upload-Checksum: sha256 <base64>`; a 400 for another algorithm or a bad digest. */
function checksumOf(header: string | string[] | undefined): Buffer | undefined {
  if (header === undefined) return undefined;
  const match = typeof header === 'string' ? /^(\S+) ([A-Za-z0-9+/]+={0,2})$/.exec(header.trim()) : null;
  if (!match) throw new AppError('BAD_REQUEST', 'Upload-Checksum must be "<algorithm> <base64 digest>"');
  if (match[1].toLowerCase() !== 'sha256') throw new AppError('BAD_REQUEST', `Checksum algorithm "${match[1]}" is not supported; use sha256`);
  const digest = Buffer.from(match[2], 'base64');
  if (digest.length !== 32) throw new AppError('BAD_REQUEST', 'Upload-Checksum: a sha256 digest is 32 bytes');
  return digest;
}

/**
 * tus 1.0 at /api/files/tus/ (creation, creation-with-upload, termination, expiration,
 * checksum with sha256), through @tus/server and @tus/file-store, behind the product's own
 * authentication: the auth hook has resolved the caller before @tus/server sees the request;
 * our hooks reserve the declared length against the tenant's quota at creation, check type and
 * size, restrict HEAD/PATCH/DELETE to the upload's owner in its tenant (404 otherwise), and
 * mark the file ready when its last byte arrives. The upload id, a UUID, is the fileId.
 * Errors are answered in the product's envelope with tus's statuses.
 */
export function tusRoutes(deps: { files: FilesService; store: FileStore; maxBytes: number }): FastifyPluginAsyncTypebox {
  const { files } = deps;
  const tus = new Server({
    path: TUS_PATH,
    datastore: deps.store,
    maxSize: deps.maxBytes,
    // A relative Location is right behind any proxy; tus clients resolve it against the endpoint.
    relativeLocation: true,
    // A finished upload is a file other records may name (contact photos, attachments).
    disableTerminationForFinishedUploads: true,
    allowedHeaders: ['Upload-Checksum', 'X-API-Key', 'X-Device-Id', 'X-Agent-Code'],
    exposedHeaders: ['Tus-Checksum-Algorithm', 'Upload-Expires'],
    namingFunction: () => randomUUID(),
    getFileIdFromRequest: (_req, lastPath) => (lastPath && UUID_RE.test(lastPath) ? lastPath : undefined),
    onIncomingRequest: async (req, id) => {
      if (req.method !== 'POST') await guarded((caller) => files.tusUpload(caller, id));
    },
    onUploadCreate: async (_req, upload) => {
      await guarded((caller) =>
        files.createTusUpload(caller, {
          id: upload.id,
          size: upload.size,
          filename: upload.metadata?.filename,
          contentType: upload.metadata?.filetype,
        }),
      );
      return {};
    },
    onUploadFinish: async (_req, upload) => {
      await guarded((caller) => files.finishTusUpload(caller, upload.id));
      return {};
    },
  });

  const handle = async (request: FastifyRequest, reply: FastifyReply) => {
    const context: TusRequestContext = {};
    if (request.method !== 'OPTIONS') {
      const principal = principalOf(request);
      context.caller = { tenantId: principal.tenantId, userId: principal.userId };
      if (request.headers['upload-defer-length'] !== undefined) throw new AppError('BAD_REQUEST', 'Send Upload-Length: deferred lengths are not accepted');
      if (request.headers['upload-concat'] !== undefined) throw new AppError('BAD_REQUEST', 'Concatenation is not supported: upload sequentially');
      context.checksum = checksumOf(request.headers['upload-checksum']);
    }
    const answer = await requests.run(context, () => tus.handleWeb(new NodeRequest({ req: request.raw, res: reply.raw }) as unknown as Request));
    const text = await answer.text();
    reply.status(answer.status);
    answer.headers.forEach((value, name) => {
      // CORS is the product's (CORS_ORIGIN), not @tus/server's default "*"; the body is ours.
      if (!/^(access-control-allow-(origin|credentials)|content-length|content-type)$/i.test(name)) reply.header(name, value);
    });
    if (request.method === 'OPTIONS') reply.header('tus-checksum-algorithm', 'sha256');
    if (request.method === 'DELETE' && answer.status === 204) await files.forgetTusUpload(context.caller!, (request.params as { fileId: string }).fileId);
    if (answer.status < 400) return reply.send(text ? Buffer.from(text) : undefined);
    if (context.failure || answer.status >= 500) request.log.error({ err: context.failure, status: answer.status, tus: text.trim() }, 'tus request failed');
    const refusal = context.refusal;
    const body = refusal
      ? envelope(refusal.code, refusal.message, refusal.details)
      : envelope(TUS_CODES[answer.status] ?? (answer.status >= 500 ? 'INTERNAL' : 'BAD_REQUEST'), answer.status >= 500 ? 'Internal server error' : text.trim());
    return reply.header('content-type', 'application/json; charset=utf-8').send(Buffer.from(JSON.stringify(body)));
  };

  return async (app) => {
    // @tus/server reads the bodies itself, as streams: no parser here consumes them.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, _payload, done) => done(null));
    const tags = ['files'];
    const params = Type.Object({ fileId: Type.String({ maxLength: 64 }) });
    const empty = (description: string) => Type.Null({ description });
    for (const url of [TUS_PATH, `${TUS_PATH}/`]) {
      app.route({
        method: 'OPTIONS',
        url,
        config: { auth: false },
        schema: { tags, summary: 'tus discovery: version, extensions, Tus-Max-Size, Tus-Checksum-Algorithm', response: { 204: empty('tus capabilities in headers') } },
        handler: handle,
      });
      app.route({
        method: 'POST',
        url,
        compress: false,
        schema: {
          tags,
          ...secured,
          summary: 'tus creation: Upload-Length and Upload-Metadata (filename, filetype); the Location names the fileId',
          response: responses({ 201: empty('created; Location: /api/files/tus/<fileId>') }, { body: true, also: ['QUOTA_EXCEEDED', 'PRECONDITION_FAILED'] }),
        },
        handler: handle,
      });
    }
    app.route({
      method: ['HEAD', 'PATCH', 'DELETE'],
      url: `${TUS_PATH}/:fileId`,
      compress: false,
      schema: {
        tags,
        ...secured,
        summary: 'tus upload: HEAD (offset), PATCH (bytes at Upload-Offset, optional Upload-Checksum: sha256), DELETE (terminate)',
        params,
        response: responses({ 200: empty('HEAD: Upload-Offset, Upload-Length'), 204: empty('PATCH: new Upload-Offset; DELETE: terminated') }, { body: true, params: true, also: ['NOT_FOUND', 'CONFLICT', 'UPLOAD_EXPIRED', 'PRECONDITION_FAILED'] }),
      },
      handler: handle,
    });
    app.route({
      method: 'OPTIONS',
      url: `${TUS_PATH}/:fileId`,
      config: { auth: false },
      schema: { tags, summary: 'tus discovery', params, response: { 204: empty('tus capabilities in headers') } },
      handler: handle,
    });
  };
}
