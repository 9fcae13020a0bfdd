/**
 * Why an SDK call failed. `code` is the server's error code (`VALIDATION_FAILED`,
 * `UNAUTHORIZED`, `RATE_LIMITED`, ...) when the server answered, otherwise one of the SDK's own:
 * `NETWORK` (no answer), `TIMEOUT`, `BAD_RESPONSE` (not a Fieldsync envelope), `CLOSED` (the
 * client was closed), `NOT_FOUND` (a local write named no visible record), `STORE` (the store
 * belongs to another device or is corrupt).
 */
export class FieldsyncError extends Error {
  override readonly name = 'FieldsyncError';
  readonly code: string;
  /** HTTP status when the server answered. */
  readonly status?: number;
  /** The server's `Retry-After`, in milliseconds, when it sent one. */
  readonly retryAfterMs?: number;
  readonly details?: unknown[];

  constructor(code: string, message: string, opts: { status?: number; retryAfterMs?: number; details?: unknown[]; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
    this.details = opts.details;
  }

  /**
   * Whether trying again later may succeed: no answer, a 5xx, a 429, a 408, or an idempotent
   * request still in flight on the server (409 `IDEMPOTENCY_IN_FLIGHT`).
   */
  get retryable(): boolean {
    if (this.code === 'NETWORK' || this.code === 'TIMEOUT') return true;
    if (this.status === undefined) return false;
    return this.status >= 500 || this.status === 429 || this.status === 408 || this.code === 'IDEMPOTENCY_IN_FLIGHT';
  }
}
