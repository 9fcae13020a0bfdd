import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closed, freePort, spawnServerChild, waitForHealth, type Exit } from '@fieldsync/server/lib/child-server';

/**
 * The simulator's own server: `node --import tsx packages/server/src/main.ts` as a child
 * process on a fixed port, on the embedded database in a temporary DATA_DIR (or on
 * `databaseUrl`), so chaos can kill it and start it again on the same data.
 */
export class ManagedServer {
  private child?: ChildProcess;
  private exited?: Promise<Exit>;
  private stderr = '';

  private constructor(
    readonly url: string,
    private readonly env: Record<string, string>,
    private readonly dataDir: string | undefined,
  ) {}

  static async start(opts: { adminKey: string; databaseUrl?: string; readyTimeoutMs?: number }): Promise<ManagedServer> {
    const port = await freePort();
    const dataDir = opts.databaseUrl ? undefined : await mkdtemp(join(tmpdir(), 'fieldsync-sim-'));
    const env: Record<string, string> = {
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'error',
      RATE_LIMIT_PER_MINUTE: '0',
      FIELDSYNC_BOOTSTRAP_ADMIN_KEY: opts.adminKey,
      SHUTDOWN_GRACE_MS: '5000',
      ...(opts.databaseUrl ? { DATABASE_URL: opts.databaseUrl } : { DATA_DIR: dataDir! }),
    };
    const server = new ManagedServer(`http://127.0.0.1:${port}`, env, dataDir);
    await server.boot(opts.readyTimeoutMs ?? 120_000);
    return server;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts the process and waits until `/health` answers 200. */
  async boot(timeoutMs = 120_000): Promise<void> {
    const child = spawnServerChild(this.env, { stdout: 'ignore' });
    this.child = child;
    this.stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.exited = closed(child);
    // However the simulator ends, its server must not outlive it.
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    void this.exited.then(() => process.off('exit', reap));
    try {
      await waitForHealth(this.url, { exited: this.exited, output: () => this.stderr, timeoutMs });
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
  }

  /** Sends `signal` and waits for the exit (SIGKILL after 15 s). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
    this.child = undefined;
  }

  /** Stops the server and removes its temporary data. */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    if (this.dataDir) await rm(this.dataDir, { recursive: true, force: true });
  }
}
