import type { Delta, PushBody, PushResult } from '@fieldsync/protocol/sync';
import type { PushEngine } from './push.js';
import type { Heartbeat } from '@fieldsync/protocol/devices';
import type { Db } from '../db/db.js';
import { AppError } from '../errors.js';
import type { CollectionRegistry } from './collections.js';
import { pullChanges, resolveCollections } from './pull.js';

/** Who is pulling, as the sync core needs to know it (no transport types). */
export interface SyncCaller {
  tenantId: string;
  userId: string;
  agentCode?: string;
  deviceId?: string;
}

export interface DeviceRecorder {
  recordSync(
    who: { tenantId: string; deviceId: string; userId?: string; agentCode?: string },
    sync: { version: number; changes: number; ok: boolean },
    facts?: Heartbeat,
  ): void;
}

export interface SyncService {
  pull(caller: SyncCaller, req: { version: number; limit: number; collections?: string[] }, facts?: Heartbeat): Promise<Delta>;
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
}): SyncService {
  const service: SyncService = {
    async pull(caller, req, facts) {
      // Checked here for every transport: a version past 2^53 would lose precision or overflow bigint (a 500).
      if (!Number.isSafeInteger(req.version) || req.version < 0) {
        throw new AppError('VALIDATION_FAILED', 'version must be an integer from 0 to 2^53 - 1', [
          { field: 'version', message: 'must be an integer from 0 to 2^53 - 1' },
        ]);
      }
      const defs = resolveCollections(deps.registry, req.collections);
      const delta = await pullChanges(deps.db, defs, {
        tenantId: caller.tenantId,
        userId: caller.userId,
        since: req.version,
        limit: req.limit,
      });
      if (caller.deviceId) {
        deps.devices.recordSync(
          { tenantId: caller.tenantId, deviceId: caller.deviceId, userId: caller.userId, agentCode: caller.agentCode },
          { version: req.version, changes: delta.changes.length, ok: true },
          facts,
        );
      }
      return delta;
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
