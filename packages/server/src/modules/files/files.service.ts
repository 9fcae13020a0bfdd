import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { CHUNK_SIZE, type ChunkReceipt, type FileInfo, type FinalizedUpload, type UploadInit, type UploadStatus, type UploadTicket } from '@fieldsync/protocol/files';
import { pgErrorCode, PgCodes, type Db, type Queryable } from '../../db/db.js';
import { AppError, invalid, notFound } from '../../errors.js';
import { isAllowedType, normaliseContentType, sanitiseFilename, type ByteRange } from './files.metadata.js';
import * as repo from './files.repository.js';
import type { FileRow, SessionRow } from './files.repository.js';
import type { FileStorage } from './files.storage.js';

/** Who uploads or reads: every rule is per tenant, and uploads belong to their user. */
export interface Caller {
  tenantId: string;
  userId: string;
}

/**
 * A module's say on who may read a file (chat: a file attached to a conversation is for its
 * participants): `false` hides the file from the user, `true` grants it, `undefined` has no
 * opinion. A file is visible when some guard grants it or none hides it.
 */
export type AttachmentGuard = (tenantId: string, userId: string, fileId: string) => Promise<boolean | undefined>;

export interface FilesLimits {
  maxBytes: number;
  allowedTypes: readonly string[];
  quotaBytes: number;
  /** How long an unfinished upload lives. */
  ttlMs: number;
}

/** Refuses init bodies that would make more chunks than this (send larger chunks). */
export const MAX_CHUNKS = 10_000;
/** Rows the expiry sweep deletes per statement. */
const SWEEP_BATCH = 200;
/** A part file without a session (a crash, a chunk racing the sweep) older than this is removed. */
const ORPHAN_AGE_MS = 60 * 60 * 1000;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const fileUrl = (fileId: string) => `/api/files/${fileId}`;

export interface FilesService {
  /** Opens a chunked upload: validates the declaration and reserves its size against the quota. */
  initUpload(caller: Caller, input: UploadInit): Promise<UploadTicket>;
  uploadStatus(caller: Caller, uploadId: string): Promise<UploadStatus>;
  /**
   * Streams chunk `index` into the upload's part file at its offset while hashing it; records it
   * only when its SHA-256 is `sha256`. A chunk already recorded is not written again: a re-send
   * with the same checksum is acknowledged and changes nothing.
   */
  receiveChunk(caller: Caller, uploadId: string, index: number, sha256: string, body: Readable, contentLength?: number): Promise<ChunkReceipt>;
  /** Makes the file once every chunk is there and the whole SHA-256 matches (the part file, flushed and renamed); idempotent. */
  finalize(caller: Caller, uploadId: string): Promise<FinalizedUpload>;

  /** tus creation: validates and reserves like an init, and records the upload under its id. */
  createTusUpload(caller: Caller, upload: { id: string; size: number | undefined; filename?: string | null; contentType?: string | null }): Promise<void>;
  /** tus HEAD/PATCH/DELETE: the caller's upload, else a 404. */
  tusUpload(caller: Caller, id: string): Promise<FileRow>;
  /** The last tus byte arrived: the file is ready. */
  finishTusUpload(caller: Caller, id: string): Promise<void>;
  /** A tus upload was terminated: its row goes and its reservation comes back. */
  forgetTusUpload(caller: Caller, id: string): Promise<void>;

  /** A ready file `caller` may read (tenant, attachment guards), else a 404. */
  readable(caller: Caller, fileId: string): Promise<FileRow>;
  /** The bytes of a file, or of one range of them. */
  read(file: FileRow, range?: ByteRange): Readable;
  /** Lets a module hide files from users (chat: attachments of conversations they are not in). */
  addAttachmentGuard(guard: AttachmentGuard): void;
  /**
   * Throws a 400 naming `field` unless `fileId` is a ready file of the tenant (and visible to
   * `userId` when given): the check for references to files (contacts' `photoFileId`).
   */
  assertUsable(tenantId: string, fileId: string, opts?: { userId?: string; field?: string }): Promise<void>;
  /** The ready files among `fileIds`, for answers that embed them (chat attachments). */
  describe(tenantId: string, fileIds: string[]): Promise<FileInfo[]>;
  /** Which of `fileIds` are ready files of the tenant, read through `q` (a writer's transaction). */
  readyIds(q: Queryable, tenantId: string, fileIds: string[]): Promise<Set<string>>;

  /** Removes expired sessions and tus uploads with their bytes, and crash leftovers; counts. */
  removeExpired(): Promise<{ sessions: number; tusUploads: number; orphans: number }>;
}

export function createFilesService(deps: {
  db: Db;
  storage: FileStorage;
  /** Removes a tus upload's bytes (the tus store). */
  removeTusUpload: (id: string) => Promise<void>;
  limits: FilesLimits;
  now?: () => number;
}): FilesService {
  const { db, storage, limits } = deps;
  const now = deps.now ?? Date.now;
  const guards: AttachmentGuard[] = [];
  /** Chunks being written on this instance (`uploadId:index`): one writer per chunk. */
  const receiving = new Set<string>();
  /** Finalizes running on this instance, by upload. */
  const finalizing = new Map<string, Promise<FinalizedUpload>>();

  const quotaExceeded = () =>
    new AppError('QUOTA_EXCEEDED', `This upload would take the organisation past its storage quota of ${limits.quotaBytes} bytes`);

  /** The stored name and type of a declared file, or the 413/415 that refuses it. */
  const declared = (filename: string | null | undefined, contentType: string | null | undefined, size: number) => {
    if (size > limits.maxBytes) throw new AppError('PAYLOAD_TOO_LARGE', `Files may be at most ${limits.maxBytes} bytes; this one is ${size}`);
    const type = contentType ? normaliseContentType(contentType) : undefined;
    if (!type || !isAllowedType(type, limits.allowedTypes)) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Content type ${JSON.stringify(contentType ?? null)} is not accepted; allowed: ${limits.allowedTypes.join(', ')}`);
    }
    return { filename: sanitiseFilename(filename ?? ''), contentType: type };
  };

  /** The caller's session, unexpired, else a 404 (another user's or tenant's, or gone). */
  const liveSession = async <T extends SessionRow>(uploadId: string, find: () => Promise<T | undefined>): Promise<T> => {
    const session = UUID_RE.test(uploadId) ? await find() : undefined;
    if (!session || session.expiresAt.getTime() <= now()) throw notFound('Upload');
    return session;
  };
  const callersSession = (caller: Caller, uploadId: string) =>
    liveSession(uploadId, () => repo.findSession(db, caller.tenantId, caller.userId, uploadId));

  const chunkLength = (s: SessionRow, index: number) => (index < s.totalChunks - 1 ? s.chunkSize : s.size - s.chunkSize * (s.totalChunks - 1));

  const receipt = (s: SessionRow, received: number[]): ChunkReceipt => {
    const have = new Set(received);
    const missingChunks: number[] = [];
    for (let i = 0; i < s.totalChunks; i++) if (!have.has(i)) missingChunks.push(i);
    return { received: have.size, missingChunks };
  };

  const finalized = (fileId: string): FinalizedUpload => ({ fileId, url: fileUrl(fileId) });

  /** Gives up a session without a file: its rows, its reservation, its chunks. */
  const abandon = async (s: SessionRow) => {
    await db.transaction(async (tx) => {
      const size = await repo.deleteUnfinishedSession(tx, s.tenantId, s.id);
      if (size !== undefined) await repo.releaseStorage(tx, s.tenantId, size);
    });
    await storage.removeUpload(s.id);
  };

  /** Whether the guards let `userId` see the file (no guard: the tenant sees its files). */
  const visible = async (tenantId: string, userId: string, fileId: string) => {
    if (guards.length === 0) return true;
    const verdicts = await Promise.all(guards.map((guard) => guard(tenantId, userId, fileId)));
    return verdicts.includes(true) || !verdicts.includes(false);
  };

  /** Sums bytes by tenant (what an expiry sweep gives back). */
  const byTenant = (rows: { tenantId: string; size: number }[]) => {
    const sums = new Map<string, number>();
    for (const r of rows) sums.set(r.tenantId, (sums.get(r.tenantId) ?? 0) + r.size);
    return sums;
  };

  return {
    async initUpload(caller, input) {
      const { filename, contentType } = declared(input.filename, input.contentType, input.size);
      const chunkSize = input.chunkSize ?? CHUNK_SIZE.default;
      const totalChunks = Math.ceil(input.size / chunkSize);
      if (totalChunks > MAX_CHUNKS) {
        throw invalid('chunkSize', `makes ${totalChunks} chunks of this file, more than ${MAX_CHUNKS}: send larger chunks`);
      }
      const id = randomUUID();
      const expiresAt = new Date(now() + limits.ttlMs);
      await db.transaction(async (tx) => {
        if (!(await repo.reserveStorage(tx, caller.tenantId, input.size, limits.quotaBytes))) throw quotaExceeded();
        await repo.insertSession(tx, {
          id,
          tenantId: caller.tenantId,
          userId: caller.userId,
          filename,
          contentType,
          size: input.size,
          sha256: input.sha256,
          chunkSize,
          totalChunks,
          expiresAt,
        });
      });
      return { uploadId: id, chunkSize, totalChunks, expiresAt: expiresAt.toISOString() };
    },

    async uploadStatus(caller, uploadId) {
      const s = await callersSession(caller, uploadId);
      const { received, missingChunks } = receipt(s, await repo.receivedChunks(db, s.tenantId, s.id));
      return {
        uploadId: s.id,
        filename: s.filename,
        contentType: s.contentType,
        size: s.size,
        chunkSize: s.chunkSize,
        totalChunks: s.totalChunks,
        received,
        missingChunks,
        expiresAt: s.expiresAt.toISOString(),
        fileId: s.fileId,
        url: s.fileId ? fileUrl(s.fileId) : null,
      };
    },

    async receiveChunk(caller, uploadId, index, sha256, body, contentLength) {
      const s = await liveSession(uploadId, () => repo.findSessionChunk(db, caller.tenantId, caller.userId, uploadId, index));
      if (index >= s.totalChunks) throw invalid('index', `must be below ${s.totalChunks}, the number of chunks of this upload`);
      const expected = chunkLength(s, index);
      if (contentLength !== undefined && contentLength !== expected) {
        const message = `Chunk ${index} must be ${expected} bytes, not ${contentLength}`;
        if (contentLength > expected) throw new AppError('PAYLOAD_TOO_LARGE', message);
        throw new AppError('VALIDATION_FAILED', message, [{ field: 'body', message: `must be ${expected} bytes` }]);
      }
      // A stored chunk is never written again: a re-send is only hashed, to answer it.
      const stored = s.chunkSha ?? undefined;
      const key = `${s.id}:${index}`;
      if (stored === undefined && receiving.has(key)) {
        throw new AppError('CONFLICT', `Chunk ${index} is arriving in another request; send it again when that one has answered`);
      }
      if (stored === undefined) receiving.add(key);
      try {
        const actual = await storage.receiveChunk(s.id, index * s.chunkSize, body, expected, stored === undefined);
        if (actual !== sha256) {
          // Written in place but not recorded: still missing, overwritten by the next send.
          throw new AppError('CHECKSUM_MISMATCH', `Chunk ${index} has SHA-256 ${actual}, not ${sha256}: it was not kept; send it again`, [
            { field: 'X-Chunk-SHA256', message: 'does not match the body' },
          ]);
        }
        if (stored !== undefined) {
          if (stored !== sha256) throw new AppError('CONFLICT', `Chunk ${index} was already received with another checksum (${stored})`);
          return receipt(s, await repo.receivedChunks(db, s.tenantId, s.id));
        }
        return receipt(s, await repo.recordChunk(db, s.tenantId, s.id, index, sha256));
      } catch (error) {
        if (pgErrorCode(error) === PgCodes.foreignKeyViolation) {
          // The session expired and was swept while the chunk arrived: its bytes go too.
          await storage.removeUpload(s.id);
          throw notFound('Upload');
        }
        throw error;
      } finally {
        if (stored === undefined) receiving.delete(key);
      }
    },

    async finalize(caller, uploadId) {
      const s = await callersSession(caller, uploadId);
      if (s.fileId) return finalized(s.fileId);
      const { missingChunks } = receipt(s, await repo.receivedChunks(db, s.tenantId, s.id));
      if (missingChunks.length > 0) {
        throw new AppError('INCOMPLETE', `${missingChunks.length} of ${s.totalChunks} chunks have not arrived`, [
          { field: 'missingChunks', message: 'send these chunks, then finalize again', missingChunks },
        ]);
      }
      /** Another finalize (or the expiry sweep) got there first: its outcome is the answer. */
      const outcomeOfOther = async () => {
        const again = await repo.findSession(db, s.tenantId, caller.userId, s.id);
        if (again?.fileId) return finalized(again.fileId);
        throw notFound('Upload');
      };
      // One finalize of an upload at a time here; another instance's is settled by the database.
      const running = finalizing.get(s.id);
      if (running) {
        await running.catch(() => {});
        return outcomeOfOther();
      }
      const work = (async () => {
        let actual: string;
        try {
          actual = await storage.hashUpload(s.id);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return outcomeOfOther();
          throw error;
        }
        if (actual !== s.sha256) {
          await abandon(s);
          throw new AppError(
            'CHECKSUM_MISMATCH',
            `The assembled file has SHA-256 ${actual}, not the ${s.sha256} declared at init: no file was made and the upload was discarded`,
            [{ field: 'sha256', message: 'does not match the chunks sent' }],
          );
        }
        const fileId = randomUUID();
        const bound = await db.transaction(async (tx) => {
          // Locks the session row: a finalize on another instance waits, then finds it bound.
          if (!(await repo.bindSessionFile(tx, s.tenantId, s.id, fileId))) return false;
          // The session's reservation becomes the file's: usage does not change.
          await repo.insertFile(tx, {
            id: fileId,
            tenantId: s.tenantId,
            ownerId: caller.userId,
            protocol: 'chunked',
            status: 'ready',
            filename: s.filename,
            contentType: s.contentType,
            size: s.size,
            sha256: s.sha256,
            storageName: `blobs/${fileId}`,
          });
          // Flushed and in place before the row commits; a failure here rolls the row back.
          await storage.keepUpload(s.id, fileId);
          return true;
        });
        return bound ? finalized(fileId) : outcomeOfOther();
      })();
      finalizing.set(s.id, work);
      try {
        return await work;
      } finally {
        finalizing.delete(s.id);
      }
    },

    async createTusUpload(caller, upload) {
      if (upload.size === undefined) throw invalid('Upload-Length', 'is required (deferred lengths are not accepted)');
      const { filename, contentType } = declared(upload.filename, upload.contentType, upload.size);
      await db.transaction(async (tx) => {
        if (!(await repo.reserveStorage(tx, caller.tenantId, upload.size!, limits.quotaBytes))) throw quotaExceeded();
        await repo.insertFile(tx, {
          id: upload.id,
          tenantId: caller.tenantId,
          ownerId: caller.userId,
          protocol: 'tus',
          status: 'uploading',
          filename,
          contentType,
          size: upload.size!,
          sha256: null,
          storageName: `tus/${upload.id}`,
          expiresAt: new Date(now() + limits.ttlMs),
        });
      });
    },

    async tusUpload(caller, id) {
      const file = UUID_RE.test(id) ? await repo.findFile(db, caller.tenantId, id) : undefined;
      if (!file || file.protocol !== 'tus' || file.ownerId !== caller.userId) throw notFound('Upload');
      if (file.status === 'uploading' && file.expiresAt && file.expiresAt.getTime() <= now()) throw new AppError('UPLOAD_EXPIRED', 'This upload has expired');
      return file;
    },

    async finishTusUpload(caller, id) {
      const sha256 = await storage.hashFile(`tus/${id}`);
      if (!(await repo.markFileReady(db, caller.tenantId, id, sha256))) throw notFound('Upload');
    },

    async forgetTusUpload(caller, id) {
      await db.transaction(async (tx) => {
        const size = await repo.deleteUploadingFile(tx, caller.tenantId, id);
        if (size !== undefined) await repo.releaseStorage(tx, caller.tenantId, size);
      });
    },

    async readable(caller, fileId) {
      const file = UUID_RE.test(fileId) ? await repo.findFile(db, caller.tenantId, fileId) : undefined;
      if (!file || file.status !== 'ready' || !(await visible(caller.tenantId, caller.userId, fileId))) throw notFound('File');
      return file;
    },

    read(file, range) {
      return createReadStream(storage.pathOf(file.storageName), range ? { start: range.start, end: range.end } : {});
    },

    addAttachmentGuard(guard) {
      guards.push(guard);
    },

    async assertUsable(tenantId, fileId, opts = {}) {
      const file = UUID_RE.test(fileId) ? await repo.findFile(db, tenantId, fileId) : undefined;
      const usable = file?.status === 'ready' && (opts.userId === undefined || (await visible(tenantId, opts.userId, fileId)));
      if (!usable) throw invalid(opts.field ?? 'fileId', 'does not name an uploaded file of this organisation');
    },

    async readyIds(q, tenantId, fileIds) {
      const ids = fileIds.filter((id) => UUID_RE.test(id));
      return new Set(ids.length === 0 ? [] : (await repo.findReadyFiles(q, tenantId, ids)).map((f) => f.id));
    },

    async describe(tenantId, fileIds) {
      const ids = fileIds.filter((id) => UUID_RE.test(id));
      if (ids.length === 0) return [];
      const files = await repo.findReadyFiles(db, tenantId, ids);
      return files.map((f) => ({ fileId: f.id, filename: f.filename, contentType: f.contentType, size: f.size, url: fileUrl(f.id) }));
    },

    async removeExpired() {
      const at = new Date(now());
      let sessions = 0;
      for (;;) {
        const expired = await db.transaction(async (tx) => {
          const rows = await repo.deleteExpiredSessions(tx, at, SWEEP_BATCH);
          for (const [tenantId, bytes] of byTenant(rows.filter((r) => !r.fileId))) await repo.releaseStorage(tx, tenantId, bytes);
          return rows;
        });
        for (const row of expired) await storage.removeUpload(row.id);
        sessions += expired.length;
        if (expired.length < SWEEP_BATCH) break;
      }
      let tusUploads = 0;
      for (;;) {
        const expired = await db.transaction(async (tx) => {
          const rows = await repo.deleteExpiredUploads(tx, at, SWEEP_BATCH);
          for (const [tenantId, bytes] of byTenant(rows)) await repo.releaseStorage(tx, tenantId, bytes);
          return rows;
        });
        for (const row of expired) await deps.removeTusUpload(row.id).catch(() => {});
        tusUploads += expired.length;
        if (expired.length < SWEEP_BATCH) break;
      }
      // Part files whose session is gone (a chunk that arrived as its session was swept, a crash).
      const stale = await storage.staleUploads(Math.min(ORPHAN_AGE_MS, limits.ttlMs), now());
      const live = await repo.existingSessionIds(db, stale);
      const orphans = stale.filter((id) => !live.has(id));
      for (const id of orphans) await storage.removeUpload(id);
      return { sessions, tusUploads, orphans: orphans.length };
    },
  };
}
