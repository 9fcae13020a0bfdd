import type { Delta } from '@fieldsync/protocol/sync';
import type { Heartbeat } from '@fieldsync/protocol/devices';
import type { Db } from '../db/db.js';
import type { CollectionRegistry } from './collections.js';
import { pullChanges, resolveCollections } from './pull.js';

/** Who is pulling, as the sync core needs to know it (no transport types). */
export interface SyncCaller {
  tenantId: string;
  userId?: string;
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
}

/** The read half of sync: delta pulls and the device checkpoints they record. */
export function createSyncService(deps: { db: Db; registry: CollectionRegistry; devices: DeviceRecorder }): SyncService {
  return {
    async pull(caller, req, facts) {
      const defs = resolveCollections(deps.registry, req.collections);
      const delta = await pullChanges(deps.db, defs, {
        tenantId: caller.tenantId,
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
  };
}
