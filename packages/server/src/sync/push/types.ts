import type { ChangeErrorCode } from '@fieldsync/protocol/errors';
import type { ConflictReport, PushAck, PushChange } from '@fieldsync/protocol/sync';
import type { Queryable } from '../../db/db.js';
import type { CollectionDef, WriteDef } from '../collections.js';

/** Per-change error codes: the catalogue's codes that may appear in an ack (the same as HTTP's). */
export type { ChangeErrorCode };

/** A change's rejection, thrown while deciding it and turned into its ack. */
export class ChangeError extends Error {
  constructor(
    readonly code: ChangeErrorCode,
    message: string,
    /** For REST answers: field details (the existing record of a taken unique value, the current version). */
    readonly details?: Record<string, unknown>[],
  ) {
    super(message);
  }
}

/** Who writes a batch. */
export interface PushCaller {
  tenantId: string;
  /** The writing user; none for the server's own writes (an import job). */
  userId?: string;
  agentCode?: string;
  /** The writing device; none for a REST write without X-Device-Id (then no local ids or receipts). */
  deviceId?: string;
  /** The writing socket, when the batch came over one (events may skip just that socket). */
  socketId?: string;
}

/** The result of one change: what the ack and the conflict report say. */
export interface ChangeResult {
  ack: PushAck & { code?: ChangeErrorCode };
  conflict?: ConflictReport;
  /** A rejection's field details, for REST answers (not kept in receipts). */
  details?: Record<string, unknown>[];
}

export interface PushOptions {
  /** Keep receipts so a re-sent change gets its original result (devices); REST does not. */
  receipts?: boolean;
  /** REST optimistic concurrency: the record must be at this version. */
  expectedVersion?: number;
  /** Conflict resolution writes as the given outcome, whatever the policy. */
  force?: boolean;
  /** The receipt time (ms); now by default. */
  now?: number;
  /** Write a new version even when an update changes nothing (a resolution that keeps the server's state). */
  touch?: boolean;
  /** Runs first inside the write transaction; throwing aborts the batch. */
  within?: (tx: Queryable) => Promise<void>;
  /** All or nothing: a rejected change throws its error and rolls the whole batch back (`within` included). */
  allOrNothing?: boolean;
  /** Where REST answers 409 for a taken unique value, the existing record's id goes in the error details. */
  uniqueDetails?: boolean;
}

export type WritableDef = CollectionDef & { write: WriteDef };

/** A change that passed the per-change checks, with everything the engine needs. */
export interface Parsed {
  index: number;
  raw: PushChange;
  def: WritableDef;
  op: 'create' | 'update' | 'delete';
  /** Its identity (receipts): device + changeId, or device + record + operation + timestamp. */
  key: string;
  /** Its time (ms), clamped to the receipt time plus the allowed skew. */
  at: number;
  fields: Record<string, unknown>;
  /** Referenced local ids: field -> local id. */
  localRefs: Record<string, string>;
}

/** Either a parsed change or its rejection. */
export type ParseResult = Parsed | ChangeResult;

export const isRejected = (p: ParseResult): p is ChangeResult => 'ack' in p;

/** What the engine holds in memory of one record during a push. */
export interface RecordState {
  def: WritableDef;
  id: string;
  data: Record<string, unknown>;
  version: number;
  isDeleted: boolean;
  exists: boolean;
  /** Known edits with their versions and devices (audit history plus this batch). */
  edits: { version: number; fields: string[]; at: number; device: string | null }[];
  dirty: boolean;
}

export const stateKey = (collection: string, id: string) => `${collection}:${id}`;
