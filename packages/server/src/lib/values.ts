/**
 * Values PostgreSQL can hold, checked before they reach it (SPEC §4 "Values the database cannot
 * hold"): a value that passes here is stored as sent, one that fails is the caller's error.
 */

/** A UUID in its canonical 8-4-4-4-12 hex form, either case (no braces, no `urn:uuid:`). */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: unknown): value is string => typeof value === 'string' && UUID_RE.test(value);

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

const daysIn = (year: number, month: number) =>
  month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;

/** An RFC 3339 date-time with a year from 0001 to 9999 and an offset within ±14:00. */
export function isTimestamp(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = RFC3339.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return false;
  if (hour > 23 || minute > 59 || second > 59) return false;
  if (m[7] !== undefined) {
    const offHours = Number(m[8]);
    const offMinutes = Number(m[9]);
    if (offMinutes > 59 || offHours > 14 || (offHours === 14 && offMinutes > 0)) return false;
  }
  return true;
}

/** Epoch milliseconds of 0001-01-01T00:00:00Z and of the end of 9999. */
export const MIN_TIME_MS = -62135596800000;
export const MAX_TIME_MS = 253402300799999;

/** NUL or a lone surrogate: text PostgreSQL cannot store. */
const UNSTORABLE_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export const isStorableText = (value: string) => !UNSTORABLE_TEXT.test(value);

/** Deeper JSON than this is refused: no API body nests anywhere near it. */
export const MAX_JSON_DEPTH = 32;

/**
 * Why a parsed JSON value may not be taken as input, if so: a NUL character or a lone
 * surrogate in a string or key (text PostgreSQL cannot store), a `__proto__` or `constructor`
 * key, or nesting deeper than MAX_JSON_DEPTH. The one rule for HTTP bodies, socket payloads
 * and pushed changes.
 */
export function refusalOf(value: unknown, depth = 0): string | undefined {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) return 'Strings must not contain NUL characters';
    return isStorableText(value) ? undefined : 'Strings must be well-formed Unicode (no lone surrogates)';
  }
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth >= MAX_JSON_DEPTH) return `JSON nests deeper than ${MAX_JSON_DEPTH} levels`;
  if (Array.isArray(value)) {
    for (const item of value) {
      const why = refusalOf(item, depth + 1);
      if (why) return why;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__' || key === 'constructor' || !isStorableText(key)) return `Forbidden key "${key.replace(/\u0000/g, '\\0')}"`;
    const why = refusalOf((value as Record<string, unknown>)[key], depth + 1);
    if (why) return why;
  }
  return undefined;
}

/**
 * An item of a batch body (a push's change, a bulk row) that the strict JSON check refused (a
 * NUL, a lone surrogate, a forbidden key, too deep): it stands in for the item so that the
 * item alone is rejected, with this reason, and the rest of the batch goes on.
 */
export class RefusedItem {
  constructor(readonly reason: string) {}
  toJSON() {
    return { refused: this.reason };
  }
}

/**
 * Screens a batch (`value[items]`, or `value` itself when `items` is ''): each refused item is
 * replaced by a RefusedItem in place, so it alone fails; returns the refusal of the rest, if any.
 */
export function screenBatch(value: unknown, items: string): string | undefined {
  const list = items === '' ? value : (value as Record<string, unknown> | null)?.[items];
  if (!Array.isArray(list)) return refusalOf(value);
  const depth = items === '' ? 1 : 2;
  list.forEach((item, i) => {
    const why = refusalOf(item, depth);
    if (why) list[i] = new RefusedItem(why);
  });
  return items ? refusalOf({ ...(value as Record<string, unknown>), [items]: [] }) : undefined;
}
