import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isUtf8 } from 'node:buffer';
import { AppError } from '../errors.js';
import { refusalOf, screenBatch } from '../lib/values.js';


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
      const items = (req.routeOptions.config as { jsonItems?: string } | undefined)?.jsonItems;
      done(null, parseStrictJson(body as Buffer, items));
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
 * `items` names the array of a batch route (a push's `changes`; '' for a body that is the
 * array, bulk rows) whose items are checked one by one: a refused item becomes a RefusedItem,
 * so one bad item is that item's error and never the whole batch's (route config `jsonItems`).
 */
export function parseStrictJson(body: Buffer, items?: string): unknown {
  if (body.length === 0) return undefined;
  if (!isUtf8(body)) throw new AppError('BAD_REQUEST', 'The request body is not valid UTF-8');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AppError('BAD_REQUEST', 'The request body is not valid JSON');
  }
  const why = items === undefined ? refusalOf(value) : screenBatch(value, items);
  if (why) throw new AppError('BAD_REQUEST', why);
  return value;
}
