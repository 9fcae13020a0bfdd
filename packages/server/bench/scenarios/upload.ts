import { readFileSync } from 'node:fs';
import { withWorkers } from '../lib/ipc.js';
import { round, summarize } from '../lib/stats.js';
import { metric, type Scenario } from '../lib/types.js';

const MiB = 2 ** 20;
/** The file: 100 MiB, the default UPLOAD_MAX_BYTES, in 1 MiB chunks. */
const FILE_BYTES = 100 * MiB;
const CHUNK_BYTES = MiB;
/** Chunks in flight, as a client on a good network would send them. */
const PARALLEL = 4;

/** The resident memory of process `pid` (Linux /proc), bytes; undefined elsewhere. */
function rssOf(pid: number): number | undefined {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS every `everyMs` until stopped; the highest seen. */
function rssPeak(pid: number, everyMs = 20) {
  let peak = rssOf(pid) ?? 0;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid) ?? 0)), everyMs);
  return () => {
    clearInterval(timer);
    return Math.max(peak, rssOf(pid) ?? 0);
  };
}

/**
 * A 100 MiB upload through the chunked API on loopback: init, 100 chunks of 1 MiB (4 in
 * flight, each hashed and written at its offset by the server as it streams in), finalize
 * (the whole file hashed by streaming, flushed to disk, renamed). Throughput is the file's bytes over the
 * time from init to the finalize's answer; the server's memory is read after a forced GC
 * before and after, and its RSS sampled during the upload for the peak. Limit: the same
 * bytes written to one file and hashed once, flushed to disk, without the server.
 * Needs no data set: runnable alone (`npm run bench -- --only upload-100mb`).
 */
export const upload: Scenario = {
  name: 'upload-100mb',
  title: 'a 100 MB upload in 1 MiB chunks on loopback',
  needsDataSet: false,
  budgetMs: ({ quick }) => (quick ? 120_000 : 300_000),
  async run(ctx) {
    const reps = ctx.quick ? 1 : 3;
    const before = await ctx.serverMemory();
    const stopSampling = rssPeak(ctx.server.pid);
    const runs = await ctx.serverPhase(() =>
      withWorkers('upload-load.ts', 1, ([w]) =>
        w.call<{ ms: number; finalizeMs: number; chunkMs: number[] }[]>(
          'uploadChunked',
          { url: ctx.server.url, apiKey: ctx.a.adminKey, bytes: FILE_BYTES, chunkSize: CHUNK_BYTES, parallel: PARALLEL, reps },
          240_000,
        ),
      ),
    );
    const peakRss = stopSampling();
    const after = await ctx.serverMemory();
    const limitRuns = await withWorkers('upload-load.ts', 1, ([w]) => w.call<number[]>('writeAndHash', { bytes: FILE_BYTES, chunkSize: CHUNK_BYTES, reps }, 240_000));

    // The best of the repetitions: the machine is shared, the best is the least disturbed.
    const best = runs.reduce((a, b) => (b.ms < a.ms ? b : a));
    const mbPerS = (ms: number) => round(FILE_BYTES / 1e6 / (ms / 1000));
    const limitWhat = 'the same bytes written to one file and hashed once, flushed, without the server';
    const chunks = summarize(runs.flatMap((r) => r.chunkMs));
    return {
      metrics: [
        metric({
          key: 'upload.throughput',
          label: `${FILE_BYTES / MiB} MiB upload in ${CHUNK_BYTES / MiB} MiB chunks, init to finalized`,
          unit: 'MB/s',
          value: mbPerS(best.ms),
          better: 'higher',
          target: { op: '>=', value: 100 },
          limit: mbPerS(Math.min(...limitRuns)),
          limitWhat,
        }),
        metric({ key: 'upload.finalize', label: 'finalize (hash, flush, rename)', unit: 'ms', value: round(best.finalizeMs), better: 'lower' }),
        metric({ key: 'upload.chunk.p95', label: 'chunk PUT p95', unit: 'ms', value: round(chunks.p95), better: 'lower' }),
        metric({
          key: 'upload.rss.peak',
          label: 'server RSS growth during the upload (peak - before)',
          unit: 'MB',
          value: round((peakRss - before.rss) / 1e6),
          better: 'lower',
        }),
        metric({
          key: 'upload.rss.after',
          label: 'server RSS growth after GC (after - before)',
          unit: 'MB',
          value: round((after.rss - before.rss) / 1e6),
          better: 'lower',
        }),
      ],
      details: {
        fileBytes: FILE_BYTES,
        chunkBytes: CHUNK_BYTES,
        parallel: PARALLEL,
        runsMs: runs.map((r) => round(r.ms)),
        limitRunsMs: limitRuns.map(round),
        rssBeforeMB: round(before.rss / 1e6),
        rssPeakMB: round(peakRss / 1e6),
        rssAfterMB: round(after.rss / 1e6),
      },
    };
  },
};
