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
