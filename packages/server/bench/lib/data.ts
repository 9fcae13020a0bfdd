import { randomUUID } from 'node:crypto';

/**
 * The i-th phone number of the bench: +49 151 followed by eight digits, valid German mobile
 * numbers (checked with libphonenumber), already in E.164 so the server stores them as sent.
 * Ranges: CSV import [0, 1M); push device d [(1 + d) * 1M, ...); physical-limit writes 60M+
 * (100,000 a writer); the push reference's devices 71M+ (50,000 a device); one-off writes
 * (fan-out) 80M+.
 */
export function phone(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= 89_999_999) throw new RangeError(`phone index ${i}`);
  return `+49151${10_000_000 + i}`;
}

export const PUSH_PHONE_BASE = (device: number) => (1 + device) * 1_000_000;
export const LIMIT_PHONE_BASE = 60_000_000;
/**
 * The first phone of the push reference's device `writer` (numbered as the limit numbers its
 * writers): after the limit's ranges, so the reference's new contacts never meet the server's
 * or the limit's in a tenant.
 */
export const REFERENCE_PHONE_BASE = (writer: number) => 71_000_000 + writer * 50_000;

export const CSV_HEADER = 'firstName,lastName,phonePrimary,email,company';

/** One CSV row of the import data set. */
export function csvRow(i: number): string {
  return `First${i},Last${i},${phone(i)},contact${i}@example.com,Company ${i % 997}`;
}

/** The import data set, `count` contacts. */
export function contactsCsv(count: number): string {
  const lines = [CSV_HEADER];
  for (let i = 0; i < count; i++) lines.push(csvRow(i));
  return `${lines.join('\n')}\n`;
}

/** A contact a device creates offline. */
export function newContact(n: number) {
  return { firstName: `Field${n}`, lastName: 'Bench', phonePrimary: phone(n), company: 'Bench Ltd' };
}

/** A record the device edits: its id and the version it last saw. */
export interface Known {
  id: string;
  version: number;
}

/**
 * A batch as an offline device queues it: `creates` new contacts (phones from `nextPhone`)
 * and updates of the notes of `known` records (round robin from `cursor`), with their baseVersion.
 */
export function pushBatch(opts: {
  deviceId: string;
  size: number;
  creates: number;
  nextPhone: () => number;
  known: Known[];
  cursor: { i: number };
}) {
  const changes: unknown[] = [];
  const now = Date.now();
  for (let c = 0; c < opts.size; c++) {
    if (c < opts.creates || opts.known.length === 0) {
      const n = opts.nextPhone();
      changes.push({ changeId: randomUUID(), localId: `l${n}`, entityType: 'contacts', operation: 'create', timestamp: now, data: newContact(n) });
    } else {
      const record = opts.known[opts.cursor.i++ % opts.known.length];
      changes.push({
        changeId: randomUUID(),
        id: record.id,
        entityType: 'contacts',
        operation: 'update',
        timestamp: now,
        baseVersion: record.version,
        data: { notes: `visited ${now} by ${opts.deviceId}` },
      });
    }
  }
  return { deviceId: opts.deviceId, changes };
}
