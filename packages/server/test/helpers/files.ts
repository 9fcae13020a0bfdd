import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { ApiResponse, TestApp } from './test-app.js';

export const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** `n` random bytes. */
export const bytesOf = (n: number) => randomBytes(n);

/** The slices of `data` in chunks of `chunkSize`. */
export function chunksOf(data: Buffer, chunkSize: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += chunkSize) out.push(data.subarray(at, at + chunkSize));
  return out;
}

/** PUT one chunk as raw bytes; `sha` defaults to the bytes' own SHA-256. */
export function putChunk(
  app: TestApp,
  uploadId: string,
  index: number | string,
  bytes: Buffer,
  opts: { sha?: string | null; key?: string | null; contentType?: string | null } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = {};
  if (opts.contentType !== null) headers['content-type'] = opts.contentType ?? 'application/octet-stream';
  if (opts.sha !== null) headers['x-chunk-sha256'] = opts.sha ?? sha256(bytes);
  return app.api('PUT', `/api/uploads/${uploadId}/chunks/${index}`, { raw: bytes, headers, key: opts.key });
}

/** Uploads `data` through the chunked API (init, every chunk, finalize); the finalize answer's data. */
export async function uploadChunked(
  app: TestApp,
  data: Buffer,
  opts: { filename?: string; contentType?: string; chunkSize?: number; key?: string } = {},
): Promise<{ fileId: string; url: string; uploadId: string }> {
  const init = await app.api('POST', '/api/uploads/init', {
    key: opts.key,
    body: {
      filename: opts.filename ?? 'report.pdf',
      size: data.length,
      contentType: opts.contentType ?? 'application/pdf',
      sha256: sha256(data),
      ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : {}),
    },
  });
  if (init.status !== 201) throw new Error(`init: ${init.status} ${init.text}`);
  const { uploadId, chunkSize } = init.body.data;
  const chunks = chunksOf(data, chunkSize);
  for (let i = 0; i < chunks.length; i++) {
    const res = await putChunk(app, uploadId, i, chunks[i], { key: opts.key });
    if (res.status !== 200) throw new Error(`chunk ${i}: ${res.status} ${res.text}`);
  }
  const done = await app.api('POST', `/api/uploads/${uploadId}/finalize`, { key: opts.key });
  if (done.status !== 200) throw new Error(`finalize: ${done.status} ${done.text}`);
  return { ...done.body.data, uploadId };
}

/** GET a URL of the app as bytes. */
export async function download(app: TestApp, path: string, headers: Record<string, string> = {}, key: string | null = app.adminKey) {
  const res = await fetch(app.url + path, { headers: { ...(key ? { 'x-api-key': key } : {}), ...headers } });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** Every file under `dir`, as paths relative to it. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path));
    }
  };
  walk(dir);
  return out.sort();
}

/** The tenant's storage in use, as the quota counts it. */
export async function usedBytes(app: TestApp, tenantId: string): Promise<number> {
  const { rows } = await app.testDb.db.query<{ used: number }>('SELECT used_bytes AS used FROM storage_usage WHERE tenant_id = $1', [tenantId]);
  return rows[0]?.used ?? 0;
}

export async function defaultTenantId(app: TestApp): Promise<string> {
  const { rows } = await app.testDb.db.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'default'");
  return rows[0].id;
}

/** A second tenant with its own admin key. */
export async function createTenant(app: TestApp, slug: string): Promise<{ tenantId: string; apiKey: string }> {
  const res = await app.api('POST', '/api/tenants', { body: { name: `Tenant ${slug}`, slug } });
  if (res.status !== 201) throw new Error(`tenant: ${res.status} ${res.text}`);
  return { tenantId: res.body.data.tenant.id, apiKey: res.body.data.apiKey };
}
