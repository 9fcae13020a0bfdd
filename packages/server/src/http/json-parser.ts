import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isUtf8 } from 'node:buffer';
import { AppError } from '../errors.js';

/** Deeper JSON than this is refused: no API body nests anywhere near it. */
export const MAX_JSON_DEPTH = 32;

/**
 * Parses JSON bodies strictly: invalid UTF-8, nesting deeper than MAX_JSON_DEPTH, NUL
 * characters and `__proto__` keys are a 400 before any handler sees the body. The API speaks
 * JSON only: a charset other than UTF-8 and Fastify's default text/plain body (which would
 * reach the schemas as a string) are a 415.
 */
export function registerJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser(['application/json', 'text/plain']);
  const parser = (req: FastifyRequest, body: string | Buffer, done: (error: Error | null, value?: unknown) => void) => {
    try {
      checkCharset(req.headers['content-type']);
      done(null, parseStrictJson(body as Buffer));
    } catch (error) {
      done(error as Error, undefined);
    }
  };
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, parser);
  app.addContentTypeParser(/^application\/[\w.-]+\+json$/, { parseAs: 'buffer' }, parser);
}

/** JSON is UTF-8 (RFC 8259): a body declared in another charset is refused, not misread. */
function checkCharset(contentType: string | undefined): void {
  const charset = contentType?.match(/;\s*charset\s*=\s*"?([^";\s]*)/i)?.[1].toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `JSON bodies must be UTF-8, not ${charset || 'an empty charset'}`);
  }
}

/**
 * An empty body is no body (undefined): routes with a body schema refuse it as a 400, routes
 * without one (a DELETE from a client that always sends Content-Type: application/json) run.
 */
export function parseStrictJson(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  if (!isUtf8(body)) throw new AppError('BAD_REQUEST', 'The request body is not valid UTF-8');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AppError('BAD_REQUEST', 'The request body is not valid JSON');
  }
  checkValue(value, 0);
  return value;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function checkValue(value: unknown, depth: number): void {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) throw new AppError('BAD_REQUEST', 'Strings must not contain NUL characters');
    // A lone surrogate (`"\ud800"`) is valid JSON but no text: it cannot be stored as UTF-8.
    if (LONE_SURROGATE.test(value)) throw new AppError('BAD_REQUEST', 'Strings must be well-formed Unicode (no lone surrogates)');
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  if (depth >= MAX_JSON_DEPTH) throw new AppError('BAD_REQUEST', `JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(value)) {
    for (const item of value) checkValue(item, depth + 1);
    return;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__' || key === 'constructor' || key.includes('\u0000') || LONE_SURROGATE.test(key)) {
      throw new AppError('BAD_REQUEST', `Forbidden key "${key.replace(/\u0000/g, '\\0')}"`);
    }
    checkValue((value as Record<string, unknown>)[key], depth + 1);
  }
}
