import type { Logger } from 'pino';
import type { FilesService } from '../modules/files/files.service.js';
import { createPeriodicJob, type PeriodicJob } from './periodic.js';

/**
 * Removes uploads that did not finish in time: chunked sessions past their expiry with their
 * chunks, tus uploads with their bytes (their quota reservations go back), finalized sessions'
 * rows, and crash leftovers. Runs every `intervalMs` (and once at start).
 */
export function createUploadsExpiryJob(deps: { files: FilesService; logger: Logger; intervalMs: number }): PeriodicJob {
  return createPeriodicJob({
    intervalMs: deps.intervalMs,
    logger: deps.logger,
    failure: 'upload expiry failed',
    async work() {
      const removed = await deps.files.removeExpired();
      if (removed.sessions + removed.tusUploads + removed.orphans > 0) deps.logger.info(removed, 'expired uploads removed');
    },
  });
}
