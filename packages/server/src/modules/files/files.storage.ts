import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../../errors.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Where file bytes live, under one root (UPLOAD_DIR), always by generated names:
 *
 * - `chunks/<uploadId>/<index>`: the chunks of a chunked upload, each written to a temporary
 *   name while it is hashed and renamed into place only when its checksum matched;
 * - `blobs/<fileId>`: finished chunked uploads, assembled from the chunks in order by streaming;
 * - `tus/<fileId>` (+ `.json`): tus uploads, written by @tus/file-store at their offsets.
 *
 * Nothing here knows the database; the files service decides what is kept.
 */
export interface FileStorage {
  readonly root: string;
  /** The tus store's folder. */
  readonly tusDir: string;
  /** The absolute path of a stored name; throws for a name outside the root. */
  pathOf(storageName: string): string;
  /**
   * Streams one chunk's bytes to a temporary file while hashing them; refuses a body of
   * another length than `expectedBytes`. The caller keeps or discards the temporary file.
   */
  writeChunk(uploadId: string, index: number, body: Readable, expectedBytes: number): Promise<{ sha256: string; temp: string }>;
  /** Moves a verified chunk into place (atomically replacing an identical one). */
  keepChunk(temp: string, uploadId: string, index: number): Promise<void>;
  discard(path: string): Promise<void>;
  /**
   * Streams chunks 0..total-1 into one new file while hashing it, and flushes it to disk.
   * Returns its digest and its temporary path, to keep with `keepBlob` or discard.
   */
  assemble(uploadId: string, totalChunks: number, fileId: string): Promise<{ sha256: string; temp: string }>;
  /** Moves an assembled file to its final name; returns that storage name. */
  keepBlob(temp: string, fileId: string): Promise<string>;
  removeChunks(uploadId: string): Promise<void>;
  /** The SHA-256 of a stored file, read by streaming. */
  hashFile(storageName: string): Promise<string>;
  /** Chunk folders and partial blobs older than `olderThanMs` (crash leftovers to check). */
  staleEntries(olderThanMs: number, now: number): Promise<{ chunkDirs: string[]; partialBlobs: string[] }>;
}

export async function createFileStorage(rootDir: string): Promise<FileStorage> {
  const root = resolve(rootDir);
  const chunksDir = join(root, 'chunks');
  const blobsDir = join(root, 'blobs');
  const tusDir = join(root, 'tus');
  await Promise.all([chunksDir, blobsDir, tusDir].map((dir) => mkdir(dir, { recursive: true })));

  const chunkDir = (uploadId: string) => {
    // Ids come from the database, not from clients, but a path is only ever built from a UUID.
    if (!UUID_RE.test(uploadId)) throw new Error(`not an upload id: ${uploadId}`);
    return join(chunksDir, uploadId);
  };
  const discard = (path: string) => rm(path, { force: true });
  const pathOf = (storageName: string) => {
    const path = resolve(root, storageName);
    if (!path.startsWith(root + sep)) throw new Error(`storage name outside the upload folder: ${storageName}`);
    return path;
  };

  return {
    root,
    tusDir,
    pathOf,

    async writeChunk(uploadId, index, body, expectedBytes) {
      const dir = chunkDir(uploadId);
      await mkdir(dir, { recursive: true });
      const temp = join(dir, `${index}.${randomBytes(6).toString('hex')}.tmp`);
      const hash = createHash('sha256');
      let bytes = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          bytes += chunk.length;
          if (bytes > expectedBytes) return done(new AppError('PAYLOAD_TOO_LARGE', `Chunk ${index} must be ${expectedBytes} bytes; more arrived`));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      try {
        await pipeline(body, meter, createWriteStream(temp, { flags: 'wx' }));
      } catch (error) {
        await discard(temp);
        throw error;
      }
      if (bytes !== expectedBytes) {
        await discard(temp);
        throw new AppError('VALIDATION_FAILED', `Chunk ${index} must be ${expectedBytes} bytes, not ${bytes}`, [
          { field: 'body', message: `must be ${expectedBytes} bytes` },
        ]);
      }
      return { sha256: hash.digest('hex'), temp };
    },

    async keepChunk(temp, uploadId, index) {
      await rename(temp, join(chunkDir(uploadId), String(index)));
    },

    discard,

    async assemble(uploadId, totalChunks, fileId) {
      const dir = chunkDir(uploadId);
      const temp = join(blobsDir, `${fileId}.partial`);
      const hash = createHash('sha256');
      async function* chunks() {
        for (let index = 0; index < totalChunks; index++) {
          for await (const buffer of createReadStream(join(dir, String(index)), { highWaterMark: 1 << 20 })) {
            hash.update(buffer as Buffer);
            yield buffer as Buffer;
          }
        }
      }
      try {
        await pipeline(chunks, createWriteStream(temp, { flags: 'wx' }));
        // The file is acknowledged once its row commits: its bytes must be on disk by then.
        const handle = await open(temp, 'r');
        await handle.sync().finally(() => handle.close());
      } catch (error) {
        await discard(temp);
        throw error;
      }
      return { sha256: hash.digest('hex'), temp };
    },

    async keepBlob(temp, fileId) {
      const name = `blobs/${fileId}`;
      await rename(temp, join(root, name));
      return name;
    },

    removeChunks: (uploadId) => rm(chunkDir(uploadId), { recursive: true, force: true }),

    async hashFile(storageName) {
      const hash = createHash('sha256');
      await pipeline(createReadStream(pathOf(storageName), { highWaterMark: 1 << 20 }), hash);
      return hash.digest('hex');
    },

    async staleEntries(olderThanMs, now) {
      const old = async (path: string) => {
        const info = await stat(path).catch(() => undefined);
        return info !== undefined && now - info.mtimeMs > olderThanMs;
      };
      const chunkDirs: string[] = [];
      for (const name of await readdir(chunksDir)) {
        if (UUID_RE.test(name) && (await old(join(chunksDir, name)))) chunkDirs.push(name);
      }
      const partialBlobs: string[] = [];
      for (const name of await readdir(blobsDir)) {
        if (name.endsWith('.partial') && (await old(join(blobsDir, name)))) partialBlobs.push(relative(root, join(blobsDir, name)));
      }
      return { chunkDirs, partialBlobs };
    },
  };
}
