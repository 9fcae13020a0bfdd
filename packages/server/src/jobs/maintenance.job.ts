import type { Logger } from 'pino';
import type { Db } from '../db/db.js';
import { createPeriodicJob, type PeriodicJob } from './periodic.js';

/** How long a device's change receipts are kept: a re-sent change older than this is applied again. */
export const RECEIPT_RETENTION_DAYS = 30;

/**
 * Periodic clean-up: idempotency answers past their 24 hours and change receipts past
 * RECEIPT_RETENTION_DAYS. Runs every `intervalMs` (and once at start); deletes in bounded
 * batches so a large backlog never holds long locks.
 */
export function createMaintenanceJob(deps: { db: Db; logger: Logger; intervalMs: number }): PeriodicJob {
  const sweep = async (sql: string): Promise<number> => {
    let total = 0;
    for (let i = 0; i < 100; i++) {
      const { rowCount } = await deps.db.query(sql);
      total += rowCount;
      if (rowCount < 5000) break;
    }
    return total;
  };

  return createPeriodicJob({
    intervalMs: deps.intervalMs,
    logger: deps.logger,
    failure: 'maintenance failed',
    async work() {
      const idempotency = await sweep(
        `DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT 5000)`,
      );
      const receipts = await sweep(
        `DELETE FROM push_receipts WHERE ctid IN (SELECT ctid FROM push_receipts
           WHERE created_at < now() - interval '${RECEIPT_RETENTION_DAYS} days' LIMIT 5000)`,
      );
      if (idempotency + receipts > 0) deps.logger.info({ idempotency, receipts }, 'maintenance removed expired records');
    },
  });
}
