import { Type, type Static } from 'typebox';
import { Text } from './envelope.js';

/** Chunk sizes of the chunked upload API: 1 MiB unless asked, 64 KiB to 16 MiB. */
export const CHUNK_SIZE = { default: 1024 * 1024, min: 64 * 1024, max: 16 * 1024 * 1024 } as const;

/** A SHA-256 digest in lower-case hex. */
export const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256, lower-case hex' });

/** `POST /api/uploads/init`: what the client is about to send. */
export const UploadInit = Type.Object(
  {
    filename: Text(1024, 1),
    size: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'bytes' }),
    contentType: Type.String({ minLength: 3, maxLength: 255 }),
    sha256: Sha256Hex,
    chunkSize: Type.Optional(Type.Integer({ minimum: CHUNK_SIZE.min, maximum: CHUNK_SIZE.max })),
  },
  { additionalProperties: false },
);
export type UploadInit = Static<typeof UploadInit>;

/** The answer to an init: where and how to send the chunks. */
export const UploadTicket = Type.Object({
  uploadId: Type.String(),
  chunkSize: Type.Integer(),
  totalChunks: Type.Integer(),
  expiresAt: Type.String({ format: 'date-time' }),
});
export type UploadTicket = Static<typeof UploadTicket>;

/** What has arrived of an upload: the answer to every chunk. */
export const ChunkReceipt = Type.Object({
  received: Type.Integer({ description: 'chunks stored' }),
  missingChunks: Type.Array(Type.Integer(), { description: 'indexes still to send' }),
});
export type ChunkReceipt = Static<typeof ChunkReceipt>;

/** `GET /api/uploads/:uploadId`. */
export const UploadStatus = Type.Object({
  uploadId: Type.String(),
  filename: Type.String(),
  contentType: Type.String(),
  size: Type.Integer(),
  chunkSize: Type.Integer(),
  totalChunks: Type.Integer(),
  received: Type.Integer(),
  missingChunks: Type.Array(Type.Integer()),
  expiresAt: Type.String({ format: 'date-time' }),
  /** Set once finalized. */
  fileId: Type.Union([Type.String(), Type.Null()]),
  url: Type.Union([Type.String(), Type.Null()]),
});
export type UploadStatus = Static<typeof UploadStatus>;

/** The file an upload became; `url` is `GET /api/files/:fileId`. */
export const FinalizedUpload = Type.Object({
  fileId: Type.String(),
  url: Type.String(),
});
export type FinalizedUpload = Static<typeof FinalizedUpload>;

/** A stored file as other modules describe it (chat attachments, contact photos). */
export const FileInfo = Type.Object({
  fileId: Type.String(),
  filename: Type.String(),
  contentType: Type.String(),
  size: Type.Integer(),
  url: Type.String(),
});
export type FileInfo = Static<typeof FileInfo>;
