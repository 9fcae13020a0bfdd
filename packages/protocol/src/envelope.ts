import { Type, type TSchema } from 'typebox';

/** `{success: true, data}`: the success envelope around a payload schema. */
export const Ok = <T extends TSchema>(data: T) =>
  Type.Object({ success: Type.Literal(true), data });

export const Pagination = Type.Object({
  page: Type.Integer(),
  limit: Type.Integer(),
  total: Type.Integer(),
});

/** `{success: true, data: [...], pagination}`: a page of a list. */
export const Page = <T extends TSchema>(item: T) =>
  Type.Object({ success: Type.Literal(true), data: Type.Array(item), pagination: Pagination });

export const Uuid = Type.String({ format: 'uuid' });

/** Text without NUL bytes (PostgreSQL cannot store them) and with a length cap. */
export const Text = (maxLength: number, minLength = 0) =>
  Type.String({ maxLength, minLength, pattern: '^[^\\u0000]*$' });

/**
 * The JSON Schema keyword (an OpenAPI `x-` extension) that marks a part of a body the edge
 * validators let through for a later stage to check piece by piece: e.g. the push engine checks
 * each change on its own, so one bad change gets its own `VALIDATION_FAILED` ack instead of
 * sinking the batch. The OpenAPI document still shows the schema.
 */
export const VALIDATED_BY = 'x-validated-by';
