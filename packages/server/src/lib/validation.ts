import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';
import { isTimestamp, UUID_RE } from './values.js';

const base: Options = { allErrors: true, removeAdditional: false, useDefaults: true, strict: false };

/**
 * ajv-formats' `uuid` takes `urn:uuid:` forms and its `date-time` years 0000 and offsets past
 * ±14:00, which PostgreSQL refuses: every schema's formats mean what the database can hold.
 */
const withFormats = (ajv: Ajv) => {
  (addFormats as unknown as (a: Ajv) => Ajv)(ajv);
  ajv.addFormat('uuid', { type: 'string', validate: (v: string) => UUID_RE.test(v) });
  ajv.addFormat('date-time', { type: 'string', validate: isTimestamp });
  return ajv;
};

// Bodies are typed JSON: a string where a number belongs is an error, never coerced.
const bodyAjv = withFormats(new Ajv({ ...base, coerceTypes: false }));
// Query strings and params arrive as text: coerce them to the schema's types.
const textAjv = withFormats(new Ajv({ ...base, coerceTypes: 'array' }));

/** Schema compiler per request part: strict for bodies, coercing for URL parts. */
export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  const ajv = httpPart === 'body' ? bodyAjv : textAjv;
  return ajv.compile(schema as object) as ReturnType<FastifySchemaCompiler<unknown>>;
};

/** Compiles a schema for validating values outside routes (socket payloads, bulk rows). */
export function compileBodyValidator<T>(schema: object): (value: unknown) => { ok: true; value: T } | { ok: false; errors: { field: string; message: string }[] } {
  const validate = bodyAjv.compile(schema);
  return (value) => {
    if (validate(value)) return { ok: true, value: value as T };
    return {
      ok: false,
      errors: (validate.errors ?? []).map((e) => ({
        field: fieldOf(e.instancePath, e.params as Record<string, unknown>),
        message: e.message ?? 'is invalid',
      })),
    };
  };
}

/** `/firstName` -> `firstName`; additional/required properties name the property. */
export function fieldOf(instancePath: string, params: Record<string, unknown>): string {
  const extra = (params.additionalProperty ?? params.missingProperty) as string | undefined;
  const path = instancePath.replace(/^\//, '').replace(/\//g, '.');
  return [path, extra].filter(Boolean).join('.') || '(body)';
}
