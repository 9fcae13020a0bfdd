import { Transform, type Readable } from 'node:stream';
import { parse, type Parser } from 'csv-parse';
import type { ContactCreate, ImportResult } from '@fieldsync/protocol/contacts';
import { AppError } from '../../errors.js';
import { CONTACT_FIELDS } from './contacts.collection.js';
import { fromSpreadsheetSafe } from './contacts.export.js';
import type { Actor, ContactsService } from './contacts.service.js';

const CHUNK_ROWS = 1000;
const MAX_REPORTED_ERRORS = 1000;
/** Imports at least this large refresh the planner statistics of contacts. */
const ANALYZE_AFTER_ROWS = 10_000;

/**
 * Header names accepted for each field: the wire name, snake_case, or the seed's names. A Map,
 * not an object: a header such as `__proto__`, `constructor` or `toString` must find nothing
 * rather than something of Object.prototype.
 */
const HEADER_ALIASES = new Map<string, string>([
  ...CONTACT_FIELDS.flatMap((f): [string, string][] => [
    [f.toLowerCase(), f],
    [f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), f],
  ]),
  ['phone', 'phonePrimary'],
  ['first_name', 'firstName'],
  ['last_name', 'lastName'],
  ['contact_id', 'externalId'],
]);

const BOOLEAN_TEXT = new Map<string, boolean>([['true', true], ['false', false], ['1', true], ['0', false], ['yes', true], ['no', false], ['', false]]);

/** Counts the line breaks inside a record's quoted fields (CRLF is one). */
const lineBreaks = (record: string[]) => record.reduce((n, cell) => n + (cell.match(/\r\n|\r|\n/g)?.length ?? 0), 0);

const isCsvError = (error: unknown) => {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('CSV_') || code === 'INVALID_OPENING_QUOTE');
};

/**
 * Feeds `body` to `parser` through a guard that refuses more than `maxBytes` (413) and invalid
 * UTF-8 (400). Failures of the body itself (an aborted upload) are passed on too, so iterating
 * the parser always ends: `pipe` alone would leave it waiting forever.
 */
function feed(body: Readable, parser: Parser, maxBytes: number): void {
  let bytes = 0;
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const notUtf8 = () => new AppError('BAD_REQUEST', 'The CSV body is not valid UTF-8');
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        callback(new AppError('PAYLOAD_TOO_LARGE', `The CSV body is larger than ${maxBytes} bytes`, undefined, { connection: 'close' }));
        return;
      }
      try {
        decoder.decode(chunk, { stream: true });
      } catch {
        callback(notUtf8());
        return;
      }
      callback(null, chunk);
    },
    flush(callback) {
      try {
        decoder.decode();
        callback();
      } catch {
        callback(notUtf8());
      }
    },
  });
  const fail = (error: Error) => parser.destroy(error);
  body.once('error', fail);
  body.once('close', () => {
    if (!body.readableEnded) fail(new Error('The CSV upload was aborted'));
  });
  guard.once('error', fail);
  body.pipe(guard).pipe(parser);
}

/**
 * Streams a CSV body into contacts: parsed row by row, written in chunks of CHUNK_ROWS (one
 * transaction each), so memory stays flat whatever the file size. Each bad row is reported
 * with the line it starts on and skipped; the others are imported. A body that stops being
 * CSV part-way (malformed, too large, not UTF-8) is a 4xx after the rows before it were
 * imported; the error's details say how many.
 */
export async function importContactsCsv(
  contacts: ContactsService,
  actor: Actor,
  body: Readable,
  validate: (row: unknown) => string | undefined,
  opts: { maxBytes?: number } = {},
): Promise<ImportResult> {
  const result: ImportResult = { rows: 0, created: 0, failed: 0, errors: [], errorsTruncated: false };
  const fail = (row: number, error: string) => {
    result.failed++;
    if (result.errors.length < MAX_REPORTED_ERRORS) result.errors.push({ row, error });
    else result.errorsTruncated = true;
  };

  let fields: (string | undefined)[] | undefined;
  let chunk: { line: number; row: ContactCreate }[] = [];
  // Chunks commit one after the other, in order, each in its own transaction. The next chunk
  // is parsed and checked while the one before commits (parsing is this process's work,
  // writing the database's, so the two overlap); at most two are in flight, so memory stays flat.
  let writing: Promise<void> = Promise.resolve();
  let before: Promise<void> = Promise.resolve();
  let writeFailure: { error: unknown } | undefined;
  const write = async (rows: typeof chunk, previous: Promise<void>) => {
    const prepared = await contacts.prepareMany(actor, rows.map((c) => c.row));
    await previous;
    if (writeFailure) return;
    const outcomes = await prepared.commit();
    outcomes.forEach((outcome, i) => (outcome.ok ? result.created++ : fail(rows[i].line, outcome.error)));
  };
  /** Starts writing the current chunk behind the one being written. */
  const flush = async () => {
    await before;
    if (writeFailure) throw writeFailure.error;
    if (chunk.length === 0) return;
    const rows = chunk;
    chunk = [];
    before = writing;
    writing = write(rows, writing).catch((error: unknown) => {
      writeFailure ??= { error };
    });
  };
  /** Writes what is left and waits for every write. */
  const drain = async () => {
    await flush();
    await writing;
    if (writeFailure) throw writeFailure.error;
  };

  const parser = parse({ bom: true, relax_column_count: true, skip_empty_lines: true, trim: true, info: true, max_record_size: 64 * 1024 });
  feed(body, parser, opts.maxBytes ?? Number.POSITIVE_INFINITY);
  // csv-parse's own line count is the record's last line and counts a quoted CRLF twice:
  // the line a record starts on is the lines of the records before it plus the empty lines.
  let linesBefore = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { empty_lines: number } }>) {
      const line = linesBefore + info.empty_lines + 1;
      linesBefore += 1 + lineBreaks(record);
      if (!fields) {
        fields = record.map((h) => HEADER_ALIASES.get(h.toLowerCase()) ?? (CONTACT_FIELDS.includes(h as never) ? h : undefined));
        const unknown = record.filter((_, i) => fields?.[i] === undefined);
        if (unknown.length > 0) throw new AppError('VALIDATION_FAILED', `Unknown CSV column(s): ${unknown.join(', ')}`);
        if (!fields.includes('firstName') || !fields.includes('phonePrimary')) {
          throw new AppError('VALIDATION_FAILED', 'The CSV header must name firstName and phonePrimary');
        }
        continue;
      }
      result.rows++;
      if (record.slice(fields.length).some((cell) => cell !== '')) {
        fail(line, `the row has ${record.length} cells but the header names ${fields.length} columns`);
        continue;
      }
      const row: Record<string, unknown> = {};
      fields.forEach((field, i) => {
        const cell = record[i] === undefined ? undefined : fromSpreadsheetSafe(record[i]);
        if (field === undefined || cell === undefined) return;
        if (field === 'doNotCall') row[field] = BOOLEAN_TEXT.get(cell.toLowerCase()) ?? cell;
        else if (cell !== '' || field === 'firstName' || field === 'phonePrimary') row[field] = cell;
      });
      const error = validate(row);
      if (error) fail(line, error);
      else chunk.push({ line, row: row as ContactCreate });
      if (chunk.length >= CHUNK_ROWS) await flush();
    }
  } catch (error) {
    // The body stopped being importable part-way: keep the rows before it, say how many.
    let stopped: AppError;
    if (isCsvError(error)) stopped = new AppError('VALIDATION_FAILED', `CSV is malformed: ${(error as Error).message}`);
    else if (error instanceof AppError && fields && (error.code === 'PAYLOAD_TOO_LARGE' || error.code === 'BAD_REQUEST')) stopped = error;
    else {
      // Whatever was in flight finishes before the error is answered, so the import is over when it is.
      await writing;
      throw error;
    }
    await drain();
    throw new AppError(
      stopped.code,
      `${stopped.message}; ${result.created} row(s) before it were imported`,
      [{ field: 'body', message: stopped.message, imported: result.created }],
      stopped.headers,
    );
  }
  if (!fields) throw new AppError('VALIDATION_FAILED', 'The CSV body is empty: it needs a header row');
  await drain();
  result.errors.sort((a, b) => a.row - b.row);
  // A large import changes the table's shape: fresh statistics keep pulls on the version index
  // (without them PostgreSQL may sort the whole table per page until autovacuum runs).
  if (result.created >= ANALYZE_AFTER_ROWS) await contacts.refreshStatistics();
  return result;
}
