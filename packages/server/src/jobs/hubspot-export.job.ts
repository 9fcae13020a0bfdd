import type { Logger } from 'pino';
import type { HubspotExporter } from '../modules/outreach/hubspot/hubspot.export.js';
import { createPeriodicJob, type PeriodicJob } from './periodic.js';

/**
 * Drains the HubSpot outbox every `intervalMs` (HUBSPOT_POLL_MS, at most 5 s): batch after
 * batch while entries are due. Every instance runs one; their claims never overlap.
 */
export function createHubspotExportJob(deps: { exporter: HubspotExporter; logger: Logger; intervalMs: number }): PeriodicJob {
  const job = createPeriodicJob({
    intervalMs: deps.intervalMs,
    logger: deps.logger,
    failure: 'hubspot export round failed',
    async work() {
      const { batches, exported } = await deps.exporter.drain();
      if (exported > 0) deps.logger.info({ batches, exported }, 'hubspot export');
    },
  });
  return {
    ...job,
    async run() {
      deps.exporter.start();
      await job.run();
    },
    async stop() {
      deps.exporter.stop();
      await job.stop();
    },
  };
}
