import type { Delta, PushBody, PushResult } from '@fieldsync/protocol/sync';
import type { PushEngine } from './push.js';
import type { Heartbeat } from '@fieldsync/protocol/devices';
import type { Db } from '../db/db.js';
import { AppError } from '../errors.js';
import type { CollectionRegistry } from './collections.js';
import type { PageCache } from './page-cache.js';
import { isScoped } from './scopes.js';
import { emptyPage, pullPage, resolveCollections, toDelta, type CollectionMarks, type PulledPage } from './pull.js';

/** Who is pulling, as the sync core needs to know it (no transport types). */
export interface SyncCaller {
  tenantId: string;
  userId: string;
  agentCode?: string;
  deviceId?: string;
}

export interface DeviceRecorder {
  /** Throws 403 when the device id belongs to another user of the tenant. */
  claim(tenantId: string, deviceId: string, userId: string): Promise<void>;
  recordSync(
    who: { tenantId: string; deviceId: string; userId?: string; agentCode?: string },
    sync: { version: number; changes: number; ok: boolean },
    facts?: Heartbeat,
  ): void;
}

export interface PullQuery {
  version: number;
  limit: number;
  collections?: string[];
}

export interface SyncService {
  pull(caller: SyncCaller, req: PullQuery, facts?: Heartbeat): Promise<Delta>;
  /** `pull` with the changes still JSON text, for an answer that splices them in (HTTP). */
  pullPage(caller: SyncCaller, req: PullQuery, facts?: Heartbeat): Promise<PulledPage>;
  /** Applies a device's batch (POST /api/sync, `sync:push`) and answers what changed since its checkpoint. */
  push(caller: SyncCaller & { agentCode: string }, body: PushBody, facts?: Heartbeat): Promise<PushResult>;
}

/** How many server updates a push answer carries at most; `hasMore` says to keep pulling. */
export const PUSH_SERVER_UPDATES_LIMIT = 1000;

/** The read half of sync: delta pulls and the device checkpoints they record. */
export function createSyncService(deps: {
  db: Db;
  registry: CollectionRegistry;
  devices: DeviceRecorder & { recordSeen(who: { tenantId: string; deviceId: string; userId?: string; agentCode?: string }, facts: Heartbeat): void };
  push: PushEngine;
  /** Pages shared by devices at the same checkpoint; none: every pull runs the statement. */
  pageCache?: PageCache;
  /**
   * A streaming replica for pulls (DATABASE_READ_URL). It replays commits in order, so it holds
   * a prefix of every tenant's versions and a pull there is one consistent snapshot; a replica
   * behind the device's checkpoint would hold it back, so the primary answers that pull.
   */
  readDb?: Db;
}): SyncService {
  const { db, pageCache } = deps;
  /** The tenant's latest committed version: one indexed row, so an up-to-date device costs no pull statement. */
  const latestVersionOf = async (from: Db, tenantId: string): Promise<number> => {
    const { rows } = await from.query<{ v: number }>('SELECT current_version AS v FROM tenant_versions WHERE tenant_id = $1', [tenantId], {
      prepare: 'tenant-latest-version',
    });
    if (rows.length === 0) throw new AppError('NOT_FOUND', 'Tenant not found');
    return rows[0].v;
  };

  /** The latest version this instance has read per tenant: a hint for which way to answer, never the answer. */
  const seenLatest = new Map<string, number>();
  /** Each tenant's collection marks as a pull last read them: which branches the next pull runs first (`pullPage`). */
  const marks = new Map<string, CollectionMarks>();
  const noteLatest = (tenantId: string, version: number) => {
    if (version > (seenLatest.get(tenantId) ?? -1)) seenLatest.set(tenantId, version);
  };

  const service: SyncService = {
    async pull(caller, req, facts) {
      return toDelta(await service.pullPage(caller, req, facts));
    },
    async pullPage(caller, req, facts) {
      // Checked here for every transport: a version past 2^53 would lose precision or overflow bigint (a 500).
      if (!Number.isSafeInteger(req.version) || req.version < 0) {
        throw new AppError('VALIDATION_FAILED', 'version must be an integer from 0 to 2^53 - 1', [
          { field: 'version', message: 'must be an integer from 0 to 2^53 - 1' },
        ]);
      }
      const defs = resolveCollections(deps.registry, req.collections);
      if (caller.deviceId) await deps.devices.claim(caller.tenantId, caller.deviceId, caller.userId);
      // Every version <= latest is committed (writers commit in version order), so the page of
      // (since, limit) at `latest` is fixed: nothing to read at or past it, and a cached page
      // read at the same latest version is exactly what the statement would answer now. The
      // version costs a round trip, so it is read first only when it can save the statement:
      // a device that may be up to date, or a page that may be cached. A device behind the
      // latest version this instance has seen goes straight to the statement.
      const scoped = defs.some(isScoped);
      const key = pageCache ? `${caller.tenantId}|${defs.map((d) => d.name).join(',')}|${scoped ? caller.userId : ''}|${req.version}|${req.limit}` : '';
      const seen = seenLatest.get(caller.tenantId);
      const query = { tenantId: caller.tenantId, userId: caller.userId, since: req.version, limit: req.limit };
      let source = deps.readDb ?? db;
      let page: PulledPage | undefined;
      if (seen === undefined || req.version >= seen || pageCache?.has(key)) {
        let latest = await latestVersionOf(source, caller.tenantId);
        if (source !== db && latest < req.version) {
          // The replica has not replayed what this device already has: the primary answers.
          source = db;
          latest = await latestVersionOf(db, caller.tenantId);
        }
        noteLatest(caller.tenantId, latest);
        if (req.version >= latest) page = emptyPage(latest, req.version);
        else page = pageCache?.get(key, latest);
      }
      if (!page) {
        page = await pullPage(source, defs, query, marks);
        if (source !== db && page.latestVersion < req.version) page = await pullPage(db, defs, query, marks);
        noteLatest(caller.tenantId, page.latestVersion);
        pageCache?.offer(key, page);
      }
      if (caller.deviceId) {
        deps.devices.recordSync(
          { tenantId: caller.tenantId, deviceId: caller.deviceId, userId: caller.userId, agentCode: caller.agentCode },
          { version: page.nextVersion, changes: page.count, ok: true },
          facts,
        );
      }
      return page;
    },
    async push(caller, body, facts) {
      const deviceId = caller.deviceId ?? body.deviceId;
      if (caller.deviceId && caller.deviceId !== body.deviceId) {
        throw new AppError('VALIDATION_FAILED', 'deviceId differs from the X-Device-Id of the request', [{ field: 'deviceId', message: 'mismatch' }]);
      }
      // Checked before the changes apply: the pull after them would refuse it, a 400 after a commit.
      if (body.lastSyncVersion !== undefined && !Number.isSafeInteger(body.lastSyncVersion)) {
        throw new AppError('VALIDATION_FAILED', 'lastSyncVersion must be an integer from 0 to 2^53 - 1', [
          { field: 'lastSyncVersion', message: 'must be an integer from 0 to 2^53 - 1' },
        ]);
      }
      await deps.devices.claim(caller.tenantId, deviceId, caller.userId);
      const outcome = await deps.push.apply({ tenantId: caller.tenantId, userId: caller.userId, agentCode: caller.agentCode, deviceId }, body.changes);
      const acknowledged = outcome.results.map((r) => r.ack);
      const conflicts = outcome.results.flatMap((r) => (r.conflict ? [r.conflict] : []));
      const who = { tenantId: caller.tenantId, deviceId, userId: caller.userId, agentCode: caller.agentCode };
      const syncTimestamp = new Date().toISOString();
      if (body.lastSyncVersion === undefined) {
        deps.devices.recordSeen(who, facts ?? {});
        return { acknowledged, conflicts, serverUpdates: {}, hasMore: true, syncVersion: 0, syncTimestamp };
      }
      const delta = await service.pull({ ...caller, deviceId }, { version: body.lastSyncVersion, limit: PUSH_SERVER_UPDATES_LIMIT }, facts);
      const serverUpdates: Record<string, Record<string, unknown>[]> = {};
      for (const change of delta.changes) (serverUpdates[change.collection] ??= []).push(change.data);
      return { acknowledged, conflicts, serverUpdates, hasMore: delta.hasMore, syncVersion: delta.nextVersion, syncTimestamp };
    },
  };
  return service;
}
