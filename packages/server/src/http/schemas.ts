import { Type, type TSchema } from 'typebox';
import { ErrorCatalogue, ErrorEnvelope, statusOf, type ErrorCode } from '@fieldsync/protocol/errors';

/** The id of the error envelope as a shared schema: `#/components/schemas/ErrorEnvelope` in OpenAPI. */
export const ERROR_ENVELOPE_ID = 'ErrorEnvelope';

/** Schemas registered once (`app.addSchema`) and referenced by id from routes. */
export const sharedSchemas = [{ $id: ERROR_ENVELOPE_ID, ...ErrorEnvelope }];

/** Codes any API request may be answered with: bad input, the rate limit, a server error, shutting down. */
const ANY_REQUEST: readonly ErrorCode[] = ['VALIDATION_FAILED', 'BAD_REQUEST', 'RATE_LIMITED', 'INTERNAL', 'UNAVAILABLE'];
/** Codes of the credential check: no or bad credentials, an inactive agent or a role not allowed. */
const AUTHENTICATED: readonly ErrorCode[] = ['UNAUTHORIZED', 'FORBIDDEN'];
/** Codes of reading a body: too large, not JSON in UTF-8. */
const WITH_BODY: readonly ErrorCode[] = ['PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'];
/** Codes of path parameters: one longer than the router takes. */
const WITH_PARAMS: readonly ErrorCode[] = ['URI_TOO_LONG'];

export interface ErrorOptions {
  /** A route without credentials (login, refresh): no 401/403 from the auth hook. */
  public?: boolean;
  /** The route reads a body. */
  body?: boolean;
  /** The route has path parameters. */
  params?: boolean;
  /** The codes of the route's own rules (NOT_FOUND, DUPLICATE, VERSION_MISMATCH, ...). */
  also?: readonly ErrorCode[];
}

/** The error envelope (by reference) answered with `codes`, which share one status. */
function errorResponse(codes: readonly ErrorCode[]) {
  return Type.Unsafe<ErrorEnvelope>({
    $ref: `${ERROR_ENVELOPE_ID}#`,
    // Beside the reference, OpenAPI takes it as the response's description.
    description: codes.map((code) => `\`${code}\`: ${ErrorCatalogue[code].meaning}`).join('\n\n'),
  });
}

/**
 * A route's `response` schemas: its success schemas plus the error envelope for every status
 * it can answer, each described by the catalogue codes behind it (STYLE 3 and 5). Every API
 * route may answer bad input, the rate limit, 500 and 503; `opts` adds the credential check,
 * body and parameter refusals, and the route's own codes.
 */
export function responses<T extends Record<number, TSchema | object>>(ok: T, opts: ErrorOptions = {}): T {
  const codes = new Set<ErrorCode>([
    ...ANY_REQUEST,
    ...(opts.public ? [] : AUTHENTICATED),
    ...(opts.body ? WITH_BODY : []),
    ...(opts.params ? WITH_PARAMS : []),
    ...(opts.also ?? []),
  ]);
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(statusOf(code), [...(byStatus.get(statusOf(code)) ?? []), code]);
  const errors = Object.fromEntries([...byStatus].sort(([a], [b]) => a - b).map(([status, list]) => [status, errorResponse(list)]));
  // Typed as the success schemas only: handlers return those and throw AppErrors for the rest.
  return { ...errors, ...ok } as T;
}

export const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

/** A security requirement: API key or bearer token. */
export const secured: { security: Record<string, string[]>[] } = { security: [{ apiKey: [] }, { bearer: [] }] };
