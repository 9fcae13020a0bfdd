import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';
import { bytesOf, createTenant, defaultTenantId, download, usedBytes } from './helpers/files.js';

const KiB = 1024;

/** tus-js-client options for `key`, no retries (a failure must show), and no fingerprint storage. */
const clientOptions = (app: TestApp, key: string, extra: tus.UploadOptions = {}): tus.UploadOptions => ({
  endpoint: `${app.url}/api/files/tus/`,
  headers: { 'X-API-Key': key },
  retryDelays: null,
  ...extra,
});

/** Runs a tus-js-client upload to the end; its URL. */
function upload(data: Buffer, options: tus.UploadOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const u: tus.Upload = new tus.Upload(data, { ...options, onSuccess: () => resolve(u.url!), onError: reject });
    u.start();
  });
}

const fileIdOf = (url: string) => url.split('/').pop()!;

/** A raw tus request (what a client library sends), for the cases clients do not make on purpose. */
function tusRequest(app: TestApp, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer, key: string | null = app.adminKey) {
  return fetch(app.url + path, {
    method,
    headers: { 'tus-resumable': '1.0.0', ...(key ? { 'x-api-key': key } : {}), ...headers },
    body: body as BodyInit | undefined,
  });
}

async function createRaw(app: TestApp, size: number, metadata: Record<string, string> = { filename: 'a.txt', filetype: 'text/plain' }, key = app.adminKey) {
  const encoded = Object.entries(metadata).map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`).join(',');
  return tusRequest(app, 'POST', '/api/files/tus/', { 'upload-length': String(size), 'upload-metadata': encoded }, undefined, key);
}

describe.each(backends)('tus uploads on %s', (backend) => {
  let app: TestApp;
  let tenantId: string;
  beforeAll(async () => {
    app = await startTestApp(backend);
    tenantId = await defaultTenantId(app);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('takes a file from the stock tus client; the upload id is the fileId and the file downloads', async () => {
    const data = bytesOf(300 * KiB);
    const url = await upload(data, clientOptions(app, app.adminKey, { metadata: { filename: 'visit.mp4', filetype: 'video/mp4' } }));
    expect(url).toMatch(new RegExp(`^${app.url}/api/files/tus/[0-9a-f-]{36}$`));
    const fileId = fileIdOf(url);
    const file = await download(app, `/api/files/${fileId}`);
    expect(file.status).toBe(200);
    expect(file.bytes.equals(data)).toBe(true);
    expect(file.headers.get('content-type')).toBe('video/mp4');
    expect(file.headers.get('content-disposition')).toContain('filename="visit.mp4"');
    expect(file.headers.get('etag')).toBe(`"${createHash('sha256').update(data).digest('hex')}"`);
    const { rows } = await app.testDb.db.query<{ status: string; protocol: string; size: number }>(
      'SELECT status, protocol, size FROM files WHERE tenant_id = $1 AND id = $2',
      [tenantId, fileId],
    );
    expect(rows).toEqual([{ status: 'ready', protocol: 'tus', size: data.length }]);
  });

  it('resumes an upload cut mid-way from the same URL, from the offset the server kept', async () => {
    const data = bytesOf(512 * KiB);
    // The client sends 64 KiB PATCHes and is stopped after the second.
    let url = '';
    await new Promise<void>((resolve, reject) => {
      let chunks = 0;
      const u: tus.Upload = new tus.Upload(data, {
        ...clientOptions(app, app.adminKey, { metadata: { filename: 'a.pdf', filetype: 'application/pdf' }, chunkSize: 64 * KiB }),
        onChunkComplete: () => {
          if (++chunks === 2) {
            url = u.url!;
            void u.abort().then(resolve);
          }
        },
        onSuccess: () => reject(new Error('should have been stopped')),
        onError: reject,
      });
      u.start();
    });
    const head = await tusRequest(app, 'HEAD', new URL(url).pathname);
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe(String(128 * KiB));
    expect(head.headers.get('upload-length')).toBe(String(data.length));

    // A PATCH whose connection drops mid-body: the bytes that arrived are kept.
    const offset = 128 * KiB;
    await new Promise<void>((resolve) => {
      const req = httpRequest(app.url + new URL(url).pathname, {
        method: 'PATCH',
        headers: {
          'tus-resumable': '1.0.0',
          'x-api-key': app.adminKey,
          'content-type': 'application/offset+octet-stream',
          'upload-offset': String(offset),
          'content-length': String(200 * KiB),
        },
      });
      req.on('error', () => resolve());
      req.write(data.subarray(offset, offset + 100 * KiB), () => setTimeout(() => req.destroy(), 200));
      req.on('close', () => resolve());
    });
    let kept = 0;
    for (let i = 0; i < 50; i++) {
      // The server notices the cut and releases the upload's lock shortly after.
      const again = await tusRequest(app, 'HEAD', new URL(url).pathname);
      kept = Number(again.headers.get('upload-offset'));
      if (again.status === 200 && kept > offset) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(kept).toBeGreaterThan(offset);
    expect(kept).toBeLessThanOrEqual(offset + 100 * KiB);

    // The stock client resumes from that URL: its first PATCH starts at the kept offset.
    const offsets: number[] = [];
    const finished = await upload(
      data,
      clientOptions(app, app.adminKey, {
        uploadUrl: url,
        chunkSize: 128 * KiB,
        onBeforeRequest: (req) => {
          if (req.getMethod() === 'PATCH') offsets.push(Number(req.getHeader('Upload-Offset')));
        },
      }),
    );
    expect(finished).toBe(url);
    expect(offsets[0]).toBe(kept);
    expect((await download(app, `/api/files/${fileIdOf(url)}`)).bytes.equals(data)).toBe(true);
  });

  it('terminates an unfinished upload: its bytes, its row and its reservation go; a finished one stays', async () => {
    const before = await usedBytes(app, tenantId);
    const data = bytesOf(256 * KiB);
    let url = '';
    await new Promise<void>((resolve, reject) => {
      const u: tus.Upload = new tus.Upload(data, {
        ...clientOptions(app, app.adminKey, { metadata: { filename: 'a.pdf', filetype: 'application/pdf' }, chunkSize: 64 * KiB }),
        onChunkComplete: () => {
          url = u.url!;
          void u.abort().then(resolve);
        },
        onError: reject,
      });
      u.start();
    });
    const fileId = fileIdOf(url);
    expect(await usedBytes(app, tenantId)).toBe(before + data.length);
    expect(existsSync(join(app.uploadDir, 'tus', fileId))).toBe(true);
    await tus.Upload.terminate(url, clientOptions(app, app.adminKey));
    expect((await tusRequest(app, 'HEAD', `/api/files/tus/${fileId}`)).status).toBe(404);
    expect(existsSync(join(app.uploadDir, 'tus', fileId))).toBe(false);
    expect(existsSync(join(app.uploadDir, 'tus', `${fileId}.json`))).toBe(false);
    expect((await app.testDb.db.query('SELECT 1 FROM files WHERE id = $1', [fileId])).rowCount).toBe(0);
    expect(await usedBytes(app, tenantId)).toBe(before);

    const done = await upload(bytesOf(1000), clientOptions(app, app.adminKey, { metadata: { filename: 'b.pdf', filetype: 'application/pdf' } }));
    const refused = await tusRequest(app, 'DELETE', new URL(done).pathname);
    expect(refused.status).toBe(400);
    expect((await download(app, `/api/files/${fileIdOf(done)}`)).status).toBe(200);
  });

  it('advertises its version, extensions, Tus-Max-Size and sha256 checksums without credentials', async () => {
    const res = await fetch(`${app.url}/api/files/tus/`, { method: 'OPTIONS' });
    expect(res.status).toBe(204);
    expect(res.headers.get('tus-version')).toBe('1.0.0');
    expect(res.headers.get('tus-extension')!.split(',')).toEqual(expect.arrayContaining(['creation', 'termination', 'checksum', 'creation-with-upload']));
    expect(res.headers.get('tus-extension')).not.toContain('creation-defer-length');
    expect(res.headers.get('tus-max-size')).toBe(String(100 * 1024 * KiB));
    expect(res.headers.get('tus-checksum-algorithm')).toBe('sha256');
  });

  it('checks Upload-Checksum: a wrong sha256 is 460 and its bytes are not kept, a right one is applied, another algorithm is 400', async () => {
    const data = bytesOf(100 * KiB);
    const created = await createRaw(app, data.length);
    expect(created.status).toBe(201);
    const path = created.headers.get('location')!;
    expect(path).toMatch(/^\/api\/files\/tus\/[0-9a-f-]{36}$/);
    const patch = (body: Buffer, offset: number, checksum?: string) =>
      tusRequest(app, 'PATCH', path, {
        'content-type': 'application/offset+octet-stream',
        'upload-offset': String(offset),
        ...(checksum ? { 'upload-checksum': checksum } : {}),
      }, body);
    const digest = (b: Buffer) => `sha256 ${createHash('sha256').update(b).digest('base64')}`;
    const first = data.subarray(0, 60 * KiB);

    const wrong = await patch(first, 0, digest(bytesOf(10)));
    expect(wrong.status).toBe(460);
    expect(await wrong.json()).toMatchObject({ success: false, error: 'CHECKSUM_MISMATCH' });
    expect((await tusRequest(app, 'HEAD', path)).headers.get('upload-offset')).toBe('0');

    const md5 = await patch(first, 0, `md5 ${createHash('md5').update(first).digest('base64')}`);
    expect(md5.status).toBe(400);
    expect((await tusRequest(app, 'HEAD', path)).headers.get('upload-offset')).toBe('0');

    const right = await patch(first, 0, digest(first));
    expect(right.status).toBe(204);
    expect(right.headers.get('upload-offset')).toBe(String(first.length));
    const rest = await patch(data.subarray(first.length), first.length, digest(data.subarray(first.length)));
    expect(rest.status).toBe(204);
    expect((await download(app, `/api/files/${fileIdOf(path)}`)).bytes.equals(data)).toBe(true);
  });

  it('needs credentials and keeps uploads to their owner in their tenant (401, 404)', async () => {
    expect((await createRaw(app, 10, undefined, null as unknown as string)).status).toBe(401);
    const created = await createRaw(app, 1000);
    const path = created.headers.get('location')!;
    const other = await createTenant(app, `tus-${backend}`);
    const agent = await createAgent(app, `TUS-${backend}`);
    for (const key of [other.apiKey, agent.apiKey]) {
      expect((await tusRequest(app, 'HEAD', path, {}, undefined, key)).status).toBe(404);
      const patch = await tusRequest(app, 'PATCH', path, { 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' }, bytesOf(1000), key);
      expect(patch.status).toBe(404);
      expect(await patch.json()).toMatchObject({ success: false, error: 'NOT_FOUND' });
      expect((await tusRequest(app, 'DELETE', path, {}, undefined, key)).status).toBe(404);
    }
    expect((await tusRequest(app, 'HEAD', path, {}, undefined, null)).status).toBe(401);
    expect((await tusRequest(app, 'HEAD', path)).headers.get('upload-offset')).toBe('0');
    // A finished upload of this tenant is another tenant's 404 to download too.
    const done = await upload(bytesOf(500), clientOptions(app, app.adminKey, { metadata: { filename: 'x.png', filetype: 'image/png' } }));
    expect((await download(app, `/api/files/${fileIdOf(done)}`, {}, other.apiKey)).status).toBe(404);
    expect((await download(app, `/api/files/${fileIdOf(done)}`, {}, agent.apiKey)).status).toBe(200);
    // Ids that are no upload's.
    expect((await tusRequest(app, 'HEAD', '/api/files/tus/..%2F..%2Fetc%2Fpasswd')).status).toBe(404);
    expect((await tusRequest(app, 'HEAD', '/api/files/tus/not-an-id')).status).toBe(404);
  });

  it('keeps file names as sanitised metadata', async () => {
    const url = await upload(bytesOf(100), clientOptions(app, app.adminKey, { metadata: { filename: '../../etc/pass\u0000wd\n.txt', filetype: 'text/plain' } }));
    const file = await download(app, `/api/files/${fileIdOf(url)}`);
    expect(file.headers.get('content-disposition')).toBe(`attachment; filename="passwd.txt"; filename*=UTF-8''passwd.txt`);
    expect(existsSync(join(app.uploadDir, 'tus', fileIdOf(url)))).toBe(true);
  });

  it('expires unfinished uploads: the job removes their bytes and gives their reservation back', async () => {
    const before = await usedBytes(app, tenantId);
    const created = await createRaw(app, 10 * KiB);
    const path = created.headers.get('location')!;
    const fileId = fileIdOf(path);
    await tusRequest(app, 'PATCH', path, { 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' }, bytesOf(KiB));
    expect(await usedBytes(app, tenantId)).toBe(before + 10 * KiB);
    await app.testDb.db.query(`UPDATE files SET expires_at = now() - interval '1 second' WHERE id = $1`, [fileId]);
    expect((await tusRequest(app, 'HEAD', path)).status).toBe(410);
    const expired = await tusRequest(app, 'PATCH', path, { 'content-type': 'application/offset+octet-stream', 'upload-offset': String(KiB) }, bytesOf(KiB));
    expect(expired.status).toBe(410);
    expect(await expired.json()).toMatchObject({ success: false, error: 'UPLOAD_EXPIRED' });
    await app.built.services.uploadsExpiry.tick();
    expect((await tusRequest(app, 'HEAD', path)).status).toBe(404);
    expect(existsSync(join(app.uploadDir, 'tus', fileId))).toBe(false);
    expect(existsSync(join(app.uploadDir, 'tus', `${fileId}.json`))).toBe(false);
    expect(await usedBytes(app, tenantId)).toBe(before);
  });
});

describe.each(backends)('tus limits on %s', (backend) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(backend, { UPLOAD_MAX_BYTES: String(600 * KiB), STORAGE_QUOTA_BYTES: String(1000 * KiB) });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('refuses at creation what the limits refuse, in the envelope, and records nothing', async () => {
    const answers = [
      [await createRaw(app, 600 * KiB + 1), 413, 'PAYLOAD_TOO_LARGE'],
      [await createRaw(app, 10, { filename: 'a.exe', filetype: 'application/x-msdownload' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [await createRaw(app, 10, { filename: 'a' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [await tusRequest(app, 'POST', '/api/files/tus/', { 'upload-defer-length': '1' }), 400, 'BAD_REQUEST'],
      [await tusRequest(app, 'POST', '/api/files/tus/', {}), 400, 'BAD_REQUEST'],
      [await tusRequest(app, 'POST', '/api/files/tus/', { 'upload-length': '-5' }), 400, 'BAD_REQUEST'],
      [await fetch(`${app.url}/api/files/tus/`, { method: 'POST', headers: { 'x-api-key': app.adminKey, 'upload-length': '5' } }), 412, 'PRECONDITION_FAILED'],
    ] as const;
    for (const [res, status, error] of answers) {
      expect({ status: res.status, body: await res.json() }).toMatchObject({ status, body: { success: false, error } });
    }
    expect((await app.testDb.db.query('SELECT 1 FROM files')).rowCount).toBe(0);
    expect(readdirSync(join(app.uploadDir, 'tus'))).toEqual([]);
  });

  it('reserves the declared length against the quota at creation (413 QUOTA_EXCEEDED), shared with chunked uploads', async () => {
    expect((await createRaw(app, 500 * KiB)).status).toBe(201);
    const init = await app.api('POST', '/api/uploads/init', { body: { filename: 'a.txt', size: 400 * KiB, contentType: 'text/plain', sha256: 'a'.repeat(64) } });
    expect(init.status).toBe(201);
    const refused = await createRaw(app, 200 * KiB);
    expect(refused.status).toBe(413);
    expect(await refused.json()).toMatchObject({ success: false, error: 'QUOTA_EXCEEDED' });
    expect((await createRaw(app, 100 * KiB)).status).toBe(201);
    const res = await fetch(`${app.url}/api/files/tus/`, { method: 'OPTIONS' });
    expect(res.headers.get('tus-max-size')).toBe(String(600 * KiB));
  });
});
