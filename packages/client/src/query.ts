import { FieldsyncError } from './errors.js';
import type { Query, SyncRecord } from './types.js';

/** Deep equality of JSON values (records, query results), object key order aside. */
export function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

const collator = new Intl.Collator(undefined, { sensitivity: 'base', numeric: true });

/** Orders two present field values: strings by locale, numbers and booleans by value. */
function compareValues(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') return collator.compare(a, b);
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  return collator.compare(String(a), String(b));
}

/** Checks a query's shape once, so a typo fails loudly instead of matching nothing. */
export function checkQuery(query: Query<any> | undefined): void {
  if (query === undefined) return;
  if (typeof query !== 'object' || query === null) throw new FieldsyncError('BAD_REQUEST', 'A query is an object: { where?, orderBy?, limit? }');
  const { where, orderBy, limit } = query;
  if (where !== undefined && typeof where !== 'function' && (typeof where !== 'object' || where === null || Array.isArray(where))) {
    throw new FieldsyncError('BAD_REQUEST', 'where is an object of field values, or a predicate');
  }
  if (orderBy !== undefined && (!Array.isArray(orderBy) || typeof orderBy[0] !== 'string' || (orderBy[1] !== 'asc' && orderBy[1] !== 'desc'))) {
    throw new FieldsyncError('BAD_REQUEST', 'orderBy is [field, "asc" | "desc"]');
  }
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw new FieldsyncError('BAD_REQUEST', 'limit is a whole number >= 0');
}

/** Runs a query over a collection's visible records (in memory: the replica holds them all). */
export function runQuery<R extends SyncRecord>(records: R[], query: Query<R> = {}): R[] {
  const { where, orderBy, limit } = query;
  let out = records;
  if (typeof where === 'function') out = out.filter(where);
  else if (where) {
    const pairs = Object.entries(where);
    out = out.filter((r) => pairs.every(([k, v]) => same(r[k], v)));
  }
  if (orderBy) {
    const [field, direction] = orderBy;
    const sign = direction === 'desc' ? -1 : 1;
    out = [...out].sort((a, b) => {
      const x = a[field];
      const y = b[field];
      // Missing values (null, undefined) last, whatever the direction.
      const xMissing = x === undefined || x === null;
      const yMissing = y === undefined || y === null;
      if (xMissing !== yMissing) return xMissing ? 1 : -1;
      const c = xMissing ? 0 : compareValues(x, y);
      if (c !== 0) return sign * c;
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });
  }
  if (limit !== undefined) out = out.slice(0, limit);
  return out;
}
