import { existsSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';
import {
  bytesOf,
  chunksOf,
  createTenant,
  defaultTenantId,
  download,
  filesUnder,
  putChunk,
  sha256,
  uploadChunked,
  usedBytes,
} from './helpers/files.js';

const KiB = 1024;

describe.each(backends)('chunked uploads on %s', (backend) => {
  let app: TestApp;
  let tenantId: string;
  beforeAll(async () => {
    app = await startTestApp(backend);
    tenantId = await defaultTenantId(app);
  });
  afterAll(async () => {
    await app?.close();
  });

  const init = (body: Record<string, unknown>, key?: string) => app.api('POST', '/api/uploads/init', { body, key });

  it('takes chunks in any order, tells what is missing after each, and serves the exact bytes', async () => {
    const data = bytesOf(200 * KiB + 123);
    const opened = await init({ filename: 'site-visit.jpg', size: data.length, contentType: 'image/jpeg', sha256: sha256(data), chunkSize: 64 * KiB });
    expect(opened.status).toBe(201);
    const { uploadId, chunkSize, totalChunks, expiresAt } = opened.body.data;
    expect({ chunkSize, totalChunks }).toEqual({ chunkSize: 64 * KiB, totalChunks: 4 });
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(23.9 * 3600 * 1000);
    expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(24 * 3600 * 1000);

    const chunks = chunksOf(data, chunkSize);
    const answers = [];
    for (const index of [3, 0, 2, 1]) {
      const res = await putChunk(app, uploadId, index, chunks[index]);
      expect(res.status).toBe(200);
      answers.push(res.body.data);
    }
    expect(answers).toEqual([
      { received: 1, missingChunks: [0, 1, 2] },
      { received: 2, missingChunks: [1, 2] },
      { received: 3, missingChunks: [1] },
      { received: 4, missingChunks: [] },
    ]);
    const status = await app.api('GET', `/api/uploads/${uploadId}`);
    expect(status.body.data).toMatchObject({ uploadId, filename: 'site-visit.jpg', size: data.length, received: 4, missingChunks: [], fileId: null });

    const done = await app.api('POST', `/api/uploads/${uploadId}/finalize`);
    expect(done.status).toBe(200);
    const { fileId, url } = done.body.data;
    expect(url).toBe(`/api/files/${fileId}`);
    const file = await download(app, url);
    expect(file.status).toBe(200);
    expect(file.bytes.equals(data)).toBe(true);
    expect(file.headers.get('content-type')).toBe('image/jpeg');
    expect(file.headers.get('content-length')).toBe(String(data.length));
    expect(file.headers.get('content-disposition')).toBe(`attachment; filename="site-visit.jpg"; filename*=UTF-8''site-visit.jpg`);
    // The upload's part file became the file: one blob under a generated name.
    expect(existsSync(join(app.uploadDir, 'chunks', `${uploadId}.part`))).toBe(false);
    expect(filesUnder(app.uploadDir)).toContain(`blobs/${fileId}`);
  });

  it('finalizing again answers the same file, and a chunk re-sent afterwards changes nothing', async () => {
    const data = bytesOf(130 * KiB);
    const first = await uploadChunked(app, data, { chunkSize: 64 * KiB });
    const again = await app.api('POST', `/api/uploads/${first.uploadId}/finalize`);
    expect(again.status).toBe(200);
    expect(again.body.data).toEqual({ fileId: first.fileId, url: first.url });
    const resent = await putChunk(app, first.uploadId, 1, data.subarray(64 * KiB, 128 * KiB));
    expect(resent.body.data).toEqual({ received: 3, missingChunks: [] });
    const { rows } = await app.testDb.db.query('SELECT id FROM files WHERE tenant_id = $1 AND id = $2', [tenantId, first.fileId]);
    expect(rows).toHaveLength(1);
    expect((await download(app, first.url)).bytes.equals(data)).toBe(true);
  });

  it('acknowledges a re-sent chunk again without changing it, and refuses other bytes for a stored chunk', async () => {
    const data = bytesOf(128 * KiB);
    const { uploadId } = (await init({ filename: 'a.pdf', size: data.length, contentType: 'application/pdf', sha256: sha256(data), chunkSize: 64 * KiB })).body.data;
    const [c0, c1] = chunksOf(data, 64 * KiB);
    expect((await putChunk(app, uploadId, 0, c0)).body.data).toEqual({ received: 1, missingChunks: [1] });
    expect((await putChunk(app, uploadId, 0, c0)).body.data).toEqual({ received: 1, missingChunks: [1] });
    const other = bytesOf(64 * KiB);
    const conflict = await putChunk(app, uploadId, 0, other);
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({ success: false, error: 'CONFLICT' });
    await putChunk(app, uploadId, 1, c1);
    const done = await app.api('POST', `/api/uploads/${uploadId}/finalize`);
    expect(done.status).toBe(200);
    expect((await download(app, done.body.data.url)).bytes.equals(data)).toBe(true);
  });

  it('refuses a corrupted chunk with 400 CHECKSUM_MISMATCH and does not keep it', async () => {
    const data = bytesOf(128 * KiB);
    const { uploadId } = (await init({ filename: 'a.pdf', size: data.length, contentType: 'application/pdf', sha256: sha256(data), chunkSize: 64 * KiB })).body.data;
    const [c0] = chunksOf(data, 64 * KiB);
    const corrupted = Buffer.from(c0);
    corrupted[100] ^= 0xff;
    const res = await putChunk(app, uploadId, 0, corrupted, { sha: sha256(c0) });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ success: false, error: 'CHECKSUM_MISMATCH' });
    expect((await app.api('GET', `/api/uploads/${uploadId}`)).body.data).toMatchObject({ received: 0, missingChunks: [0, 1] });
    // The right bytes are then taken.
    expect((await putChunk(app, uploadId, 0, c0)).body.data).toEqual({ received: 1, missingChunks: [1] });
    // A corrupted re-send of a stored chunk changes nothing of it.
    expect((await putChunk(app, uploadId, 0, corrupted, { sha: sha256(c0) })).status).toBe(400);
    await putChunk(app, uploadId, 1, data.subarray(64 * KiB));
    const done = await app.api('POST', `/api/uploads/${uploadId}/finalize`);
    expect(done.status).toBe(200);
    expect((await download(app, done.body.data.url)).bytes.equals(data)).toBe(true);
  });

  it('answers 409 INCOMPLETE with the missing chunks when finalized early, and makes no file', async () => {
    const data = bytesOf(200 * KiB);
    const { uploadId } = (await init({ filename: 'a.pdf', size: data.length, contentType: 'application/pdf', sha256: sha256(data), chunkSize: 64 * KiB })).body.data;
    await putChunk(app, uploadId, 1, chunksOf(data, 64 * KiB)[1]);
    const res = await app.api('POST', `/api/uploads/${uploadId}/finalize`);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ success: false, error: 'INCOMPLETE' });
    expect(res.body.details[0].missingChunks).toEqual([0, 2, 3]);
    expect((await app.api('GET', `/api/uploads/${uploadId}`)).body.data.fileId).toBeNull();
  });

  it('refuses a whole file whose SHA-256 is not the declared one: 400, no file, the upload and its chunks gone, the quota given back', async () => {
    const before = await usedBytes(app, tenantId);
    const data = bytesOf(128 * KiB);
    const { uploadId } = (await init({ filename: 'a.pdf', size: data.length, contentType: 'application/pdf', sha256: sha256(bytesOf(10)), chunkSize: 64 * KiB })).body.data;
    expect(await usedBytes(app, tenantId)).toBe(before + data.length);
    for (const [i, chunk] of chunksOf(data, 64 * KiB).entries()) expect((await putChunk(app, uploadId, i, chunk)).status).toBe(200);
    const blobsBefore = filesUnder(join(app.uploadDir, 'blobs'));
    const res = await app.api('POST', `/api/uploads/${uploadId}/finalize`);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ success: false, error: 'CHECKSUM_MISMATCH' });
    expect(filesUnder(join(app.uploadDir, 'blobs'))).toEqual(blobsBefore);
    expect(existsSync(join(app.uploadDir, 'chunks', `${uploadId}.part`))).toBe(false);
    expect((await app.api('GET', `/api/uploads/${uploadId}`)).status).toBe(404);
    expect(await usedBytes(app, tenantId)).toBe(before);
  });

  it('refuses bad declarations and chunk requests with the error envelope, never a 5xx, and keeps nothing', async () => {
    const data = bytesOf(100 * KiB);
    const good = { filename: 'a.pdf', size: data.length, contentType: 'application/pdf', sha256: sha256(data), chunkSize: 64 * KiB };
    const sessionsBefore = (await app.testDb.db.query('SELECT 1 FROM upload_sessions')).rowCount;
    const usedBefore = await usedBytes(app, tenantId);
    const bad: [Record<string, unknown>, number, string][] = [
      [{ ...good, chunkSize: 1000 }, 400, 'VALIDATION_FAILED'],
      [{ ...good, chunkSize: 17 * 1024 * KiB }, 400, 'VALIDATION_FAILED'],
      [{ ...good, size: -1 }, 400, 'VALIDATION_FAILED'],
      [{ ...good, size: 1.5 }, 400, 'VALIDATION_FAILED'],
      [{ ...good, size: '100' }, 400, 'VALIDATION_FAILED'],
      [{ ...good, sha256: sha256(data).toUpperCase() }, 400, 'VALIDATION_FAILED'],
      [{ ...good, sha256: 'abc' }, 400, 'VALIDATION_FAILED'],
      [{ ...good, extra: 1 }, 400, 'VALIDATION_FAILED'],
      [{ ...good, filename: '' }, 400, 'VALIDATION_FAILED'],
      [{ ...good, contentType: 'application/x-msdownload' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [{ ...good, contentType: 'not a type' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [{ ...good, size: 200 * 1024 * KiB }, 413, 'PAYLOAD_TOO_LARGE'],
    ];
    for (const [body, status, error] of bad) {
      const res = await init(body);
      expect({ body, status: res.status, error: res.body?.error }).toEqual({ body, status, error });
    }

    const { uploadId } = (await init(good)).body.data;
    const [c0, c1] = chunksOf(data, 64 * KiB);
    const chunkCases: [Promise<{ status: number; body: any }>, number, string][] = [
      [putChunk(app, uploadId, 2, c1), 400, 'VALIDATION_FAILED'], // past the last chunk
      [putChunk(app, uploadId, -1, c0), 400, 'VALIDATION_FAILED'],
      [putChunk(app, uploadId, 'abc', c0), 400, 'VALIDATION_FAILED'],
      [putChunk(app, uploadId, 99_999_999, c0), 400, 'VALIDATION_FAILED'],
      [putChunk(app, uploadId, 0, c0.subarray(1)), 400, 'VALIDATION_FAILED'], // too short
      [putChunk(app, uploadId, 1, c0), 413, 'PAYLOAD_TOO_LARGE'], // the last chunk is shorter
      [putChunk(app, uploadId, 0, c0, { sha: null }), 400, 'VALIDATION_FAILED'],
      [putChunk(app, uploadId, 0, c0, { sha: sha256(c0).toUpperCase() }), 400, 'VALIDATION_FAILED'],
      [putChunk(app, uploadId, 0, c0, { contentType: 'application/json' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [putChunk(app, uploadId, 0, c0, { contentType: null }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [putChunk(app, '6f1c2b8e-0000-4000-8000-000000000000', 0, c0), 404, 'NOT_FOUND'],
      [putChunk(app, 'not-an-id', 0, c0), 404, 'NOT_FOUND'],
      [app.api('GET', '/api/uploads/../../etc/passwd'), 404, 'NOT_FOUND'],
      [app.api('POST', '/api/uploads/not-an-id/finalize'), 404, 'NOT_FOUND'],
    ];
    for (const [request, status, error] of chunkCases) {
      const res = await request;
      expect({ status: res.status, error: res.body?.error }).toEqual({ status, error });
    }
    expect((await app.api('GET', `/api/uploads/${uploadId}`)).body.data).toMatchObject({ received: 0, missingChunks: [0, 1] });
    expect(existsSync(join(app.uploadDir, 'chunks', `${uploadId}.part`))).toBe(false);
    // Only the one good init was recorded and reserved.
    expect((await app.testDb.db.query('SELECT 1 FROM upload_sessions')).rowCount).toBe(sessionsBefore + 1);
    expect(await usedBytes(app, tenantId)).toBe(usedBefore + data.length);
  });

  it('stores names as sanitised metadata: traversal and control characters never reach a path', async () => {
    const cases: [string, string][] = [
      ['../../etc/passwd', 'passwd'],
      ['..\\..\\windows\\win.ini', 'win.ini'],
      ['inv\u0007oice\u202Efdp.exe.pdf', 'invoicefdp.exe.pdf'],
      ['..', 'file'],
      ['résumé "final".pdf', 'résumé "final".pdf'],
    ];
    for (const [name, stored] of cases) {
      const data = bytesOf(1000);
      const { url, uploadId } = await uploadChunked(app, data, { filename: name, contentType: 'application/pdf' });
      expect((await app.api('GET', `/api/uploads/${uploadId}`)).body.data.filename).toBe(stored);
      const file = await download(app, url);
      expect(file.bytes.equals(data)).toBe(true);
      const disposition = file.headers.get('content-disposition')!;
      expect(disposition).toBe(`attachment; filename="${stored.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(stored)}`);
    }
    // Every stored byte is under a generated name: no client-given name appears on disk.
    for (const path of filesUnder(app.uploadDir)) expect(path).toMatch(/^(blobs|tus)\/[0-9a-f-]{36}(\.json)?$|^chunks\/[0-9a-f-]{36}\.part$/);
  });

  it('keeps uploads and files in their tenant: 404 for another tenant, 401 without credentials', async () => {
    const other = await createTenant(app, `files-${backend}`);
    const data = bytesOf(70 * KiB);
    const { uploadId } = (await init({ filename: 'a.pdf', size: data.length, contentType: 'application/pdf', sha256: sha256(data), chunkSize: 64 * KiB })).body.data;
    const [c0, c1] = chunksOf(data, 64 * KiB);
    await putChunk(app, uploadId, 0, c0);
    expect((await app.api('GET', `/api/uploads/${uploadId}`, { key: other.apiKey })).status).toBe(404);
    expect((await putChunk(app, uploadId, 1, c1, { key: other.apiKey })).status).toBe(404);
    expect((await app.api('POST', `/api/uploads/${uploadId}/finalize`, { key: other.apiKey })).status).toBe(404);
    await putChunk(app, uploadId, 1, c1);
    const { url } = (await app.api('POST', `/api/uploads/${uploadId}/finalize`)).body.data;

    const foreign = await download(app, url, {}, other.apiKey);
    expect(foreign.status).toBe(404);
    expect(JSON.parse(foreign.bytes.toString())).toMatchObject({ success: false, error: 'NOT_FOUND' });
    const anonymous = await download(app, url, {}, null);
    expect(anonymous.status).toBe(401);
    expect((await app.api('POST', '/api/uploads/init', { key: null, body: {} })).status).toBe(401);
    expect((await putChunk(app, uploadId, 0, c0, { key: null })).status).toBe(401);

    // Another user of the tenant reads the file (tenant-wide), but not the uploader's session.
    const agent = await createAgent(app, `FILES-${backend}`, { password: 'correct horse battery' });
    expect((await download(app, url, {}, agent.apiKey)).bytes.equals(data)).toBe(true);
    expect((await app.api('GET', `/api/uploads/${uploadId}`, { key: agent.apiKey })).status).toBe(404);
    // Bearer tokens work as keys do.
    const login = await app.api('POST', '/api/auth/login', { key: null, body: { login: `FILES-${backend}`, password: 'correct horse battery' } });
    const viaToken = await fetch(app.url + url, { headers: { authorization: `Bearer ${login.body.data.accessToken}` } });
    expect(viaToken.status).toBe(200);
    expect(Buffer.from(await viaToken.arrayBuffer()).equals(data)).toBe(true);
  });

  it('serves ranges: 206 with Content-Range, suffix and open-ended ranges, 416 past the end', async () => {
    const data = bytesOf(10_000);
    const { url } = await uploadChunked(app, data, { contentType: 'video/mp4', filename: 'clip.mp4' });
    const part = await download(app, url, { range: 'bytes=100-199' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 100-199/10000');
    expect(part.headers.get('content-length')).toBe('100');
    expect(part.bytes.equals(data.subarray(100, 200))).toBe(true);
    const suffix = await download(app, url, { range: 'bytes=-500' });
    expect(suffix.status).toBe(206);
    expect(suffix.bytes.equals(data.subarray(9500))).toBe(true);
    const open = await download(app, url, { range: 'bytes=9990-' });
    expect(open.bytes.equals(data.subarray(9990))).toBe(true);
    const clipped = await download(app, url, { range: 'bytes=9990-20000' });
    expect(clipped.headers.get('content-range')).toBe('bytes 9990-9999/10000');
    const past = await download(app, url, { range: 'bytes=10000-10010' });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe('bytes */10000');
    expect(JSON.parse(past.bytes.toString())).toMatchObject({ success: false, error: 'RANGE_NOT_SATISFIABLE' });
    // Several ranges, or a malformed one: the whole file.
    const several = await download(app, url, { range: 'bytes=0-1,5-6' });
    expect(several.status).toBe(200);
    expect(several.bytes.equals(data)).toBe(true);
    expect((await download(app, url, { range: 'lines=1-2' })).status).toBe(200);
    expect(part.headers.get('accept-ranges')).toBe('bytes');
    // Revalidation by the content's hash.
    const etag = part.headers.get('etag')!;
    expect(etag).toBe(`"${sha256(data)}"`);
    expect((await download(app, url, { 'if-none-match': etag })).status).toBe(304);
  });

  it('hides a file attached to a conversation from users outside it (attachment guards)', async () => {
    const member = await createAgent(app, `MEMBER-${backend}`);
    const outsider = await createAgent(app, `OUTSIDER-${backend}`);
    const attached = await uploadChunked(app, bytesOf(500), { key: member.apiKey, contentType: 'image/png', filename: 'a.png' });
    const loose = await uploadChunked(app, bytesOf(500), { key: member.apiKey, contentType: 'image/png', filename: 'b.png' });
    // What chat registers: a file attached to a conversation is for its participants.
    const participants = new Set([member.agent.id]);
    app.built.services.files.addAttachmentGuard(async (_tenantId, userId, fileId) => (fileId === attached.fileId ? participants.has(userId) : undefined));

    expect((await download(app, attached.url, {}, member.apiKey)).status).toBe(200);
    expect((await download(app, attached.url, {}, outsider.apiKey)).status).toBe(404);
    expect((await download(app, loose.url, {}, outsider.apiKey)).status).toBe(200);
    participants.add(outsider.agent.id);
    expect((await download(app, attached.url, {}, outsider.apiKey)).status).toBe(200);
    // What chat embeds in a message: the files' descriptions, ready files of the tenant only.
    const described = await app.built.services.files.describe(tenantId, [attached.fileId, 'not-an-id', '6f1c2b8e-0000-4000-8000-000000000000']);
    expect(described).toEqual([{ fileId: attached.fileId, filename: 'a.png', contentType: 'image/png', size: 500, url: attached.url }]);
  });

  it('documents the file API in the OpenAPI document', async () => {
    const doc = (await app.api('GET', '/docs/json', { key: null })).body;
    const op = (path: string, method: string) => doc.paths[path]?.[method];
    for (const [path, method] of [
      ['/api/uploads/init', 'post'],
      ['/api/uploads/{uploadId}', 'get'],
      ['/api/uploads/{uploadId}/chunks/{index}', 'put'],
      ['/api/uploads/{uploadId}/finalize', 'post'],
      ['/api/files/{fileId}', 'get'],
      ['/api/files/tus/', 'post'],
      ['/api/files/tus/{fileId}', 'patch'],
      ['/api/files/tus/{fileId}', 'head'],
      ['/api/files/tus/{fileId}', 'delete'],
    ]) {
      expect(op(path, method)?.summary, `${method} ${path}`).toEqual(expect.any(String));
    }
    expect(Object.keys(op('/api/files/{fileId}', 'get').responses)).toEqual(expect.arrayContaining(['200', '206', '401', '404', '416']));
    expect(Object.keys(op('/api/uploads/init', 'post').responses)).toEqual(expect.arrayContaining(['201', '400', '413', '415']));
  });

  it("takes a contact's photoFileId only when it names a file of the same tenant", async () => {
    const mine = await uploadChunked(app, bytesOf(300), { contentType: 'image/jpeg', filename: 'face.jpg' });
    const other = await createTenant(app, `photos-${backend}`);
    const theirs = await uploadChunked(app, bytesOf(300), { contentType: 'image/jpeg', key: other.apiKey });
    const phone = `+1415555${String(Math.floor(Math.random() * 9000) + 1000)}`;

    const created = await app.api('POST', '/api/contacts', { body: { firstName: 'Pia', phonePrimary: phone, photoFileId: mine.fileId } });
    expect(created.status).toBe(201);
    expect(created.body.data.photoFileId).toBe(mine.fileId);
    for (const photoFileId of [theirs.fileId, '6f1c2b8e-0000-4000-8000-000000000000']) {
      const refused = await app.api('PATCH', `/api/contacts/${created.body.data.id}`, { body: { photoFileId } });
      expect(refused.status).toBe(400);
      expect(refused.body.details[0].field).toBe('photoFileId');
      const create = await app.api('POST', '/api/contacts', { body: { firstName: 'Quinn', phonePrimary: '+14155550000', photoFileId } });
      expect(create.status).toBe(400);
    }
    expect((await app.api('GET', `/api/contacts/${created.body.data.id}`)).body.data.photoFileId).toBe(mine.fileId);
    const bulk = await app.api('POST', '/api/contacts/bulk', {
      body: [
        { firstName: 'Ok', phonePrimary: '+14155550101', photoFileId: mine.fileId },
        { firstName: 'No', phonePrimary: '+14155550102', photoFileId: theirs.fileId },
      ],
    });
    expect(bulk.body.data.results.map((r: { success: boolean }) => r.success)).toEqual([true, false]);
    expect(bulk.body.data.results[1].error).toContain('photoFileId');
    // Unset is always fine.
    expect((await app.api('PATCH', `/api/contacts/${created.body.data.id}`, { body: { photoFileId: null } })).status).toBe(200);
  });

  it('expires sessions: the job removes them with their chunks and gives their reservation back; finished files stay', async () => {
    const used = await usedBytes(app, tenantId);
    const data = bytesOf(100 * KiB);
    const { uploadId } = (await init({ filename: 'a.pdf', size: data.length, contentType: 'application/pdf', sha256: sha256(data), chunkSize: 64 * KiB })).body.data;
    await putChunk(app, uploadId, 0, data.subarray(0, 64 * KiB));
    const finished = await uploadChunked(app, bytesOf(1000));
    expect(await usedBytes(app, tenantId)).toBe(used + data.length + 1000);
    await app.testDb.db.query(`UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = ANY($1::uuid[])`, [[uploadId, finished.uploadId]]);

    // Expired is gone for clients at once, before the sweep.
    expect((await putChunk(app, uploadId, 1, data.subarray(64 * KiB))).status).toBe(404);
    expect((await app.api('POST', `/api/uploads/${uploadId}/finalize`)).status).toBe(404);
    expect(existsSync(join(app.uploadDir, 'chunks', `${uploadId}.part`))).toBe(true);

    await app.built.services.uploadsExpiry.tick();
    const { rows } = await app.testDb.db.query('SELECT id FROM upload_sessions WHERE id = ANY($1::uuid[])', [[uploadId, finished.uploadId]]);
    expect(rows).toEqual([]);
    expect((await app.testDb.db.query('SELECT 1 FROM upload_chunks WHERE upload_id = $1', [uploadId])).rowCount).toBe(0);
    expect(existsSync(join(app.uploadDir, 'chunks', `${uploadId}.part`))).toBe(false);
    expect(await usedBytes(app, tenantId)).toBe(used + 1000);
    expect((await download(app, finished.url)).status).toBe(200);
  });

  it('removes part files that no session owns (a crash leftover) once they are an hour old', async () => {
    const stray = join(app.uploadDir, 'chunks', '0b4f3c1e-1111-4000-8000-000000000000.part');
    const fresh = join(app.uploadDir, 'chunks', '0b4f3c1e-2222-4000-8000-000000000000.part');
    writeFileSync(stray, 'left behind');
    writeFileSync(fresh, 'being written');
    const hoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    utimesSync(stray, hoursAgo, hoursAgo);
    await app.built.services.uploadsExpiry.tick();
    expect(existsSync(stray)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    rmSync(fresh);
  });
});

describe.each(backends)('upload limits on %s', (backend) => {
  let app: TestApp;
  let tenantId: string;
  const quota = 1024 * KiB;
  beforeAll(async () => {
    app = await startTestApp(backend, { UPLOAD_MAX_BYTES: String(600 * KiB), STORAGE_QUOTA_BYTES: String(quota), UPLOAD_ALLOWED_TYPES: 'image/*,text/plain' });
    tenantId = await defaultTenantId(app);
  });
  afterAll(async () => {
    await app?.close();
  });
  const declare = (size: number, contentType = 'image/png') =>
    app.api('POST', '/api/uploads/init', { body: { filename: 'x.png', size, contentType, sha256: 'a'.repeat(64) } });

  it('applies UPLOAD_MAX_BYTES (413) and UPLOAD_ALLOWED_TYPES with wildcards (415)', async () => {
    expect((await declare(600 * KiB + 1)).body).toMatchObject({ error: 'PAYLOAD_TOO_LARGE' });
    expect((await declare(600 * KiB + 1)).status).toBe(413);
    expect((await declare(10, 'image/heic')).status).toBe(201);
    expect((await declare(10, 'text/plain; charset=utf-8')).status).toBe(201);
    expect((await declare(10, 'application/pdf')).status).toBe(415);
  });

  it('reserves sizes against the tenant quota at init (413 QUOTA_EXCEEDED), also under concurrent inits', async () => {
    await app.testDb.db.query('DELETE FROM upload_sessions');
    await app.testDb.db.query('UPDATE storage_usage SET used_bytes = 0');
    expect((await declare(500 * KiB)).status).toBe(201);
    const refused = await declare(600 * KiB);
    expect(refused.status).toBe(413);
    expect(refused.body).toMatchObject({ success: false, error: 'QUOTA_EXCEEDED' });
    // 524 KiB left: of ten concurrent 100 KiB inits, exactly five fit.
    const answers = await Promise.all(Array.from({ length: 10 }, () => declare(100 * KiB)));
    expect(answers.filter((a) => a.status === 201)).toHaveLength(5);
    expect(answers.filter((a) => a.status === 413 && a.body.error === 'QUOTA_EXCEEDED')).toHaveLength(5);
    expect(await usedBytes(app, tenantId)).toBe(1000 * KiB);
    // Expired sessions give their reservation back.
    await app.testDb.db.query(`UPDATE upload_sessions SET expires_at = now() - interval '1 second'`);
    await app.built.services.uploadsExpiry.tick();
    expect(await usedBytes(app, tenantId)).toBe(0);
    expect((await declare(600 * KiB)).status).toBe(201);
  });
});

describe.each(backends)('upload expiry by TTL on %s', (backend) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(backend, { UPLOAD_TTL_SECONDS: '1' });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('forgets a session UPLOAD_TTL_SECONDS after its init, and the job removes its chunks', async () => {
    const data = bytesOf(100 * KiB);
    const opened = await app.api('POST', '/api/uploads/init', {
      body: { filename: 'a.txt', size: data.length, contentType: 'text/plain', sha256: sha256(data), chunkSize: 64 * KiB },
    });
    const { uploadId, expiresAt } = opened.body.data;
    expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(1000);
    const chunkAnswer = await putChunk(app, uploadId, 0, data.subarray(0, 64 * KiB));
    // On a slow machine the second may already be over; either way nothing may remain after the sweep.
    expect([200, 404]).toContain(chunkAnswer.status);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(expiresAt) - Date.now()) + 50));
    expect((await app.api('GET', `/api/uploads/${uploadId}`)).status).toBe(404);
    await app.built.services.uploadsExpiry.tick();
    expect((await app.testDb.db.query('SELECT 1 FROM upload_sessions WHERE id = $1', [uploadId])).rowCount).toBe(0);
    expect(existsSync(join(app.uploadDir, 'chunks', `${uploadId}.part`))).toBe(false);
  });
});
