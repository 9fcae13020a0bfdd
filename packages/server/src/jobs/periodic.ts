import type { Logger } from 'pino';

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
 */
export function createPeriodicJob(opts: { intervalMs: number; logger: Logger; failure: string; work: () => Promise<void> }): PeriodicJob {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = () => {
    running = running.then(async () => {
      try {
        await opts.work();
      } catch (error) {
        opts.logger.error({ err: error }, opts.failure);
      }
    });
    return running;
  };
  return {
    tick,
    async run() {
      void tick();
      timer = setInterval(() => void tick(), opts.intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
