/** The Socket.IO room of a tenant's fleet watchers (dashboards that sent `fleet:watch`). */
export const fleetRoom = (tenantId: string) => `fleet:${tenantId}`;

/**
 * Live fleet events for the dashboard (SPEC §11 "fleet ... live"): `fleet_update {deviceIds,
 * at}` when device rows changed (coalesced to one event per tenant per `intervalMs`), and
 * `alert {change, alert}` when an alert is raised or resolved. Both go to the tenant's fleet
 * room only: sockets of admins and managers that asked with `fleet:watch` (fleet.socket.ts),
 * on every instance (the Socket.IO adapter carries room broadcasts), so phones hear none of it.
 */
export function createFleetNotifier(deps: { emit: (tenantId: string, name: string, payload: unknown) => void; intervalMs?: number }) {
  const pending = new Map<string, Set<string>>();
  let timer: NodeJS.Timeout | undefined;

  const drain = () => {
    timer = undefined;
    const batch = [...pending];
    pending.clear();
    const at = new Date().toISOString();
    for (const [tenantId, ids] of batch) deps.emit(tenantId, 'fleet_update', { deviceIds: [...ids], at });
  };

  return {
    devicesChanged(tenantId: string, deviceIds: string[]) {
      let set = pending.get(tenantId);
      if (!set) pending.set(tenantId, (set = new Set()));
      // Bounded: the dashboard reads the fleet again anyway; the ids only say what changed.
      for (const id of deviceIds) if (set.size < 500) set.add(id);
      if (!timer) {
        timer = setTimeout(drain, deps.intervalMs ?? 1000);
        timer.unref();
      }
    },
    alert(tenantId: string, payload: unknown) {
      deps.emit(tenantId, 'alert', payload);
    },
    stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      pending.clear();
    },
  };
}
