import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../src/errors.js';
import { spreadsheetSafe } from '../src/modules/contacts/contacts.export.js';
import { importContactsCsv } from '../src/modules/contacts/contacts.import.js';
import { contactRowError } from '../src/modules/contacts/contacts.routes.js';
import { backends } from './helpers/test-db.js';
import { startTestApp, uniquePhone, type ApiResponse, type TestApp } from './helpers/test-app.js';

type Row = Record<string, unknown>;

/** `count` distinct valid US numbers in E.164 under one area code, none from uniquePhone's range. */
const phones = (area: string, count: number, from = 0) =>
  Array.from({ length: count }, (_, i) => `+1${area}${2000000 + from + i}`);

/** The same E.164 number as a person would type it, in one of several formats. */
function typed(e164: string, style: number): string {
  const [a, b, c] = [e164.slice(2, 5), e164.slice(5, 8), e164.slice(8)];
  return [`(${a}) ${b}-${c}`, `${a}-${b}-${c}`, `+1 ${a} ${b} ${c}`, `${a}.${b}.${c}`, e164][style % 5];
}

const errorEnvelope = (res: ApiResponse, status: number, error?: string) => {
  expect(res.status, res.text).toBe(status);
  expect(res.body).toMatchObject({ success: false, error: error ?? expect.any(String), message: expect.any(String) });
};

/** Sends a CSV body to the import endpoint, optionally streamed from an async iterable of text. */
async function importCsv(app: TestApp, body: string | Buffer | AsyncIterable<string>, contentType = 'text/csv', key = app.adminKey) {
  const streamed = typeof body !== 'string' && !Buffer.isBuffer(body);
  const res = await fetch(`${app.url}/api/contacts/import`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': contentType },
    body: streamed
      ? (Readable.toWeb(
          Readable.from(
            (async function* () {
              for await (const text of body) yield Buffer.from(text);
            })(),
          ),
        ) as ReadableStream)
      : body,
    ...(streamed ? { duplex: 'half' } : {}),
  } as RequestInit);
  const text = await res.text();
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed, text } as ApiResponse;
}

async function fetchText(app: TestApp, path: string, key = app.adminKey) {
  const res = await fetch(app.url + path, { headers: { 'x-api-key': key } });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text() };
}

describe.each(backends)('contacts bulk, CSV import and export on %s', (backend) => {
  let app: TestApp;
  let tenantId: string;

  const latestVersion = async (key = app.adminKey): Promise<number> => {
    const res = await app.api('GET', '/api/sync/delta?version=0&limit=1', { key });
    expect(res.status).toBe(200);
    return res.body.data.latestVersion;
  };
  const countContacts = async (phonesIn?: string[]): Promise<number> => {
    const { rows } = phonesIn
      ? await app.testDb.db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM contacts WHERE tenant_id = $1 AND phone_primary = ANY($2::text[])',
          [tenantId, phonesIn],
        )
      : await app.testDb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM contacts WHERE tenant_id = $1', [tenantId]);
    return rows[0].n;
  };
  /** Every change after `version` of the admin's tenant (of `collections` only, when given), paged through the delta pull. */
  const changesSince = async (version: number, key = app.adminKey, collections?: string) => {
    const all: { id: string; op: string; version: number; data: Row }[] = [];
    let v = version;
    for (;;) {
      const res = await app.api('GET', `/api/sync/delta?version=${v}&limit=5000${collections ? `&collections=${collections}` : ''}`, { key });
      expect(res.status).toBe(200);
      all.push(...res.body.data.changes);
      if (!res.body.data.hasMore) return all;
      v = res.body.data.nextVersion;
    }
  };

  beforeAll(async () => {
    app = await startTestApp(backend);
    const { rows } = await app.testDb.db.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'");
    tenantId = rows[0].id;
  });
  afterAll(async () => {
    await app?.close();
  });

  describe('POST /api/contacts/bulk', () => {
    it('says why each bad row failed, creates each valid row exactly once and allocates versions only for them', async () => {
      const [existingPhone, valid1, valid2, valid3, inBatch, p5, p6, p7, p8, p9] = phones('646', 10);
      const existing = await app.api('POST', '/api/contacts', { body: { firstName: 'Existing', phonePrimary: existingPhone } });
      expect(existing.status).toBe(201);
      const before = await latestVersion();
      const countBefore = await countContacts();

      const rows: unknown[] = [
        /* 0 */ { firstName: 'Valid', lastName: 'One', phonePrimary: typed(valid1, 0), email: 'One@Example.com' },
        /* 1 */ { firstName: 'BadPhone', phonePrimary: '12345' },
        /* 2 */ { lastName: 'NoFirst', phonePrimary: p5 },
        /* 3 */ { firstName: 'Unknown', phonePrimary: p6, nickname: 'x' },
        /* 4 */ { firstName: 42, phonePrimary: p7 },
        /* 5 */ { firstName: 'WrongBool', phonePrimary: p8, doNotCall: 'yes' },
        /* 6 */ { firstName: 'DupExisting', phonePrimary: typed(existingPhone, 1) },
        /* 7 */ { firstName: 'Valid', lastName: 'Two', phonePrimary: typed(inBatch, 2), doNotCall: true },
        /* 8 */ { firstName: 'DupInBatch', phonePrimary: typed(inBatch, 3) },
        /* 9 */ null,
        /* 10 */ 'not a contact',
        /* 11 */ { firstName: 'ServerOwned', phonePrimary: p9, id: '00000000-0000-4000-8000-000000000000', version: 7 },
        /* 12 */ { firstName: '   ', phonePrimary: valid2 },
        /* 13 */ { firstName: 'Blank', phonePrimary: '   ' },
        /* 14 */ { firstName: 'x'.repeat(101), phonePrimary: valid2 },
        /* 15 */ { firstName: 'BadChannel', phonePrimary: valid2, preferredChannel: 'pigeon' },
        /* 16 */ {
          firstName: 'Valid',
          lastName: 'Three',
          phonePrimary: valid3,
          phoneSecondary: '212-555-0142',
          email: 'three@example.com',
          company: 'Acme, Inc.',
          notes: 'line one\nline "two"',
          externalId: 'crm-3',
          doNotCall: false,
          preferredChannel: 'sms',
        },
      ];
      const res = await app.api('POST', '/api/contacts/bulk', { body: rows });
      expect(res.status, res.text).toBe(200);
      const { results, created, failed } = res.body.data;
      expect(results.map((r: { index: number }) => r.index)).toEqual(rows.map((_, i) => i));
      expect(results.filter((r: { success: boolean }) => r.success).map((r: { index: number }) => r.index)).toEqual([0, 7, 16]);
      expect(created).toBe(3);
      expect(failed).toBe(rows.length - 3);

      const errorOf = (i: number) => {
        expect(results[i].success).toBe(false);
        expect(results[i].id).toBeUndefined();
        return results[i].error as string;
      };
      expect(errorOf(1)).toMatch(/^phonePrimary: .*not a valid phone/);
      expect(errorOf(2)).toMatch(/firstName/);
      expect(errorOf(3)).toMatch(/nickname/);
      expect(errorOf(4)).toMatch(/^firstName: must be string/);
      expect(errorOf(5)).toMatch(/^doNotCall: must be boolean/);
      expect(errorOf(6)).toBe(`phonePrimary: already used by contact ${existing.body.data.id}`);
      expect(errorOf(8)).toMatch(/^phonePrimary: duplicated in this batch/);
      expect(errorOf(9)).toMatch(/must be object/);
      expect(errorOf(10)).toMatch(/must be object/);
      expect(errorOf(11)).toMatch(/\bid\b|version/);
      expect(errorOf(12)).toMatch(/^firstName: must not be blank/);
      expect(errorOf(13)).toMatch(/^phonePrimary: /);
      expect(errorOf(14)).toMatch(/^firstName: must NOT have more than 100 characters/);
      expect(errorOf(15)).toMatch(/^preferredChannel: /);

      // Exactly three new versions, one per created contact, and nothing else changed.
      expect(await latestVersion()).toBe(before + 3);
      expect(await countContacts()).toBe(countBefore + 3);
      const changes = await changesSince(before);
      expect(changes.map((c) => c.version)).toEqual([before + 1, before + 2, before + 3]);
      const ids = [results[0].id, results[7].id, results[16].id];
      expect(changes.map((c) => c.id).sort()).toEqual([...ids].sort());
      expect(changes.every((c) => c.op === 'upsert')).toBe(true);
      expect(await countContacts([valid1, inBatch, valid3])).toBe(3);
      expect(await countContacts([existingPhone])).toBe(1);
      expect(await countContacts([valid2, p5, p6, p7, p8, p9])).toBe(0);

      const third = await app.api('GET', `/api/contacts/${results[16].id}`);
      expect(third.body.data).toMatchObject({
        firstName: 'Valid',
        lastName: 'Three',
        phonePrimary: valid3,
        phoneSecondary: '+12125550142',
        email: 'three@example.com',
        company: 'Acme, Inc.',
        notes: 'line one\nline "two"',
        externalId: 'crm-3',
        doNotCall: false,
        preferredChannel: 'sms',
        isDeleted: false,
      });
      expect((await app.api('GET', `/api/contacts/${results[0].id}`)).body.data).toMatchObject({ phonePrimary: valid1, email: 'one@example.com' });
      expect((await app.api('GET', `/api/contacts/${results[7].id}`)).body.data).toMatchObject({ phonePrimary: inBatch, doNotCall: true });

      // The same batch again creates nothing: every valid row now collides with itself.
      const again = await app.api('POST', '/api/contacts/bulk', { body: rows });
      expect(again.status).toBe(200);
      expect(again.body.data.created).toBe(0);
      expect(again.body.data.failed).toBe(rows.length);
      expect(again.body.data.results[0].error).toBe(`phonePrimary: already used by contact ${results[0].id}`);
      expect(await latestVersion()).toBe(before + 3);
      expect(await countContacts()).toBe(countBefore + 3);
    });

    it('refuses 5001 rows with a 400 and writes nothing', async () => {
      const before = await latestVersion();
      const countBefore = await countContacts();
      const rows = phones('332', 5001).map((phonePrimary, i) => ({ firstName: `Over ${i}`, phonePrimary }));
      const res = await app.api('POST', '/api/contacts/bulk', { body: rows });
      errorEnvelope(res, 400, 'VALIDATION_FAILED');
      expect(await latestVersion()).toBe(before);
      expect(await countContacts()).toBe(countBefore);
    });

    it('creates 5000 rows in one request, one version each', async () => {
      const before = await latestVersion();
      const countBefore = await countContacts();
      const all = phones('332', 5000);
      const rows = all.map((phone, i) => ({ firstName: `Max ${i}`, phonePrimary: typed(phone, i), company: i % 2 ? 'Odd' : null }));
      const res = await app.api('POST', '/api/contacts/bulk', { body: rows });
      expect(res.status, res.text.slice(0, 500)).toBe(200);
      expect(res.body.data).toMatchObject({ created: 5000, failed: 0 });
      expect(res.body.data.results.every((r: { index: number; success: boolean; id?: string }, i: number) => r.success && r.id && r.index === i)).toBe(true);
      expect(new Set(res.body.data.results.map((r: { id: string }) => r.id)).size).toBe(5000);
      expect(await latestVersion()).toBe(before + 5000);
      expect(await countContacts()).toBe(countBefore + 5000);
      expect(await countContacts(all)).toBe(5000);
    });

    it('refuses a whole batch holding a NUL character with a 400 and writes nothing', async () => {
      const before = await latestVersion();
      const [ok, nul] = phones('332', 2, 9100);
      const res = await app.api('POST', '/api/contacts/bulk', {
        body: [
          { firstName: 'Fine', phonePrimary: ok },
          { firstName: 'Nul', phonePrimary: nul, notes: 'a\u0000b' },
        ],
      });
      errorEnvelope(res, 400);
      expect(await latestVersion()).toBe(before);
      expect(await countContacts([ok, nul])).toBe(0);
    });

    it('answers 400 for a body that is not an array and writes nothing', async () => {
      const before = await latestVersion();
      for (const body of [{ firstName: 'A', phonePrimary: phones('332', 1, 9000)[0] }, 'x', 5, null]) {
        errorEnvelope(await app.api('POST', '/api/contacts/bulk', { body }), 400);
      }
      expect(await latestVersion()).toBe(before);
    });
  });

  describe('POST /api/contacts/import', () => {
    it('imports 20k generated rows with header aliases, a BOM and quoted fields, reporting bad rows by line', async () => {
      const total = 20_000;
      const all = phones('917', total);
      const header = 'first_name,last_name,phone,Email,company,notes,do_not_call,preferred_channel,contact_id';
      const lines: string[] = [`\ufeff${header}`];
      const expectedErrors: { row: number; error: RegExp }[] = [];
      let line = 2; // the header is line 1
      const bad = new Map<number, [string, RegExp]>([
        [10, ['NoPhone,X,12,,,,,,', /^phonePrimary: .*not a valid phone/]],
        [1500, [`,Nameless,${all[1500]},,,,,,`, /^firstName/]],
        [7777, [`Maybe,X,${all[7777]},,,,maybe,,`, /^doNotCall: must be boolean/]],
        [12_001, [`Chan,X,${all[12_001]},,,,,pigeon,`, /^preferredChannel: /]],
        [15_000, [`Mail,X,${all[15_000]},not-an-email,,,,,`, /^email: /]],
        [19_999, [`Again,X,${typed(all[0], 1)},,,,,,`, /^phonePrimary: already used by contact /]],
        [19_998, [`Twin,X,${typed(all[19_997], 2)},,,,,,`, /^phonePrimary: duplicated in this batch/]],
      ]);
      for (let i = 0; i < total; i++) {
        let text: string;
        if (bad.has(i)) {
          const [row, error] = bad.get(i)!;
          text = row;
          expectedErrors.push({ row: line, error });
        } else {
          const company = i % 3 === 0 ? '"Acme, Inc."' : i % 3 === 1 ? 'Globex' : '';
          const notes = i % 4 === 0 ? `"Met at ""Expo"", booth ${i}\nfollow up, maybe"` : i % 4 === 1 ? 'plain' : '';
          text = `First ${i},Last ${i},${typed(all[i], i)},p${i}@Example.com,${company},${notes},${i % 5 === 0 ? 'yes' : 'false'},${i % 2 ? 'sms' : ''},ext-${i}`;
        }
        lines.push(text);
        line += 1 + (text.match(/\n/g)?.length ?? 0);
      }
      const before = await latestVersion();
      const countBefore = await countContacts();
      const started = performance.now();
      const res = await importCsv(app, lines.join('\n') + '\n');
      const ms = performance.now() - started;
      console.log(`[${backend}] CSV import of ${total} rows: ${Math.round(ms)} ms`);
      expect(res.status, res.text.slice(0, 500)).toBe(200);
      const data = res.body.data;
      expect(data).toMatchObject({ rows: total, created: total - bad.size, failed: bad.size, errorsTruncated: false });
      expect(data.errors.map((e: { row: number }) => e.row)).toEqual(expectedErrors.map((e) => e.row));
      data.errors.forEach((e: { error: string }, i: number) => expect(e.error).toMatch(expectedErrors[i].error));

      expect(await latestVersion()).toBe(before + total - bad.size);
      expect(await countContacts()).toBe(countBefore + total - bad.size);

      // Quoted commas, doubled quotes and newlines survive; aliases land in the right fields.
      const { rows } = await app.testDb.db.query<Row>(
        `SELECT first_name, last_name, phone_primary, email, company, notes, do_not_call, preferred_channel, external_id
           FROM contacts WHERE tenant_id = $1 AND phone_primary = ANY($2::text[]) ORDER BY phone_primary`,
        [tenantId, [all[0], all[1], all[2], all[5]]],
      );
      expect(rows).toEqual([
        {
          first_name: 'First 0', last_name: 'Last 0', phone_primary: all[0], email: 'p0@example.com', company: 'Acme, Inc.',
          notes: 'Met at "Expo", booth 0\nfollow up, maybe', do_not_call: true, preferred_channel: null, external_id: 'ext-0',
        },
        {
          first_name: 'First 1', last_name: 'Last 1', phone_primary: all[1], email: 'p1@example.com', company: 'Globex',
          notes: 'plain', do_not_call: false, preferred_channel: 'sms', external_id: 'ext-1',
        },
        {
          first_name: 'First 2', last_name: 'Last 2', phone_primary: all[2], email: 'p2@example.com', company: null,
          notes: null, do_not_call: false, preferred_channel: null, external_id: 'ext-2',
        },
        {
          first_name: 'First 5', last_name: 'Last 5', phone_primary: all[5], email: 'p5@example.com', company: null,
          notes: 'plain', do_not_call: true, preferred_channel: 'sms', external_id: 'ext-5',
        },
      ]);
      expect(await countContacts([all[10], all[1500], all[7777], all[12_001], all[15_000], all[19_998]])).toBe(0);
    }, 120_000);

    it('commits the chunks of an import in file order, each checked while the one before commits: versions follow the rows', async () => {
      const total = 3_500;
      const all = phones('931', total);
      const csv = ['firstName,phonePrimary', ...all.map((p, i) => `Order ${i},${p}`)].join('\n') + '\n';
      const before = await latestVersion();
      const res = await importCsv(app, csv);
      expect(res.status, res.text.slice(0, 500)).toBe(200);
      expect(res.body.data).toMatchObject({ rows: total, created: total, failed: 0 });
      const { rows } = await app.testDb.db.query<{ phone_primary: string; version: number }>(
        'SELECT phone_primary, version FROM contacts WHERE tenant_id = $1 AND phone_primary = ANY($2::text[]) ORDER BY version',
        [tenantId, all],
      );
      expect(rows.map((r) => r.phone_primary)).toEqual(all);
      expect(rows.map((r) => Number(r.version))).toEqual(all.map((_, i) => before + i + 1));
    });

    it('reports the line a bad row starts on with CRLF endings and multi-line quoted fields', async () => {
      const [a, b, c, d] = phones('929', 4);
      const csv = [
        'firstName,phonePrimary,notes', // 1
        `Ann,${a},"two\r\nlines"`, // 2-3
        '', // 4
        `Bad,123,"also\r\ntwo"`, // 5-6
        `Cid,${c},`, // 7
        `,${d},"x"`, // 8
        `Bo,${b},`, // 9
      ].join('\r\n');
      const res = await importCsv(app, csv);
      expect(res.status, res.text).toBe(200);
      expect(res.body.data).toMatchObject({ rows: 5, created: 3, failed: 2 });
      expect(res.body.data.errors.map((e: { row: number }) => e.row)).toEqual([5, 8]);
      expect(res.body.data.errors[0].error).toMatch(/^phonePrimary/);
      expect(res.body.data.errors[1].error).toMatch(/^firstName/);
      const { rows } = await app.testDb.db.query<{ notes: string }>('SELECT notes FROM contacts WHERE tenant_id = $1 AND phone_primary = $2', [
        tenantId,
        a,
      ]);
      expect(rows[0].notes).toBe('two\r\nlines');
    });

    it('refuses a header naming an unknown column with a 400 and writes nothing', async () => {
      const before = await latestVersion();
      const res = await importCsv(app, `firstName,phonePrimary,shoeSize\nAl,${phones('929', 1, 100)[0]},44\n`);
      errorEnvelope(res, 400, 'VALIDATION_FAILED');
      expect(res.body.message).toMatch(/shoeSize/);
      const missing = await importCsv(app, `firstName,email\nAl,al@example.com\n`);
      errorEnvelope(missing, 400, 'VALIDATION_FAILED');
      expect(await latestVersion()).toBe(before);
    });

    it('refuses an empty body with a 400', async () => {
      const before = await latestVersion();
      errorEnvelope(await importCsv(app, ''), 400, 'VALIDATION_FAILED');
      errorEnvelope(await importCsv(app, '\ufeff\n\n'), 400, 'VALIDATION_FAILED');
      const headerOnly = await importCsv(app, 'firstName,phonePrimary\n');
      expect(headerOnly.status).toBe(200);
      expect(headerOnly.body.data).toMatchObject({ rows: 0, created: 0, failed: 0, errors: [] });
      expect(await latestVersion()).toBe(before);
    });

    it('answers 415 for a body that is not CSV and writes nothing', async () => {
      const before = await latestVersion();
      const phone = phones('929', 1, 200)[0];
      errorEnvelope(await importCsv(app, JSON.stringify([{ firstName: 'J', phonePrimary: phone }]), 'application/json'), 415, 'UNSUPPORTED_MEDIA_TYPE');
      errorEnvelope(await importCsv(app, `firstName,phonePrimary\nJ,${phone}\n`, 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
      errorEnvelope(await importCsv(app, `firstName,phonePrimary\nJ,${phone}\n`, 'application/xml'), 415, 'UNSUPPORTED_MEDIA_TYPE');
      const noType = await fetch(`${app.url}/api/contacts/import`, {
        method: 'POST',
        headers: { 'x-api-key': app.adminKey },
        body: new Uint8Array(Buffer.from(`firstName,phonePrimary\nJ,${phone}\n`)),
      });
      expect(noType.status).toBe(415);
      expect(await noType.json()).toMatchObject({ success: false, error: 'UNSUPPORTED_MEDIA_TYPE' });
      expect(await latestVersion()).toBe(before);
      expect(await countContacts([phone])).toBe(0);
    });

    it('answers 400 for malformed CSV, keeping only the rows before the error and saying how many', async () => {
      const [ok1, ok2, late] = phones('929', 3, 300);
      const before = await latestVersion();
      const res = await importCsv(app, `firstName,phonePrimary,notes\nOk,${ok1},fine\nOk2,${ok2},"never closed\nLate,${late},x\n`);
      errorEnvelope(res, 400, 'VALIDATION_FAILED');
      expect(res.body.message).toMatch(/malformed/i);
      const imported = res.body.details[0].imported;
      expect(await latestVersion()).toBe(before + imported);
      expect(imported).toBe(1);
      expect(await countContacts([ok1])).toBe(1);
      expect(await countContacts([ok2, late])).toBe(0);

      const stray = await importCsv(app, `firstName,phonePrimary\nA"b,${phones('929', 1, 310)[0]}\n`);
      errorEnvelope(stray, 400, 'VALIDATION_FAILED');
      expect(await latestVersion()).toBe(before + imported);
    });

    it('answers 400 for a CSV body that is not UTF-8', async () => {
      const before = await latestVersion();
      const phone = phones('929', 1, 500)[0];
      const body = Buffer.concat([Buffer.from(`firstName,phonePrimary\nA`), Buffer.from([0xff, 0xfe]), Buffer.from(`,${phone}\n`)]);
      errorEnvelope(await importCsv(app, body), 400, 'BAD_REQUEST');
      expect(await latestVersion()).toBe(before);
    });

    it('stops a body over the size limit with a 413 that says how many rows before it were imported', async () => {
      const before = await latestVersion();
      const all = phones('929', 50, 600);
      const lines = ['firstName,phonePrimary\n', ...all.map((p, i) => `Row ${i},${p}\n`)].map((l) => Buffer.from(l));
      const size = lines.reduce((n, l) => n + l.length, 0);
      // Line by line, as a network upload arrives, so rows are read before the limit is hit.
      const body = Readable.from(
        (async function* () {
          for (const line of lines) {
            await new Promise((resolve) => setImmediate(resolve));
            yield line;
          }
        })(),
      );
      const importing = importContactsCsv(app.built.services.contacts, { tenantId }, body, contactRowError, { maxBytes: size - 100 });
      const error = await importing.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(AppError);
      expect(error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', status: 413 });
      const { imported } = (error as AppError).details?.[0] as { imported: number };
      expect(imported).toBeGreaterThan(40);
      expect(imported).toBeLessThan(50);
      expect(await latestVersion()).toBe(before + imported);
      expect(await countContacts(all)).toBe(imported);
    });

    it('does not let another tenant see imported contacts', async () => {
      const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Import Other', slug: `import-other-${backend}` } });
      expect(tenant.status).toBe(201);
      const otherKey = tenant.body.data.apiKey;
      const phone = phones('929', 1, 400)[0];
      const res = await importCsv(app, `firstName,phonePrimary\nOnly,${phone}\n`, 'text/csv', otherKey);
      expect(res.body.data).toMatchObject({ created: 1 });
      const mine = await app.api('GET', `/api/contacts?search=${encodeURIComponent(phone)}`);
      expect(mine.body.data).toEqual([]);
      const theirs = await app.api('GET', `/api/contacts?search=${encodeURIComponent(phone)}`, { key: otherKey });
      expect(theirs.body.data.map((c: { phonePrimary: string }) => c.phonePrimary)).toEqual([phone]);
    });
  });

  describe('GET /api/contacts/export', () => {
    let key: string;
    let live: Map<string, Row>;
    let deletedIds: string[];

    beforeAll(async () => {
      const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Export Co', slug: `export-${backend}` } });
      expect(tenant.status).toBe(201);
      key = tenant.body.data.apiKey;
      // More than two export pages (1000 rows each), with the awkward values a CSV must quote.
      const tricky = ['Comma, Inc.', 'He said "hi"', 'multi\nline\r\nnotes', '  padded  ', 'Zoë 北京 🚀', '=SUM(A1)', '+1 not a phone', ''];
      const rows = phones('628', 2500).map((phonePrimary, i) => ({
        firstName: i % 7 === 0 ? `Ann "${i}", Jr.` : `Name ${i}`,
        lastName: i % 2 ? tricky[i % tricky.length] : null,
        phonePrimary,
        phoneSecondary: i % 11 === 0 ? '+12125550100' : null,
        email: i % 3 === 0 ? `e${i}@example.com` : null,
        company: tricky[(i + 3) % tricky.length] || null,
        notes: i % 5 === 0 ? tricky[i % tricky.length] : null,
        externalId: i % 4 === 0 ? `x-${i}` : null,
        doNotCall: i % 6 === 0,
        preferredChannel: (['phone', 'sms', 'email', 'whatsapp', null] as const)[i % 5],
      }));
      const created = await app.api('POST', '/api/contacts/bulk', { body: rows, key });
      expect(created.body.data.created).toBe(2500);
      const ids = created.body.data.results.map((r: { id: string }) => r.id);
      deletedIds = [ids[0], ids[999], ids[1000], ids[2499]];
      for (const id of deletedIds) expect((await app.api('DELETE', `/api/contacts/${id}`, { key })).status).toBe(204);
      await app.api('PATCH', `/api/contacts/${ids[5]}`, { key, body: { notes: 'edited after create' } });
      live = new Map();
      // The tenant's contacts as a device holds them (the pull's other collections, such as the
      // team directory of SPEC §8, are no contacts).
      for (const change of await changesSince(0, key, 'contacts')) {
        if (change.op === 'upsert') live.set(change.id, change.data);
        else live.delete(change.id);
      }
      expect(live.size).toBe(2496);
    });

    const expectSameContacts = (exported: Row[]) => {
      expect(exported.length).toBe(live.size);
      expect(new Set(exported.map((c) => c.id))).toEqual(new Set(live.keys()));
      for (const id of deletedIds) expect(exported.some((c) => c.id === id)).toBe(false);
    };

    it('streams csv that parses back to exactly the live contacts (cells that start like formulas quoted)', async () => {
      const res = await fetchText(app, '/api/contacts/export?format=csv', key);
      expect(res.status).toBe(200);
      expect(res.contentType).toMatch(/^text\/csv/);
      const records = parseCsv(res.text, { columns: true, bom: true }) as Record<string, string>[];
      expectSameContacts(records);
      const columns = Object.keys(records[0]);
      expect(columns).toEqual(expect.arrayContaining(['id', 'firstName', 'lastName', 'phonePrimary', 'notes', 'doNotCall', 'version']));
      for (const record of records) {
        const truth = live.get(record.id)!;
        for (const column of columns) {
          const value = truth[column];
          const text = value === null || value === undefined ? '' : String(value);
          expect(record[column], `${record.id}.${column}`).toBe(typeof value === 'string' ? spreadsheetSafe(text) : text);
        }
      }
    });

    it('streams a json array equal to the live contacts', async () => {
      const res = await fetchText(app, '/api/contacts/export?format=json', key);
      expect(res.status).toBe(200);
      expect(res.contentType).toMatch(/^application\/json/);
      const exported = JSON.parse(res.text) as Row[];
      expectSameContacts(exported);
      for (const c of exported) expect(c).toEqual(live.get(c.id as string));
    });

    it('streams ndjson, one live contact per line', async () => {
      const res = await fetchText(app, '/api/contacts/export?format=ndjson', key);
      expect(res.status).toBe(200);
      expect(res.contentType).toMatch(/^application\/x-ndjson/);
      expect(res.text.endsWith('\n')).toBe(true);
      const exported = res.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Row);
      expectSameContacts(exported);
      for (const c of exported) expect(c).toEqual(live.get(c.id as string));
    });

    it('exports an empty tenant as a header, an empty array and nothing', async () => {
      const tenant = await app.api('POST', '/api/tenants', { body: { name: 'Empty Co', slug: `empty-${backend}` } });
      const emptyKey = tenant.body.data.apiKey;
      const csv = await fetchText(app, '/api/contacts/export?format=csv', emptyKey);
      expect(csv.status).toBe(200);
      expect(csv.text.split(/\r?\n/)[0]).toMatch(/^id,firstName,lastName,phonePrimary,/);
      expect(parseCsv(csv.text, { columns: true })).toEqual([]);
      expect(JSON.parse((await fetchText(app, '/api/contacts/export?format=json', emptyKey)).text)).toEqual([]);
      expect((await fetchText(app, '/api/contacts/export?format=ndjson', emptyKey)).text).toBe('');
    });

    it('answers 400 for an unknown format or parameter', async () => {
      errorEnvelope(await app.api('GET', '/api/contacts/export?format=xml', { key }), 400, 'VALIDATION_FAILED');
      errorEnvelope(await app.api('GET', '/api/contacts/export?format=csv&extra=1', { key }), 400, 'VALIDATION_FAILED');
      errorEnvelope(await app.api('GET', '/api/contacts/export', { key: null }), 401);
    });
  });
});

/** A full garbage collection, so retained memory can be told from garbage not yet collected. */
function forceGc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

// Once, on the fastest backend at hand: PostgreSQL when configured (its memory is then not in
// this process, so RSS shows the importer alone), PGlite otherwise.
const scaleBackend = backends.includes('postgres') ? 'postgres' : 'pglite';

describe(`contacts CSV import at scale on ${scaleBackend}`, () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(scaleBackend);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('imports 100k streamed rows in one request', async () => {
    const total = 100_000;
    const batch = 1000;
    async function* body() {
      yield 'firstName,lastName,phonePrimary,email,company,doNotCall\n';
      for (let start = 0; start < total; start += batch) {
        let text = '';
        for (let i = start; i < start + batch; i++) {
          text += `F${i},L${i},+1347${2000000 + i},u${i}@example.com,${i % 2 ? '"Big, Co"' : 'Small'},${i % 9 === 0}\n`;
        }
        yield text;
      }
    }
    const before = await app.api('GET', '/api/sync/delta?version=0&limit=1');
    // Recorded, not asserted. On PGlite the database lives in this process, so RSS also grows
    // by the 100k rows, their audit entries and indexes; the JS heap shows the streaming.
    const mem = () => process.memoryUsage();
    const retainedHeap = () => {
      forceGc();
      return mem().heapUsed;
    };
    const retainedBefore = retainedHeap();
    const start = mem();
    const peak = { rss: start.rss, heapUsed: start.heapUsed };
    const sample = () => {
      const m = mem();
      peak.rss = Math.max(peak.rss, m.rss);
      peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
    };
    const sampler = setInterval(sample, 50);
    const started = performance.now();
    const res = await importCsv(app, body());
    const ms = performance.now() - started;
    clearInterval(sampler);
    sample();
    const mb = (n: number) => Math.round(n / 1024 / 1024);
    console.log(
      `[${scaleBackend}] CSV import of ${total} rows: ${Math.round(ms)} ms (${Math.round((total / ms) * 1000)} rows/s); ` +
        `RSS ${mb(start.rss)} MB -> peak ${mb(peak.rss)} MB (+${mb(peak.rss - start.rss)} MB); ` +
        `JS heap ${mb(start.heapUsed)} MB -> peak ${mb(peak.heapUsed)} MB (+${mb(peak.heapUsed - start.heapUsed)} MB), ` +
        `retained after GC ${mb(retainedBefore)} MB -> ${mb(retainedHeap())} MB`,
    );
    expect(res.status, res.text.slice(0, 500)).toBe(200);
    expect(res.body.data).toEqual({ rows: total, created: total, failed: 0, errors: [], errorsTruncated: false });
    const after = await app.api('GET', '/api/sync/delta?version=0&limit=1');
    expect(after.body.data.latestVersion).toBe(before.body.data.latestVersion + total);
    const { rows } = await app.testDb.db.query<{ n: number; dnc: number }>(
      "SELECT count(*)::int AS n, count(*) FILTER (WHERE do_not_call)::int AS dnc FROM contacts WHERE phone_primary LIKE '+1347%'",
    );
    expect(rows[0]).toEqual({ n: total, dnc: Math.ceil(total / 9) });
  }, 180_000);
});
