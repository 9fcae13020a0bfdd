import type { Readable } from 'node:stream';
import { parse } from 'csv-parse';
import type { ContactCreate, ImportResult } from '@fieldsync/protocol/contacts';
import { AppError } from '../../errors.js';
import { CONTACT_FIELDS } from './contacts.collection.js';
import type { Actor, ContactsService } from './contacts.service.js';

const CHUNK_ROWS = 1000;
const MAX_REPORTED_ERRORS = 1000;

/** Header names accepted for each field: the wire name, snake_case, or the seed's names. */
const HEADER_ALIASES: Record<string, string> = Object.fromEntries(
  CONTACT_FIELDS.flatMap((f) => [
    [f.toLowerCase(), f],
    [f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), f],
  ]),
);
Object.assign(HEADER_ALIASES, { phone: 'phonePrimary', first_name: 'firstName', last_name: 'lastName', contact_id: 'externalId' });

const BOOLEAN_TEXT: Record<string, boolean> = { true: true, false: false, '1': true, '0': false, yes: true, no: false, '': false };

/**
 * Streams a CSV body into contacts: parsed row by row, written in chunks of CHUNK_ROWS (one
 * transaction each), so memory stays flat whatever the file size. Each bad row is reported
 * with its line number and skipped; the others are imported.
 */
export async function importContactsCsv(
  contacts: ContactsService,
  actor: Actor,
  body: Readable,
  validate: (row: unknown) => string | undefined,
): Promise<ImportResult> {
  const result: ImportResult = { rows: 0, created: 0, failed: 0, errors: [], errorsTruncated: false };
  const fail = (row: number, error: string) => {
    result.failed++;
    if (result.errors.length < MAX_REPORTED_ERRORS) result.errors.push({ row, error });
    else result.errorsTruncated = true;
  };

  let fields: (string | undefined)[] | undefined;
  let chunk: { line: number; row: ContactCreate }[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    const outcomes = await contacts.createMany(actor, chunk.map((c) => c.row));
    outcomes.forEach((outcome, i) => (outcome.ok ? result.created++ : fail(chunk[i].line, outcome.error)));
    chunk = [];
  };

  const parser = body.pipe(
    parse({ bom: true, relax_column_count: true, skip_empty_lines: true, trim: true, info: true, max_record_size: 64 * 1024 }),
  );
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (!fields) {
        fields = record.map((h) => HEADER_ALIASES[h.toLowerCase()] ?? HEADER_ALIASES[h] ?? (CONTACT_FIELDS.includes(h as never) ? h : undefined));
        const unknown = record.filter((_, i) => fields?.[i] === undefined);
        if (unknown.length > 0) throw new AppError('VALIDATION_FAILED', `Unknown CSV column(s): ${unknown.join(', ')}`);
        if (!fields.includes('firstName') || !fields.includes('phonePrimary')) {
          throw new AppError('VALIDATION_FAILED', 'The CSV header must name firstName and phonePrimary');
        }
        continue;
      }
      result.rows++;
      const row: Record<string, unknown> = {};
      fields.forEach((field, i) => {
        const cell = record[i];
        if (field === undefined || cell === undefined) return;
        if (field === 'doNotCall') row[field] = BOOLEAN_TEXT[cell.toLowerCase()] ?? cell;
        else if (cell !== '' || field === 'firstName' || field === 'phonePrimary') row[field] = cell;
      });
      const error = validate(row);
      if (error) fail(info.lines, error);
      else chunk.push({ line: info.lines, row: row as ContactCreate });
      if (chunk.length >= CHUNK_ROWS) await flush();
    }
  } catch (error) {
    if (error instanceof AppError) throw error;
    const code = (error as { code?: string }).code;
    if (code?.startsWith('CSV_') || code === 'INVALID_OPENING_QUOTE') {
      await flush();
      throw new AppError('VALIDATION_FAILED', `CSV is malformed: ${(error as Error).message}`, [
        { field: 'body', message: (error as Error).message, imported: result.created },
      ]);
    }
    throw error;
  }
  if (!fields) throw new AppError('VALIDATION_FAILED', 'The CSV body is empty: it needs a header row');
  await flush();
  return result;
}
