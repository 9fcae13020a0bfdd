import { Type, type Static } from 'typebox';

/**
 * The error codes the API answers with, and the HTTP status each one maps to.
 * The `error` field of a failure envelope is always one of these.
 */
export const ErrorCodes = {
  VALIDATION_FAILED: 400,
  BAD_REQUEST: 400,
  /** A chunk or a whole file whose SHA-256 is not the one declared (tus answers its own 460). */
  CHECKSUM_MISMATCH: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  DUPLICATE: 409,
  VERSION_MISMATCH: 409,
  IDEMPOTENCY_IN_FLIGHT: 409,
  /** An upload finalized before all its chunks arrived (details name the missing ones). */
  INCOMPLETE: 409,
  /** A tus upload past its expiry. */
  UPLOAD_EXPIRED: 410,
  /** A tus request without the protocol version it needs. */
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  /** The tenant's storage quota would be exceeded. */
  QUOTA_EXCEEDED: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  IDEMPOTENCY_KEY_REUSED: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** One field-level problem of a 400 answer. */
export const FieldError = Type.Object({
  field: Type.String(),
  message: Type.String(),
});
export type FieldError = Static<typeof FieldError>;

/** The failure envelope every error answer uses (HTTP and socket acks). */
export const ErrorEnvelope = Type.Object({
  success: Type.Literal(false),
  error: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Array(Type.Unknown())),
});
export type ErrorEnvelope = Static<typeof ErrorEnvelope>;
