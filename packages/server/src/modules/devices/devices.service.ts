import type { Device, Heartbeat } from '@fieldsync/protocol/devices';
import type { Db } from '../../db/db.js';
import { AppError, notFound } from '../../errors.js';

/** How many device owners are remembered in memory. */
const MAX_KNOWN_OWNERS = 100_000;
import * as repo from './devices.repository.js';
import { healthScore } from './devices.health.js';

export interface DeviceIdentity {
  tenantId: string;
  deviceId: string;
  userId?: string;
  agentCode?: string;
}

export interface DevicesService {
  /** A pull or push finished: the server has given the device everything up to `version`. */
  recordSync(who: DeviceIdentity, sync: { version: number; changes: number; ok: boolean }, facts?: Heartbeat): void;
  /**
   * A pull or push of the device failed: counted against its success rate (its health). Only
   * for a device this instance has seen `userId` claim: a failure never creates a device row
   * or touches another user's device.
   */
  recordFailure(who: { tenantId: string; deviceId: string; userId: string }): void;
  /** A `changes` event up to `version` reached the device's socket. */
  recordDelivered(who: DeviceIdentity, version: number): void;
  /**
   * Binds a device id to the user who first syncs with it in the tenant; another user's use of
   * it is a 403, so nobody reads or binds another's local ids, receipts or checkpoint.
   */
  claim(tenantId: string, deviceId: string, userId: string): Promise<void>;
  /** The device reported itself (heartbeat, headers). */
  recordSeen(who: DeviceIdentity, facts: Heartbeat): void;
  /** Marks which devices hold a live socket on this instance. */
  setOnline(tenantId: string, deviceId: string, online: boolean): void;
  list(tenantId: string): Promise<Device[]>;
  get(tenantId: string, deviceId: string): Promise<Device>;
  outdated(tenantId: string, threshold: number): Promise<Device[]>;
  /** Writes pending updates now. */
  flush(): Promise<void>;
  run(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Device rows, written behind: updates for a device coalesce in memory and are flushed in one
 * statement every `flushMs` (and before every read), so a pull costs no extra write.
 */
export function createDevicesService(deps: {
  db: Db;
  flushMs: number;
  onError?: (error: unknown) => void;
  /** Device rows of a tenant changed (after a flush) or a device came online or went: the live fleet view. */
  onChange?: (tenantId: string, deviceIds: string[]) => void;
}): DevicesService {
  const pending = new Map<string, repo.DeviceUpdate>();
  /**
   * Devices whose socket a `changes` event reached, and nothing else since the last flush:
   * the highest version delivered, by device key. Kept apart from `pending` because a
   * commit reaches every socket of a tenant, and raising a checkpoint is one narrow update.
   */
  const delivered = new Map<string, { tenantId: string; deviceId: string; version: number }>();
  /** Device owners seen: an owner never changes, so a hit needs no database. */
  const owners = new Map<string, string>();
  const online = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();

  const entry = (who: DeviceIdentity): repo.DeviceUpdate => {
    const key = `${who.tenantId}\u0000${who.deviceId}`;
    let update = pending.get(key);
    if (!update) {
      update = { tenantId: who.tenantId, deviceId: who.deviceId, lastSeenAt: '', addChanges: 0, addSyncs: 0, addErrors: 0 };
      const reached = delivered.get(key);
      if (reached) {
        update.lastSyncVersion = reached.version;
        delivered.delete(key);
      }
      pending.set(key, update);
    }
    update.userId = who.userId ?? update.userId;
    update.agentCode = who.agentCode ?? update.agentCode;
    update.lastSeenAt = new Date().toISOString();
    return update;
  };

  const applyFacts = (update: repo.DeviceUpdate, facts: Heartbeat | undefined) => {
    if (!facts) return;
    for (const key of ['platform', 'appVersion', 'osVersion', 'networkType', 'battery'] as const) {
      if (facts[key] !== undefined) (update as unknown as Record<string, unknown>)[key] = facts[key];
    }
  };

  const announce = (batch: { tenantId: string; deviceId: string }[]) => {
    if (!deps.onChange) return;
    const byTenant = new Map<string, string[]>();
    for (const u of batch) {
      const ids = byTenant.get(u.tenantId);
      if (ids) ids.push(u.deviceId);
      else byTenant.set(u.tenantId, [u.deviceId]);
    }
    for (const [tenantId, ids] of byTenant) deps.onChange(tenantId, ids);
  };

  const flush = (): Promise<void> => {
    flushing = flushing.then(async () => {
      if (pending.size === 0 && delivered.size === 0) return;
      const batch = [...pending.values()];
      pending.clear();
      const reached = [...delivered.values()];
      delivered.clear();
      if (batch.length > 0) {
        try {
          await repo.upsertDevices(deps.db, batch);
        } catch (error) {
          // One row the database refuses must not keep every other device unrecorded: write them
          // one by one, and drop only the rows that fail on their own.
          deps.onError?.(error);
          for (const update of batch) await repo.upsertDevices(deps.db, [update]).catch((e: unknown) => deps.onError?.(e));
        }
      }
      // Deliveries by tenant and version: a commit's event reached its sockets at one version.
      const byVersion = new Map<string, { tenantId: string; version: number; deviceIds: string[] }>();
      for (const r of reached) {
        const key = `${r.tenantId}\u0000${r.version}`;
        const group = byVersion.get(key);
        if (group) group.deviceIds.push(r.deviceId);
        else byVersion.set(key, { tenantId: r.tenantId, version: r.version, deviceIds: [r.deviceId] });
      }
      for (const g of byVersion.values()) await repo.raiseDelivered(deps.db, g.tenantId, g.version, g.deviceIds).catch((e: unknown) => deps.onError?.(e));
      announce([...batch, ...reached]);
    });
    return flushing;
  };

  const withOnline = (tenantId: string, row: repo.DeviceRow): Device => ({
    ...row,
    online: (online.get(`${tenantId}\u0000${row.deviceId}`) ?? 0) > 0,
    healthScore: healthScore(row),
  });

  return {
    recordSync(who, sync, facts) {
      const update = entry(who);
      applyFacts(update, facts);
      // The highest version given wins: answers of one device may finish out of order.
      update.lastSyncVersion = Math.max(update.lastSyncVersion ?? 0, sync.version);
      update.lastSyncAt = update.lastSeenAt;
      update.syncStatus = sync.ok ? 'ok' : 'error';
      update.addChanges += sync.changes;
      update.addSyncs += 1;
      if (!sync.ok) update.addErrors += 1;
    },
    recordFailure(who) {
      if (owners.get(`${who.tenantId}\u0000${who.deviceId}`) !== who.userId) return;
      const update = entry({ tenantId: who.tenantId, deviceId: who.deviceId });
      update.syncStatus = 'error';
      update.lastSyncAt = update.lastSeenAt;
      update.addSyncs += 1;
      update.addErrors += 1;
    },
    recordDelivered(who, version) {
      const key = `${who.tenantId}\u0000${who.deviceId}`;
      const update = pending.get(key);
      if (update) {
        update.lastSyncVersion = Math.max(update.lastSyncVersion ?? 0, version);
        return;
      }
      const reached = delivered.get(key);
      if (reached) reached.version = Math.max(reached.version, version);
      else delivered.set(key, { tenantId: who.tenantId, deviceId: who.deviceId, version });
    },
    async claim(tenantId, deviceId, userId) {
      const key = `${tenantId}\u0000${deviceId}`;
      let owner = owners.get(key);
      if (owner === undefined) {
        owner = await repo.claimDevice(deps.db, tenantId, deviceId, userId);
        if (owners.size >= MAX_KNOWN_OWNERS) owners.clear();
        owners.set(key, owner);
      }
      if (owner !== userId) throw new AppError('FORBIDDEN', 'This device id belongs to another user: use a device id of your own');
    },
    recordSeen(who, facts) {
      applyFacts(entry(who), facts);
    },
    setOnline(tenantId, deviceId, isOnline) {
      const key = `${tenantId}\u0000${deviceId}`;
      const count = (online.get(key) ?? 0) + (isOnline ? 1 : -1);
      if (count > 0) online.set(key, count);
      else online.delete(key);
      // Only the first socket and the last one change what the fleet view shows.
      if ((isOnline && count === 1) || (!isOnline && count <= 0)) deps.onChange?.(tenantId, [deviceId]);
    },
    async list(tenantId) {
      await flush();
      return (await repo.listDevices(deps.db, tenantId)).map((r) => withOnline(tenantId, r));
    },
    async get(tenantId, deviceId) {
      await flush();
      const row = await repo.findDevice(deps.db, tenantId, deviceId);
      if (!row) throw notFound('Device');
      return withOnline(tenantId, row);
    },
    async outdated(tenantId, threshold) {
      await flush();
      return (await repo.listDevices(deps.db, tenantId, threshold)).map((r) => withOnline(tenantId, r));
    },
    flush,
    async run() {
      timer = setInterval(() => void flush(), deps.flushMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await flush();
    },
  };
}
