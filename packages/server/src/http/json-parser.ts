import type { FastifyInstance } from 'fastify';
import { isUtf8 } from 'node:buffer';
import { AppError } from '../errors.js';

/** Deeper JSON than this is refused: no API body nests anywhere near it. */
export const MAX_JSON_DEPTH = 32;

/**
 * Parses JSON bodies strictly: invalid UTF-8, nesting deeper than MAX_JSON_DEPTH, NUL
 * characters and `__proto__` keys are a 400 before any handler sees the body.
 */
export function registerJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser(['application/json']);
  const parser = (_req: unknown, body: string | Buffer, done: (error: Error | null, value?: unknown) => void) => {
    try {
      done(null, parseStrictJson(body as Buffer));
    } catch (error) {
      done(error as Error, undefined);
    }
  };
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, parser);
  app.addContentTypeParser(/^application\/[\w.-]+\+json$/, { parseAs: 'buffer' }, parser);
}

export function parseStrictJson(body: Buffer): unknown {
  if (body.length === 0) throw new AppError('BAD_REQUEST', 'The request body is empty');
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

function checkValue(value: unknown, depth: number): void {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) throw new AppError('BAD_REQUEST', 'Strings must not contain NUL characters');
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  if (depth >= MAX_JSON_DEPTH) throw new AppError('BAD_REQUEST', `JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(value)) {
    for (const item of value) checkValue(item, depth + 1);
    return;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__' || key === 'constructor' || key.includes('\u0000')) {
      throw new AppError('BAD_REQUEST', `Forbidden key "${key.replace(/\u0000/g, '\\0')}"`);
    }
    checkValue((value as Record<string, unknown>)[key], depth + 1);
  }
}
