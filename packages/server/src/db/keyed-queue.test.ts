import { describe, expect, it } from 'vitest';
import { createKeyedQueue, QueueFullError } from './keyed-queue.js';

/** A promise and the function that settles it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('createKeyedQueue', () => {
  it('runs the tasks of one key one at a time, in the order they arrived', async () => {
    const queue = createKeyedQueue({ maxWaiting: 10 });
    const first = gate();
    const log: string[] = [];
    const tasks = ['a', 'b', 'c', 'd'].map((name, i) =>
      queue.run('k', async () => {
        log.push(`${name} in`);
        if (i === 0) await first.opened;
        await tick();
        log.push(`${name} out`);
        return name;
      }),
    );
    await tick();
    expect(log).toEqual(['a in']);
    expect(queue.waiting()).toBe(3);
    first.open();
    expect(await Promise.all(tasks)).toEqual(['a', 'b', 'c', 'd']);
    expect(log).toEqual(['a in', 'a out', 'b in', 'b out', 'c in', 'c out', 'd in', 'd out']);
    expect(queue.waiting()).toBe(0);
  });

  it('does not make a task of another key wait', async () => {
    const queue = createKeyedQueue({ maxWaiting: 10 });
    const held = gate();
    const slow = queue.run('a', () => held.opened);
    expect(await queue.run('b', async () => 'b ran')).toBe('b ran');
    held.open();
    await slow;
  });

  it('hands the turn on when a task fails, and the failure reaches only its caller', async () => {
    const queue = createKeyedQueue({ maxWaiting: 10 });
    const held = gate();
    const failing = queue.run('k', async () => {
      await held.opened;
      throw new Error('boom');
    });
    const next = queue.run('k', async () => 'next ran');
    held.open();
    await expect(failing).rejects.toThrow('boom');
    expect(await next).toBe('next ran');
  });

  it('refuses a task when maxWaiting tasks of its key already wait, and takes one again when the line moves', async () => {
    const queue = createKeyedQueue({ maxWaiting: 2 });
    const held = gate();
    const running = queue.run('k', () => held.opened);
    const waiting = [queue.run('k', async () => 1), queue.run('k', async () => 2)];
    await expect(queue.run('k', async () => 3)).rejects.toBeInstanceOf(QueueFullError);
    // Another key has a line of its own.
    const other = gate();
    const elsewhere = queue.run('other', () => other.opened);
    other.open();
    await elsewhere;
    held.open();
    await running;
    expect(await Promise.all(waiting)).toEqual([1, 2]);
    expect(await queue.run('k', async () => 4)).toBe(4);
  });

  it('keeps nothing for a key once its tasks are done', async () => {
    const queue = createKeyedQueue({ maxWaiting: 0 });
    for (let i = 0; i < 3; i++) {
      // With no room to wait, a second task would be refused if the line had outlived the first.
      expect(await queue.run('k', async () => i)).toBe(i);
    }
    const held = gate();
    const running = queue.run('k', () => held.opened);
    await expect(queue.run('k', async () => 'refused')).rejects.toBeInstanceOf(QueueFullError);
    held.open();
    await running;
  });

  describe('grouped tasks', () => {
    /** Runs every task of a turn, recording the turn; a task named `fail-*` fails alone. */
    const recorder = () => {
      const turns: string[][] = [];
      const together = async (tasks: string[]): Promise<PromiseSettledResult<string>[]> => {
        turns.push(tasks);
        await tick();
        return tasks.map((t) => (t.startsWith('fail') ? { status: 'rejected', reason: new Error(`${t} failed`) } : { status: 'fulfilled', value: `${t} done` }));
      };
      return { turns, together };
    };

    it('runs the tasks that waited together in one turn, in arrival order, each caller getting its own result; a task that found its key idle runs alone', async () => {
      const queue = createKeyedQueue({ maxWaiting: 10, maxGroup: 10 });
      const { turns, together } = recorder();
      const held = gate();
      const first = queue.runGrouped('k', 'a', async (tasks: string[]) => {
        await held.opened;
        return together(tasks);
      });
      const rest = ['b', 'fail-c', 'd'].map((t) => queue.runGrouped('k', t, together));
      await tick();
      expect(queue.waiting()).toBe(3);
      held.open();
      expect(await first).toBe('a done');
      expect(await Promise.allSettled(rest)).toEqual([
        { status: 'fulfilled', value: 'b done' },
        { status: 'rejected', reason: new Error('fail-c failed') },
        { status: 'fulfilled', value: 'd done' },
      ]);
      expect(turns).toEqual([['a'], ['b', 'fail-c', 'd']]);
      expect(queue.waiting()).toBe(0);
    });

    it('takes at most maxGroup tasks in one turn, and the callers of a group wake in its order', async () => {
      const queue = createKeyedQueue({ maxWaiting: 10, maxGroup: 2 });
      const { turns, together } = recorder();
      const held = gate();
      const first = queue.run('k', () => held.opened);
      const woke: string[] = [];
      const grouped = ['b', 'c', 'd', 'e', 'f'].map((t) => queue.runGrouped('k', t, together).then((r) => woke.push(r)));
      held.open();
      await first;
      await Promise.all(grouped);
      expect(turns).toEqual([['b', 'c'], ['d', 'e'], ['f']]);
      expect(woke).toEqual(['b done', 'c done', 'd done', 'e done', 'f done']);
    });

    it('fails every task of a turn that throws, and hands the turn on to the next task', async () => {
      const queue = createKeyedQueue({ maxWaiting: 10, maxGroup: 2 });
      const held = gate();
      const first = queue.run('k', () => held.opened);
      const broken = async (): Promise<PromiseSettledResult<string>[]> => {
        throw new Error('the turn failed');
      };
      const failed = ['b', 'c'].map((t) => queue.runGrouped('k', t, broken));
      const after = queue.run('k', async () => 'after ran');
      held.open();
      await first;
      for (const f of failed) await expect(f).rejects.toThrow('the turn failed');
      expect(await after).toBe('after ran');
      expect(queue.waiting()).toBe(0);
    });
  });
});
