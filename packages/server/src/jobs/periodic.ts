import type { Logger } from 'pino';
import type { Queryable } from '../db/db.js';

/** A background job (`{ run(), stop() }`, STYLE 10) plus `tick()` to run one round now. */
export interface PeriodicJob {
  /** Runs one round now, after any round still running (tests, CLI). */
  tick(): Promise<void>;
  run(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs `work` every `intervalMs` (and once at start), one round at a time; a failing round is
 * logged as `failure` and the next one runs as usual. `stop` waits for the round in progress.
 * With `claim`, a scheduled round runs only when it answers true (`claimRound`: one instance of
 * several takes each round); `tick()` always runs.
 */
export function createPeriodicJob(opts: {
  intervalMs: number;
  logger: Logger;
  failure: string;
  work: () => Promise<void>;
  claim?: () => Promise<boolean>;
}): PeriodicJob {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const round = (scheduled: boolean) => {
    running = running.then(async () => {
      try {
        if (scheduled && opts.claim && !(await opts.claim())) return;
        await opts.work();
      } catch (error) {
        opts.logger.error({ err: error }, opts.failure);
      }
    });
    return running;
  };
  const tick = () => round(false);
  return {
    tick,
    async run() {
      void round(true);
      timer = setInterval(() => void round(true), opts.intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}

/**
 * Claims the round of job `name` for this instance when no instance claimed it within the last
 * `gapMs` (by the database's clock): instances sharing a database take turns instead of each
 * doing the same work. The claim is a row of `server_settings` (`round:<name>`, the claim time
 * in ms), taken by one conditional upsert, so two instances asking at once get one yes.
 */
export async function claimRound(db: Queryable, name: string, gapMs: number): Promise<boolean> {
  const { rows } = await db.query(
    `INSERT INTO server_settings AS s (name, value)
     VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text)
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value
      WHERE s.value::bigint <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $2
     RETURNING s.name`,
    [`round:${name}`, Math.floor(gapMs)],
  );
  return rows.length === 1;
}
