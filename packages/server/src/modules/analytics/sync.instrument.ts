import { AppError } from '../../errors.js';
import type { SyncService } from '../../sync/sync.service.js';
import type { Metrics } from '../metrics/metrics.js';
import type { AnalyticsService } from './analytics.service.js';

/**
 * The sync service as every transport sees it, counted (SPEC §11): each pull and push adds to
 * the Prometheus counters and the tenant's in-memory analytics, and a failed one counts
 * against its device's health. Plain in-memory arithmetic: the sync path does no extra I/O.
 */
export function instrumentSync(
  inner: SyncService,
  deps: { metrics: Metrics; analytics: AnalyticsService; devices: { recordFailure(who: { tenantId: string; deviceId: string; userId: string }): void } },
): SyncService {
  const failed = (caller: { tenantId: string; userId: string }, deviceId: string | undefined, kind: 'pull' | 'push', started: number, error: unknown) => {
    deps.metrics.syncFailures.inc();
    deps.analytics.record({ tenantId: caller.tenantId, kind, ms: performance.now() - started, ok: false, items: 0 });
    // Someone else's device id (403) or no credentials (401) says nothing about that device.
    const foreign = error instanceof AppError && (error.status === 401 || error.status === 403);
    if (deviceId && !foreign) deps.devices.recordFailure({ tenantId: caller.tenantId, deviceId, userId: caller.userId });
  };
  /** Times one pull of either form; `items` counts what it delivered. */
  const timedPull = async <T>(caller: Parameters<SyncService['pull']>[0], run: () => Promise<T>, items: (page: T) => number): Promise<T> => {
    deps.metrics.pulls.inc();
    const started = performance.now();
    try {
      const page = await run();
      deps.analytics.record({ tenantId: caller.tenantId, kind: 'pull', ms: performance.now() - started, ok: true, items: items(page) });
      return page;
    } catch (error) {
      failed(caller, caller.deviceId, 'pull', started, error);
      throw error;
    }
  };
  return {
    pull: (caller, req, facts) => timedPull(caller, () => inner.pull(caller, req, facts), (delta) => delta.changes.length),
    pullPage: (caller, req, facts) => timedPull(caller, () => inner.pullPage(caller, req, facts), (page) => page.count),
    async push(caller, body, facts) {
      deps.metrics.pushes.inc();
      const started = performance.now();
      try {
        const result = await inner.push(caller, body, facts);
        const accepted = result.acknowledged.filter((a) => a.success).length;
        const pulled = Object.values(result.serverUpdates).reduce((n, list) => n + list.length, 0);
        deps.analytics.record({
          tenantId: caller.tenantId,
          kind: 'push',
          ms: performance.now() - started,
          ok: true,
          items: accepted + pulled,
          changesPushed: body.changes.length,
          conflicts: result.conflicts.length,
        });
        return result;
      } catch (error) {
        failed(caller, caller.deviceId ?? body.deviceId, 'push', started, error);
        throw error;
      }
    },
  };
}
