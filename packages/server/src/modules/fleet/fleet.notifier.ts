import type { Db } from '../../db/db.js';
import type { Relay } from '../../realtime/gateway.js';

/** How long the list of a tenant's admins and managers is reused. */
const WATCHERS_TTL_MS = 30_000;

/**
 * Live fleet events for the dashboard (SPEC §11 "fleet ... live"): `fleet_update
 * {deviceIds, at}` when device rows changed (coalesced to one event per tenant per
 * `intervalMs`), and `alert {change, alert}` when an alert is raised or resolved. Both go
 * only to the tenant's admins and managers (device state is theirs to see, SPEC §11), on
 * every instance, through the gateway's relay.
 */
export function createFleetNotifier(deps: { db: Db; relay: (relay: Relay) => void; intervalMs?: number; onError?: (error: unknown) => void }) {
  const watchers = new Map<string, { users: string[]; at: number }>();
  const pending = new Map<string, Set<string>>();
  let timer: NodeJS.Timeout | undefined;

  const watchersOf = async (tenantId: string): Promise<string[]> => {
    const cached = watchers.get(tenantId);
    if (cached && Date.now() - cached.at < WATCHERS_TTL_MS) return cached.users;
    const { rows } = await deps.db.query<{ id: string }>(
      "SELECT id FROM users WHERE tenant_id = $1 AND role IN ('admin', 'manager') AND is_active",
      [tenantId],
    );
    const users = rows.map((r) => r.id);
    watchers.set(tenantId, { users, at: Date.now() });
    return users;
  };

  const send = async (tenantId: string, name: string, payload: unknown) => {
    try {
      const users = await watchersOf(tenantId);
      if (users.length > 0) deps.relay({ tenantId, name, payload, to: { users } });
    } catch (error) {
      deps.onError?.(error);
    }
  };

  const drain = () => {
    timer = undefined;
    const batch = [...pending];
    pending.clear();
    for (const [tenantId, ids] of batch) void send(tenantId, 'fleet_update', { deviceIds: [...ids], at: new Date().toISOString() });
  };

  return {
    devicesChanged(tenantId: string, deviceIds: string[]) {
      let set = pending.get(tenantId);
      if (!set) pending.set(tenantId, (set = new Set()));
      // Bounded: the dashboard refetches the fleet anyway; ids only say what to highlight.
      for (const id of deviceIds) if (set.size < 500) set.add(id);
      timer ??= setTimeout(drain, deps.intervalMs ?? 1000);
      timer.unref?.();
    },
    alert(tenantId: string, payload: unknown) {
      void send(tenantId, 'alert', payload);
    },
    stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      pending.clear();
    },
  };
}
