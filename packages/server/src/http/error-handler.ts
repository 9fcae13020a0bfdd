import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorEnvelope, statusOf, type ErrorCode } from '@fieldsync/protocol/errors';
import { AppError } from '../errors.js';
import { fieldOf } from '../lib/validation.js';

/** The failure envelope of SPEC §3 (one builder, in the protocol, for HTTP and socket acks). */
export const envelope = errorEnvelope;

/**
 * The code of a refusal by Fastify or Node itself (body too large, bad media type, a path
 * parameter too long, unreadable HTTP), by the status it carries. A status the catalogue has
 * no code for is answered as 400 BAD_REQUEST, so every answer's code and status agree.
 */
export const FRAMEWORK_CODES: Readonly<Partial<Record<number, ErrorCode>>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  408: 'REQUEST_TIMEOUT',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  431: 'HEADERS_TOO_LARGE',
};

/** The catalogue code of a framework error's status (see FRAMEWORK_CODES). */
export const frameworkCode = (status: number | undefined): ErrorCode => (status === undefined ? undefined : FRAMEWORK_CODES[status]) ?? 'BAD_REQUEST';

/**
 * The only place HTTP errors become envelopes: AppErrors keep their code; Fastify's own 4xx
 * (validation, body too large, bad media type) map by status to a catalogue code; anything else
 * is a logged 500. No status is ever chosen by reading an error's message.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | AppError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof AppError) {
      if (error.headers) reply.headers(error.headers);
      return reply.status(error.status).send(envelope(error.code, error.message, error.details));
    }
    if (error.validation) {
      const details = error.validation.map((v) => ({
        field: fieldOf(v.instancePath, v.params as Record<string, unknown>),
        message: v.message ?? 'is invalid',
      }));
      const where = error.validationContext ?? 'request';
      return reply
        .status(statusOf('VALIDATION_FAILED'))
        .send(envelope('VALIDATION_FAILED', `Invalid ${where}: ${details.map((d) => `${d.field} ${d.message}`).join('; ')}`, details));
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const code = frameworkCode(status);
      return reply.status(statusOf(code)).send(envelope(code, error.message));
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.status(500).send(envelope('INTERNAL', 'Internal server error'));
  });

  app.setNotFoundHandler((request, reply) => {
    reply.status(statusOf('NOT_FOUND')).send(envelope('NOT_FOUND', `Route ${request.method} ${request.url.split('?')[0]} not found`));
  });
}

/**
 * Fastify's refusals before routing (a URL that does not decode, a path parameter longer than
 * the router takes): the same envelope as every other error. Fastify's `frameworkErrors` option.
 */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const code = frameworkCode(error.statusCode);
  reply.status(statusOf(code)).send(envelope(code, error.message));
}

const CLIENT_ERRORS: Record<string, [ErrorCode, string]> = {
  HPE_HEADER_OVERFLOW: ['HEADERS_TOO_LARGE', 'The request headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: ['REQUEST_TIMEOUT', 'The request took too long to arrive'],
};

/**
 * Requests Node cannot parse at all (headers too large, broken HTTP): the envelope written
 * straight to the socket, which is then closed. Fastify's `clientErrorHandler` option.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [code, message] = CLIENT_ERRORS[error.code ?? ''] ?? (['BAD_REQUEST', 'The request is not valid HTTP'] as const);
  const status = statusOf(code);
  const body = JSON.stringify(envelope(code, message));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}
