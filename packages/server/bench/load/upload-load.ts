/** Upload load: a device sending one large file through the chunked API, and the same bytes written without the server. */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { HttpClient } from '../lib/http.js';
import { serve } from '../lib/ipc.js';
import { wallNow } from '../lib/stats.js';

/** The file every command sends: random bytes (incompressible), made once per process. */
let data: Buffer | undefined;
const fileOf = (bytes: number) => (data?.length === bytes ? data : (data = randomBytes(bytes)));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

serve({
  /**
   * Uploads `bytes` in `chunkSize` chunks with `parallel` chunks in flight, from init to the
   * finalize's answer, `reps` times. The client's hashes are computed before the clock starts:
   * what is timed is the server's work and the transfer.
   */
  async uploadChunked(arg: { url: string; apiKey: string; bytes: number; chunkSize: number; parallel: number; reps: number }) {
    const file = fileOf(arg.bytes);
    const whole = sha256(file);
    const chunks: Buffer[] = [];
    for (let at = 0; at < file.length; at += arg.chunkSize) chunks.push(file.subarray(at, at + arg.chunkSize));
    const shas = chunks.map(sha256);
    const clients = Array.from({ length: arg.parallel }, () => new HttpClient(arg.url, { 'x-api-key': arg.apiKey }));
    const runs: { ms: number; finalizeMs: number; chunkMs: number[] }[] = [];
    for (let rep = 0; rep < arg.reps; rep++) {
      const t0 = wallNow();
      const { data: ticket } = await clients[0].json('POST', '/api/uploads/init', {
        filename: `bench-${rep}.mp4`,
        size: file.length,
        contentType: 'video/mp4',
        sha256: whole,
        chunkSize: arg.chunkSize,
      });
      if (ticket.totalChunks !== chunks.length) throw new Error(`init: ${ticket.totalChunks} chunks, expected ${chunks.length}`);
      let next = 0;
      const chunkMs: number[] = [];
      await Promise.all(
        clients.map(async (client) => {
          for (let i = next++; i < chunks.length; i = next++) {
            const c0 = wallNow();
            const answer = await client.request('PUT', `/api/uploads/${ticket.uploadId}/chunks/${i}`, chunks[i], {
              'content-type': 'application/octet-stream',
              'x-chunk-sha256': shas[i],
            });
            if (answer.status !== 200) throw new Error(`chunk ${i}: ${answer.status} ${answer.text.slice(0, 300)}`);
            chunkMs.push(wallNow() - c0);
          }
        }),
      );
      const f0 = wallNow();
      const done = await clients[0].request('POST', `/api/uploads/${ticket.uploadId}/finalize`, undefined, {}, 120_000);
      if (done.status !== 200) throw new Error(`finalize: ${done.status} ${done.text.slice(0, 300)}`);
      const end = wallNow();
      runs.push({ ms: end - t0, finalizeMs: end - f0, chunkMs });
    }
    for (const client of clients) client.close();
    return runs;
  },

  /**
   * The physical limit: the same bytes, in the same chunks, written to one file and hashed
   * (SHA-256, once) without the server, then flushed to disk as the server flushes a file.
   */
  async writeAndHash(arg: { bytes: number; chunkSize: number; reps: number }) {
    const file = fileOf(arg.bytes);
    const dir = await mkdtemp(join(tmpdir(), 'fieldsync-bench-upload-'));
    const runs: number[] = [];
    try {
      for (let rep = 0; rep < arg.reps; rep++) {
        const path = join(dir, `limit-${rep}`);
        const t0 = wallNow();
        const hash = createHash('sha256');
        const out = createWriteStream(path);
        for (let at = 0; at < file.length; at += arg.chunkSize) {
          const chunk = file.subarray(at, at + arg.chunkSize);
          hash.update(chunk);
          if (!out.write(chunk)) await once(out, 'drain');
        }
        out.end();
        await once(out, 'finish');
        const handle = await open(path, 'r');
        await handle.sync();
        await handle.close();
        hash.digest('hex');
        runs.push(wallNow() - t0);
        await rm(path, { force: true });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return runs;
  },
});
