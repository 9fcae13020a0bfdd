import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../../errors.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Where file bytes live, under one root (UPLOAD_DIR), always by generated names:
 *
 * - `chunks/<uploadId>.part`: a chunked upload's bytes, each chunk written at its offset as it
 *   streams in (hashed on the way); the database records which chunks were verified;
 * - `blobs/<fileId>`: finished chunked uploads: the part file, flushed and renamed at finalize
 *   (no copy);
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
   * Streams one chunk's bytes while hashing them, into the upload's part file at `offset` when
   * `write` (else only hashed: a re-sent chunk never touches stored bytes); refuses a body of
   * another length than `expectedBytes`. Returns the SHA-256 of what arrived.
   */
  receiveChunk(uploadId: string, offset: number, body: Readable, expectedBytes: number, write: boolean): Promise<string>;
  /** The SHA-256 of an upload's part file, read by streaming. */
  hashUpload(uploadId: string): Promise<string>;
  /** Flushes an upload's part file to disk and moves it to its file name; returns that storage name. */
  keepUpload(uploadId: string, fileId: string): Promise<string>;
  /** Removes an upload's part file. */
  removeUpload(uploadId: string): Promise<void>;
  discard(path: string): Promise<void>;
  /** The SHA-256 of a stored file, read by streaming. */
  hashFile(storageName: string): Promise<string>;
  /** Ids of part files untouched for `olderThanMs` (crash leftovers to check against the sessions). */
  staleUploads(olderThanMs: number, now: number): Promise<string[]>;
}

export async function createFileStorage(rootDir: string): Promise<FileStorage> {
  const root = resolve(rootDir);
  const chunksDir = join(root, 'chunks');
  const blobsDir = join(root, 'blobs');
  const tusDir = join(root, 'tus');
  await Promise.all([chunksDir, blobsDir, tusDir].map((dir) => mkdir(dir, { recursive: true })));

  const partOf = (uploadId: string) => {
    // Ids come from the database, not from clients, but a path is only ever built from a UUID.
    if (!UUID_RE.test(uploadId)) throw new Error(`not an upload id: ${uploadId}`);
    return join(chunksDir, `${uploadId}.part`);
  };
  const discard = (path: string) => rm(path, { force: true });
  const pathOf = (storageName: string) => {
    const path = resolve(root, storageName);
    if (!path.startsWith(root + sep)) throw new Error(`storage name outside the upload folder: ${storageName}`);
    return path;
  };
  const hashOf = async (path: string) => {
    const hash = createHash('sha256');
    await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
    return hash.digest('hex');
  };

  return {
    root,
    tusDir,
    pathOf,

    async receiveChunk(uploadId, offset, body, expectedBytes, write) {
      const hash = createHash('sha256');
      let bytes = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          bytes += chunk.length;
          if (bytes > expectedBytes) return done(new AppError('PAYLOAD_TOO_LARGE', `This chunk must be ${expectedBytes} bytes; more arrived`));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      let sink: Writable;
      if (write) {
        // Created by the first chunk, never truncated (other chunks may be in it), written at offsets.
        const handle = await open(partOf(uploadId), constants.O_RDWR | constants.O_CREAT);
        sink = handle.createWriteStream({ start: offset });
      } else {
        sink = new Writable({ write: (_chunk, _encoding, done) => done() });
      }
      await pipeline(body, meter, sink);
      if (bytes !== expectedBytes) {
        throw new AppError('VALIDATION_FAILED', `This chunk must be ${expectedBytes} bytes, not ${bytes}`, [
          { field: 'body', message: `must be ${expectedBytes} bytes` },
        ]);
      }
      return hash.digest('hex');
    },

    hashUpload: (uploadId) => hashOf(partOf(uploadId)),

    async keepUpload(uploadId, fileId) {
      const part = partOf(uploadId);
      // The file is acknowledged once its row commits: its bytes must be on disk by then.
      const handle = await open(part, 'r');
      await handle.sync().finally(() => handle.close());
      const name = `blobs/${fileId}`;
      await rename(part, join(root, name));
      return name;
    },

    removeUpload: (uploadId) => discard(partOf(uploadId)),

    discard,

    hashFile: (storageName) => hashOf(pathOf(storageName)),

    async staleUploads(olderThanMs, now) {
      const stale: string[] = [];
      for (const name of await readdir(chunksDir)) {
        const id = name.replace(/\.part$/, '');
        if (!UUID_RE.test(id) || name === id) continue;
        const info = await stat(join(chunksDir, name)).catch(() => undefined);
        if (info !== undefined && now - info.mtimeMs > olderThanMs) stale.push(id);
      }
      return stale;
    },
  };
}
