import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';
import { VALIDATED_BY } from '@fieldsync/protocol/envelope';
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

const marked = (value: unknown): boolean =>
  typeof value === 'object' && value !== null && (VALIDATED_BY in value || Object.values(value).some(marked));

const relaxed = (value: unknown): unknown => {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(relaxed);
  if (VALIDATED_BY in value) return {};
  return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, relaxed(v)]));
};

/**
 * The schema the edge validates with: `schema` itself, or a copy in which every part marked
 * `x-validated-by` (the protocol's VALIDATED_BY) accepts any value. Such a part is documented
 * in full (OpenAPI shows it) and checked later, piece by piece, by the stage it names: a push
 * checks its body's envelope here and each change in the engine, so one bad change gets its
 * own ack instead of failing the whole batch with a 400.
 */
export function edgeSchema(schema: object): object {
  return marked(schema) ? (relaxed(schema) as object) : schema;
}

/** Schema compiler per request part: strict for bodies, coercing for URL parts. */
export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  const ajv = httpPart === 'body' ? bodyAjv : textAjv;
  return ajv.compile(edgeSchema(schema as object)) as ReturnType<FastifySchemaCompiler<unknown>>;
};

/** Compiles a schema for validating values outside routes (socket payloads, bulk rows), as routes do (see `edgeSchema`). */
export function compileBodyValidator<T>(schema: object): (value: unknown) => { ok: true; value: T } | { ok: false; errors: { field: string; message: string }[] } {
  const validate = bodyAjv.compile(edgeSchema(schema));
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
