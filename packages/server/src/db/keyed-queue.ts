/** Runs tasks of one key one at a time, first come first served; tasks of other keys run alongside. */
export interface KeyedQueue {
  /**
   * Runs `fn` when every earlier task of `key` has settled. Throws `QueueFullError` at once when
   * `maxWaiting` tasks of `key` are already waiting (the running one not counted).
   */
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /**
   * As `run`, for a task that may share its turn: when its turn comes after waiting, it takes
   * the grouped tasks of `key` waiting right behind it (up to `maxGroup` in all, in arrival order) and
   * `together` runs them all in that one turn, answering one settled result per task, in
   * order. Each caller gets its own task's result; when `together` throws, every task of the
   * group fails with that error.
   */
  runGrouped<T, R>(key: string, task: T, together: (tasks: T[]) => Promise<PromiseSettledResult<R>[]>): Promise<R>;
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

/** A waiting task: its turn, and for a grouped task what another task's turn needs to run it. */
interface Waiter {
  turn: () => void;
  grouped?: Grouped;
}

/** A grouped task as it waits: run by whichever turn takes it, settled through its callbacks. */
interface Grouped {
  task: unknown;
  taken: boolean;
  settle(result: PromiseSettledResult<unknown>): void;
}

interface Line {
  /** The waiting tasks, oldest first. */
  waiting: Waiter[];
}

/**
 * A queue per key held in this process. A waiting task is a closure and a promise, nothing
 * more: it holds no database connection until its turn. A line exists only while a task of its
 * key runs, so keys that come and go leave nothing behind.
 */
export function createKeyedQueue(opts: { maxWaiting: number; maxGroup?: number }): KeyedQueue {
  const lines = new Map<string, Line>();
  const maxGroup = Math.max(1, opts.maxGroup ?? 1);
  let waiting = 0;

  const next = (key: string, line: Line) => {
    const waiter = line.waiting.shift();
    if (waiter) {
      waiting--;
      waiter.turn();
    } else {
      lines.delete(key);
    }
  };

  /** Waits for the turn of a task of `key`; answers the line, and whether the task had to wait. */
  const enter = async (key: string, grouped?: Grouped): Promise<{ line: Line; waited: boolean }> => {
    let line = lines.get(key);
    if (line === undefined) {
      line = { waiting: [] };
      lines.set(key, line);
      return { line, waited: false };
    }
    if (line.waiting.length >= opts.maxWaiting) throw new QueueFullError(key);
    const queued = line;
    await new Promise<void>((resolve) => {
      queued.waiting.push({ turn: resolve, grouped });
      waiting++;
    });
    return { line, waited: true };
  };

  /** One turn of grouped tasks: `first` and those that waited behind it, run by `together`. */
  const turn = async (key: string, line: Line, waited: boolean, first: Grouped, together: (tasks: unknown[]) => Promise<PromiseSettledResult<unknown>[]>) => {
    const group = [first];
    // A task that found its key idle runs at once, alone; one that waited takes those that
    // waited behind it (they would otherwise wait for its commit, then commit on their own).
    while (waited && group.length < maxGroup && line.waiting[0]?.grouped) {
      const waiter = line.waiting.shift()!;
      waiting--;
      waiter.grouped!.taken = true;
      group.push(waiter.grouped!);
      // Its caller wakes up, finds its task taken, and waits for its result.
      waiter.turn();
    }
    try {
      const results = await together(group.map((g) => g.task));
      group.forEach((g, i) => g.settle(results[i]));
    } catch (error) {
      for (const g of group) g.settle({ status: 'rejected', reason: error });
    } finally {
      next(key, line);
    }
  };

  return {
    async run(key, fn) {
      const { line } = await enter(key);
      try {
        return await fn();
      } finally {
        next(key, line);
      }
    },

    async runGrouped<T, R>(key: string, task: T, together: (tasks: T[]) => Promise<PromiseSettledResult<R>[]>): Promise<R> {
      let own!: PromiseSettledResult<R>;
      let done!: () => void;
      const settled = new Promise<void>((resolve) => (done = resolve));
      const mine: Grouped = {
        task,
        taken: false,
        settle(result) {
          own = result as PromiseSettledResult<R>;
          done();
        },
      };
      const { line, waited } = await enter(key, mine);
      // Another task's turn ran this one: its result is in (or on its way).
      if (!mine.taken) void turn(key, line, waited, mine, together as (tasks: unknown[]) => Promise<PromiseSettledResult<unknown>[]>);
      // Callers wake in the group's order, this one first: it waited before the others were taken.
      await settled;
      if (own.status === 'rejected') throw own.reason;
      return own.value;
    },

    waiting: () => waiting,
  };
}
