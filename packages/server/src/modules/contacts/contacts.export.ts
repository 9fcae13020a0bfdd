import { Readable, pipeline } from 'node:stream';
import { stringify } from 'csv-stringify';
import type { Contact } from '@fieldsync/protocol/contacts';

export type ExportFormat = 'csv' | 'json' | 'ndjson';

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  json: 'application/json; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
};

const CSV_COLUMNS: (keyof Contact)[] = [
  'id', 'firstName', 'lastName', 'phonePrimary', 'phoneSecondary', 'email', 'company', 'notes', 'externalId',
  'doNotCall', 'preferredChannel', 'photoFileId', 'createdByAgent', 'version', 'createdAt', 'updatedAt',
];

/** What a spreadsheet reads as the start of a formula (OWASP "CSV injection"). */
const FORMULA_START = /^[=+\-@\t\r]/;
/** A cell `spreadsheetSafe` already guarded, or one that looks guarded: it gets one more quote. */
const QUOTED_FORMULA = /^'+[=+\-@\t\r]/;
/** A phone number in E.164: digits only after the plus, so no spreadsheet runs it as code. */
const E164 = /^\+[1-9]\d{1,14}$/;

/**
 * A text cell a spreadsheet shows as text instead of evaluating: one that starts like a
 * formula is prefixed with `'`, except an E.164 phone number (+4915…), which stays as it is so
 * that it can still be dialled and imported. The import takes one leading `'` off such a
 * cell again, so an export imports back unchanged.
 */
export function spreadsheetSafe(value: string): string {
  if (E164.test(value)) return value;
  return FORMULA_START.test(value) || QUOTED_FORMULA.test(value) ? `'${value}` : value;
}

/** The inverse of `spreadsheetSafe` for a cell read from a CSV import. */
export function fromSpreadsheetSafe(cell: string): string {
  return QUOTED_FORMULA.test(cell) ? cell.slice(1) : cell;
}

/** Streams pages of contacts as csv, a json array, or ndjson; one page in memory at a time. */
export function exportStream(pages: AsyncGenerator<Contact[]>, format: ExportFormat): Readable {
  if (format === 'csv') {
    const csv = stringify({
      header: true,
      columns: CSV_COLUMNS as string[],
      cast: { boolean: (b) => (b ? 'true' : 'false'), string: spreadsheetSafe },
    });
    // pipeline, not pipe: a failing page must fail the response instead of leaving it hanging.
    return pipeline(
      Readable.from(
        (async function* () {
          for await (const page of pages) for (const c of page) yield c;
        })(),
      ),
      csv,
      () => {},
    );
  }
  return Readable.from(
    (async function* () {
      let first = true;
      if (format === 'json') yield '[';
      for await (const page of pages) {
        if (format === 'ndjson') {
          yield page.map((c) => JSON.stringify(c)).join('\n') + '\n';
        } else {
          yield (first ? '' : ',') + page.map((c) => JSON.stringify(c)).join(',');
          first = false;
        }
      }
      if (format === 'json') yield ']';
    })(),
  );
}
