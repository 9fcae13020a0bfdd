import type { Logger } from 'pino';
import type { FilesService } from '../modules/files/files.service.js';

/**
 * Removes uploads that did not finish in time: chunked sessions past their expiry with their
 * chunks, tus uploads with their bytes (their quota reservations go back), finalized sessions'
 * rows, and crash leftovers. Runs every `intervalMs` (and once at start).
 */
export function createUploadsExpiryJob(deps: { files: FilesService; logger: Logger; intervalMs: number }) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const tick = () => {
    running = running.then(async () => {
      try {
        const removed = await deps.files.removeExpired();
        if (removed.sessions + removed.tusUploads + removed.orphans > 0) deps.logger.info(removed, 'expired uploads removed');
      } catch (error) {
        deps.logger.error({ err: error }, 'upload expiry failed');
      }
    });
    return running;
  };

  return {
    /** Runs one sweep now (tests). */
    tick,
    async run() {
      void tick();
      timer = setInterval(() => void tick(), deps.intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
