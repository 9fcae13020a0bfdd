import type { Logger } from 'pino';
import type { HubspotExporter } from '../modules/outreach/hubspot/hubspot.export.js';
import { createPeriodicJob, type PeriodicJob } from './periodic.js';

/** The export job: also woken at once when this instance queued entries. */
export interface HubspotExportJob extends PeriodicJob {
  /** Drains soon (after the round in progress), once however often it is called meanwhile. */
  wake(): void;
}

/**
 * Drains the HubSpot outbox every `intervalMs` (HUBSPOT_POLL_MS, at most 5 s): batch after
 * batch while entries are due. Every instance runs one; their claims never overlap.
 */
export function createHubspotExportJob(deps: { exporter: HubspotExporter; logger: Logger; intervalMs: number }): HubspotExportJob {
  const job = createPeriodicJob({
    intervalMs: deps.intervalMs,
    logger: deps.logger,
    failure: 'hubspot export round failed',
    async work() {
      const { batches, exported } = await deps.exporter.drain();
      if (exported > 0) deps.logger.info({ batches, exported }, 'hubspot export');
    },
  });
  let running = false;
  let woken = false;
  return {
    ...job,
    async run() {
      deps.exporter.start();
      running = true;
      await job.run();
    },
    wake() {
      if (!running || woken) return;
      woken = true;
      void job.tick().finally(() => (woken = false));
    },
    async stop() {
      running = false;
      deps.exporter.stop();
      await job.stop();
    },
  };
}
