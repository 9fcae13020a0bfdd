/** Runs tasks of one key one at a time, first come first served; tasks of other keys run alongside. */
export interface KeyedQueue {
  /**
   * Runs `fn` when every earlier task of `key` has settled. Throws `QueueFullError` at once when
   * `maxWaiting` tasks of `key` are already waiting (the running one not counted).
   */
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Tasks waiting for their turn, over all keys. */
  waiting(): number;
}

/** A task refused because its key's line was full. */
export class QueueFullError extends Error {
  constructor(readonly key: string) {
    super(`the queue of ${key} is full`);
    this.name = 'QueueFullError';
  }
}

interface Line {
  /** The turns of the waiting tasks, oldest first. */
  waiting: (() => void)[];
}

/**
 * A queue per key held in this process. A waiting task is a closure and a promise, nothing
 * more: it holds no database connection until its turn. A line exists only while a task of its
 * key runs, so keys that come and go leave nothing behind.
 */
export function createKeyedQueue(opts: { maxWaiting: number }): KeyedQueue {
  const lines = new Map<string, Line>();
  let waiting = 0;

  const next = (key: string, line: Line) => {
    const turn = line.waiting.shift();
    if (turn) {
      waiting--;
      turn();
    } else {
      lines.delete(key);
    }
  };

  return {
    async run(key, fn) {
      let line = lines.get(key);
      if (line === undefined) {
        line = { waiting: [] };
        lines.set(key, line);
      } else {
        if (line.waiting.length >= opts.maxWaiting) throw new QueueFullError(key);
        const queued = line;
        await new Promise<void>((resolve) => {
          queued.waiting.push(resolve);
          waiting++;
        });
      }
      try {
        return await fn();
      } finally {
        next(key, line);
      }
    },
    waiting: () => waiting,
  };
}
