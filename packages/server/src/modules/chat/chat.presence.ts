import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** A user's presence changed: their first socket connected, or their last one closed. */
export interface PresenceChange {
  tenantId: string;
  userId: string;
  status: 'online' | 'offline';
  lastSeen: string;
}

export interface Presence {
  /** A socket of the user was admitted (on any instance). */
  connected(tenantId: string, userId: string, socketId: string): Promise<void>;
  /** A socket of the user went. */
  disconnected(tenantId: string, userId: string, socketId: string): Promise<void>;
  /** The users of a tenant with at least one socket. */
  online(tenantId: string): Promise<Set<string>>;
}

/** Removes a socket; the user leaves the tenant's online set with their last one, atomically. */
const GONE_SCRIPT = `local removed = redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('HLEN', KEYS[1])
if removed == 1 and left == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return {removed, left}`;

const key = {
  user: (tenantId: string, userId: string) => `fieldsync:presence:${tenantId}:${userId}`,
  tenant: (tenantId: string) => `fieldsync:online:${tenantId}`,
};

/**
 * Who is online: the sockets of each user, counted across instances in Redis (a hash of the
 * user's socket ids, changed and counted in one MULTI, so of two instances admitting a user's
 * first sockets at once exactly one sees the count reach one), or in this process without
 * Redis. `onChange` hears a user's first socket and their last.
 *
 * An instance that dies without closing its sockets leaves their entries behind: its users
 * look online until they connect and disconnect again (or the entries' day-long expiry).
 */
export function createPresence(deps: { redis?: Redis; logger: Logger; onChange: (change: PresenceChange) => void }): Presence {
  const local = new Map<string, Map<string, Set<string>>>();
  const ENTRY_TTL_S = 24 * 60 * 60;

  const changed = (tenantId: string, userId: string, status: 'online' | 'offline') =>
    deps.onChange({ tenantId, userId, status, lastSeen: new Date().toISOString() });

  if (!deps.redis) {
    return {
      async connected(tenantId, userId, socketId) {
        let users = local.get(tenantId);
        if (!users) local.set(tenantId, (users = new Map()));
        let sockets = users.get(userId);
        if (!sockets) users.set(userId, (sockets = new Set()));
        sockets.add(socketId);
        if (sockets.size === 1) changed(tenantId, userId, 'online');
      },
      async disconnected(tenantId, userId, socketId) {
        const sockets = local.get(tenantId)?.get(userId);
        if (!sockets?.delete(socketId)) return;
        if (sockets.size === 0) {
          local.get(tenantId)!.delete(userId);
          changed(tenantId, userId, 'offline');
        }
      },
      async online(tenantId) {
        return new Set(local.get(tenantId)?.keys() ?? []);
      },
    };
  }

  const redis = deps.redis;
  const log = deps.logger.child({ component: 'presence' });
  return {
    async connected(tenantId, userId, socketId) {
      try {
        const result = await redis
          .multi()
          .hset(key.user(tenantId, userId), socketId, Date.now())
          .hlen(key.user(tenantId, userId))
          .expire(key.user(tenantId, userId), ENTRY_TTL_S)
          .sadd(key.tenant(tenantId), userId)
          .exec();
        if (Number(result?.[1]?.[1]) === 1) changed(tenantId, userId, 'online');
      } catch (error) {
        log.warn({ err: error }, 'presence not recorded (Redis)');
      }
    },
    async disconnected(tenantId, userId, socketId) {
      try {
        const [removed, left] = (await redis.eval(GONE_SCRIPT, 2, key.user(tenantId, userId), key.tenant(tenantId), socketId, userId)) as [number, number];
        if (removed === 1 && left === 0) changed(tenantId, userId, 'offline');
      } catch (error) {
        log.warn({ err: error }, 'presence not recorded (Redis)');
      }
    },
    async online(tenantId) {
      try {
        const users = await redis.smembers(key.tenant(tenantId));
        if (users.length === 0) return new Set();
        // The set may hold users whose entries expired: count only those with a socket.
        const pipeline = redis.pipeline();
        for (const u of users) pipeline.hlen(key.user(tenantId, u));
        const counts = (await pipeline.exec()) ?? [];
        return new Set(users.filter((_, i) => Number(counts[i]?.[1]) > 0));
      } catch (error) {
        log.warn({ err: error }, 'presence unknown (Redis)');
        return new Set();
      }
    },
  };
}
