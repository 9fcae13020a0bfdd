import { Type, type TSchema } from 'typebox';
import { ErrorEnvelope } from '@fieldsync/protocol/errors';

/** Error responses every authenticated route can give, for OpenAPI. */
export const errorResponses = {
  400: ErrorEnvelope,
  401: ErrorEnvelope,
  403: ErrorEnvelope,
  404: ErrorEnvelope,
  409: ErrorEnvelope,
  413: ErrorEnvelope,
  415: ErrorEnvelope,
  429: ErrorEnvelope,
};

export const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

/** A security requirement: API key or bearer token. */
export const secured: { security: Record<string, string[]>[] } = { security: [{ apiKey: [] }, { bearer: [] }] };

export const withErrors = <T extends Record<number, TSchema>>(ok: T) => ({ ...errorResponses, ...ok });
