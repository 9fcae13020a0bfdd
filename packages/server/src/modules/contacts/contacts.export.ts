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

/** Streams pages of contacts as csv, a json array, or ndjson; one page in memory at a time. */
export function exportStream(pages: AsyncGenerator<Contact[]>, format: ExportFormat): Readable {
  if (format === 'csv') {
    const csv = stringify({ header: true, columns: CSV_COLUMNS as string[], cast: { boolean: (b) => (b ? 'true' : 'false') } });
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
