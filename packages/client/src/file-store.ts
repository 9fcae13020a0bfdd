import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FieldsyncError } from './errors.js';
import { applyBatch, emptyState, snapshotOf, stateFromSnapshot, type SnapshotState, type Store, type StoreBatch, type StoreSnapshot } from './store.js';

export interface FileStoreOptions {
  /**
   * fsync after every write (true): a change is durable once its write resolves, even if the
   * machine loses power. Without it a process crash still loses nothing; an OS crash may.
   */
  fsync?: boolean;
  /** Rewrite the file as one snapshot after this many appended batches (2000). */
  compactAfter?: number;
}

/**
 * A store for Node.js in one JSON-lines file: each batch is appended as one line, so a
 * restarted device finds its replica, checkpoint and outbox as they were. A line cut short by
 * a crash is the only kind of damage an append can leave; it is dropped on load (its batch
 * never resolved). The file is compacted into a single snapshot line now and then.
 *
 * @example
 * const store = new FileStore('./data/phone-1.jsonl');
 * const client = await createClient({ url, apiKey, deviceId: 'phone-1', store });
 */
export class FileStore implements Store {
  private state: SnapshotState = emptyState();
  private handle: FileHandle | undefined;
  private appended = 0;
  private readonly fsync: boolean;
  private readonly compactAfter: number;

  constructor(
    readonly path: string,
    opts: FileStoreOptions = {},
  ) {
    this.fsync = opts.fsync ?? true;
    this.compactAfter = opts.compactAfter ?? 2000;
  }

  async load(): Promise<StoreSnapshot> {
    await mkdir(dirname(this.path), { recursive: true });
    let text = '';
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    this.state = emptyState();
    const lines = text.split('\n');
    // The text after the last newline is a line whose write never finished: not part of the store.
    const complete = lines.slice(0, -1);
    let torn = lines[lines.length - 1] !== '';
    let count = 0;
    for (let i = 0; i < complete.length; i++) {
      const line = complete[i];
      if (line === '') continue;
      let parsed: { s?: StoreSnapshot; b?: StoreBatch };
      try {
        parsed = JSON.parse(line);
      } catch (cause) {
        if (i === complete.length - 1) {
          torn = true; // cut and then followed by a newline of a later, also unfinished, write
          break;
        }
        throw new FieldsyncError('STORE', `${this.path}: line ${i + 1} is corrupt`, { cause });
      }
      if (parsed.s) this.state = stateFromSnapshot(parsed.s);
      else if (parsed.b) applyBatch(this.state, parsed.b);
      count++;
    }
    // Rewrite as one snapshot: drops a torn tail (later appends must not follow garbage) and
    // keeps start-up fast.
    if (torn || count > 1) await this.compact();
    else this.handle = await open(this.path, 'a');
    return structuredClone(snapshotOf(this.state));
  }

  async write(batch: StoreBatch): Promise<void> {
    if (!this.handle) throw new FieldsyncError('STORE', 'FileStore.write before load');
    const line = `${JSON.stringify({ b: batch })}\n`;
    await this.handle.write(line);
    if (this.fsync) await this.handle.datasync();
    applyBatch(this.state, batch);
    if (++this.appended >= this.compactAfter) await this.compact();
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }

  /** Replaces the file by one snapshot line: written aside, synced, then renamed over it. */
  private async compact(): Promise<void> {
    await this.handle?.close();
    const tmp = `${this.path}.tmp`;
    const out = await open(tmp, 'w');
    try {
      await out.write(`${JSON.stringify({ s: snapshotOf(this.state) })}\n`);
      await out.datasync();
    } finally {
      await out.close();
    }
    await rename(tmp, this.path);
    this.handle = await open(this.path, 'a');
    this.appended = 0;
  }
}
