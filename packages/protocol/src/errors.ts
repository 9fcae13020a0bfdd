import { Type, type Static } from 'typebox';

/** One entry of the error catalogue. */
export interface ErrorCodeInfo {
  /** The HTTP status every answer with this code has. */
  status: number;
  /** What the code means, for the people reading an answer (and docs/errors.md). */
  meaning: string;
  /** May be a rejected change's `code` in a push acknowledgement (each change fails on its own). */
  perChange?: true;
}

/**
 * The error catalogue (STYLE 5): every code the API answers with, its HTTP status and its
 * meaning. The `error` field of every failure envelope (HTTP answers, socket acks, `auth_error`)
 * and the `code` of a rejected push change is one of these. docs/errors.md is checked against
 * it by a test; add a code here, then there.
 */
export const ErrorCatalogue = {
  VALIDATION_FAILED: {
    status: 400,
    perChange: true,
    meaning:
      'The input does not match its schema or a rule of its fields (wrong type, unknown field, too long, an invalid phone number, a value the database cannot hold, an unknown entity type). `details` lists `{field, message}`.',
  },
  BAD_REQUEST: {
    status: 400,
    meaning: 'The request cannot be read at all: a body that is not JSON or not UTF-8, nests too deep, holds NUL characters or `__proto__` keys; a malformed URL or HTTP.',
  },
  CHECKSUM_MISMATCH: {
    status: 400,
    meaning: "An uploaded chunk's or file's SHA-256 differs from the one announced; the bytes are not kept.",
  },
  UNAUTHORIZED: {
    status: 401,
    meaning: 'Credentials are missing, malformed, expired, revoked or unknown (API key, access or refresh token, socket `auth`).',
  },
  FORBIDDEN: {
    status: 403,
    perChange: true,
    meaning:
      'The caller is known but may not do this: an inactive agent, a role not allowed, a viewer writing to a space, a device id that belongs to another user.',
  },
  NOT_FOUND: {
    status: 404,
    perChange: true,
    meaning: "No such route or record for this caller. Records of another tenant, or outside the caller's scopes, are not found rather than forbidden.",
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    meaning: 'The resource does not take this method: call sessions and terminal sessions are append only, never updated or deleted (`Allow: GET`).',
  },
  REQUEST_TIMEOUT: {
    status: 408,
    meaning: 'The request did not arrive in time; the connection is closed.',
  },
  CONFLICT: {
    status: 409,
    meaning:
      'The request conflicts with the current state: a conflict that is no longer pending, a login that exists in several tenants, a socket that is already authenticated.',
  },
  DUPLICATE: {
    status: 409,
    perChange: true,
    meaning:
      'A value that must be unique is taken (a contact\'s primary phone, an agent code, a tenant slug, a record id, a project\'s external `projectId` in a push create); `details` names the existing record where there is one.',
  },
  VERSION_MISMATCH: {
    status: 409,
    perChange: true,
    meaning: 'The record is not at the `version` the request expected (optimistic concurrency); read it again and retry.',
  },
  IDEMPOTENCY_IN_FLIGHT: {
    status: 409,
    meaning: 'A request with this Idempotency-Key is still running; retry after `Retry-After`.',
  },
  INCOMPLETE: {
    status: 409,
    meaning: 'An upload was finalized before all its chunks arrived; `details` lists the missing chunks.',
  },
  UPLOAD_EXPIRED: {
    status: 410,
    meaning: 'A tus upload past its expiry: it and its bytes are gone; start a new upload.',
  },
  PRECONDITION_FAILED: {
    status: 412,
    meaning: 'A tus request without a supported Tus-Resumable version.',
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    perChange: true,
    meaning:
      'The body, a batch or an upload is larger than allowed. In an ack: a single change too large for any request, refused by the SDK so it does not block the queue.',
  },
  QUOTA_EXCEEDED: {
    status: 413,
    meaning: "The upload would take the tenant's stored files past its storage quota.",
  },
  RANGE_NOT_SATISFIABLE: {
    status: 416,
    meaning: 'A download `Range` outside the file.',
  },
  URI_TOO_LONG: {
    status: 414,
    meaning: 'A path parameter is longer than any the API takes.',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    meaning: 'The body is not in a content type or charset the route takes (JSON in UTF-8; `text/csv` for the import; the allowed upload types).',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    meaning: 'This Idempotency-Key was used within 24 hours with another request body.',
  },
  RATE_LIMITED: {
    status: 429,
    meaning: 'Too many requests or socket events for this credential or address (or too many failed logins); retry after `Retry-After` (`retryAfterMs` on sockets).',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    meaning: 'The request headers are too large; the connection is closed.',
  },
  INTERNAL: {
    status: 500,
    meaning: 'An unexpected server error, logged with the request id. Never the answer to bad input.',
  },
  UNAVAILABLE: {
    status: 503,
    meaning: 'A dependency is down or the server is shutting down; retry after `Retry-After`, on another instance if there is one.',
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ErrorCatalogue;

/** Every error code, in catalogue order. */
export const ERROR_CODES = Object.keys(ErrorCatalogue) as ErrorCode[];

/** Code -> HTTP status (the catalogue's statuses, for callers that need only those). */
export const ErrorCodes = Object.fromEntries(ERROR_CODES.map((code) => [code, ErrorCatalogue[code].status])) as {
  readonly [C in ErrorCode]: (typeof ErrorCatalogue)[C]['status'];
};

/** The codes a rejected push change may carry. */
export type ChangeErrorCode = { [C in ErrorCode]: (typeof ErrorCatalogue)[C] extends { perChange: true } ? C : never }[ErrorCode];
export const CHANGE_ERROR_CODES = ERROR_CODES.filter((code) => 'perChange' in ErrorCatalogue[code]) as ChangeErrorCode[];

/** The error catalogue as a Markdown table (the OpenAPI document's description and docs/errors.md show it). */
export function errorCatalogueTable(): string {
  const rows = ERROR_CODES.map((code) => {
    const info = ErrorCatalogue[code];
    return `| \`${code}\` | ${info.status} | ${'perChange' in info ? 'yes' : ''} | ${info.meaning.replace(/\|/g, '\\|')} |`;
  });
  return ['| code | status | per change | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The HTTP status of a code. */
export const statusOf = (code: ErrorCode): number => ErrorCatalogue[code].status;

/** Whether `value` is a code of the catalogue. */
export const isErrorCode = (value: unknown): value is ErrorCode => typeof value === 'string' && Object.hasOwn(ErrorCatalogue, value);

/** The `error` field of a failure: one code of the catalogue. */
export const ErrorCodeSchema = Type.Unsafe<ErrorCode>({
  type: 'string',
  enum: ERROR_CODES,
  description: 'A code of the error catalogue (docs/errors.md).',
});

/** The `code` of a rejected push change. */
export const ChangeErrorCodeSchema = Type.Unsafe<ChangeErrorCode>({
  type: 'string',
  enum: CHANGE_ERROR_CODES,
  description: 'Why the change was rejected: a per-change code of the error catalogue (docs/errors.md).',
});

/** One field-level problem of a 400 answer. */
export const FieldError = Type.Object({
  field: Type.String(),
  message: Type.String(),
});
export type FieldError = Static<typeof FieldError>;

/** The failure envelope every error answer uses (HTTP and socket acks). */
export const ErrorEnvelope = Type.Object(
  {
    success: Type.Literal(false),
    error: ErrorCodeSchema,
    message: Type.String({ description: 'A human-readable detail; never parse it, branch on `error`.' }),
    details: Type.Optional(Type.Array(Type.Unknown(), { description: 'Field errors (`{field, message}`) for a 400; the existing record for a DUPLICATE.' })),
  },
  { description: 'A failure (SPEC §3): `error` is a code of the error catalogue.' },
);
export type ErrorEnvelope = Static<typeof ErrorEnvelope>;

/** Builds the failure envelope of `code`; `details` only when there are some. */
export function errorEnvelope(code: ErrorCode, message: string, details?: unknown[]): ErrorEnvelope {
  return details && details.length > 0 ? { success: false, error: code, message, details } : { success: false, error: code, message };
}
