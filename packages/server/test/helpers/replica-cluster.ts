import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/lib/child-server.js';

/** PostgreSQL's own binaries of the machine (Debian's layout), newest version first. */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin')).find((bin) => existsSync(join(bin, 'pg_basebackup')));
}

/** Runs a PostgreSQL tool as the `postgres` user when this process is root (initdb refuses root). */
function asPostgres(bin: string, tool: string, args: string[]): void {
  const command = join(bin, tool);
  const run = process.getuid?.() === 0 ? spawnSync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8' }) : spawnSync(command, args, { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed: ${run.stderr || run.stdout}`);
}

export interface ReplicaCluster {
  primaryUrl: string;
  replicaUrl: string;
  /** Pauses (true) or resumes the replica's replay of the primary's WAL: a lagging replica on demand. */
  pauseReplay(paused: boolean): void;
  stop(): void;
}

/**
 * A scratch primary (initdb on a free port) and a streaming replica of it (pg_basebackup -R),
 * both run by this machine's PostgreSQL binaries in a temporary directory.
 */
export async function startReplicaCluster(bin: string): Promise<ReplicaCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldsync-replica-'));
  chmodSync(dir, 0o777);
  const primary = join(dir, 'primary');
  const replica = join(dir, 'replica');
  const [p1, p2] = [await freePort(), await freePort()];
  if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', dir]);
  asPostgres(bin, 'initdb', ['-D', primary, '--auth=trust', '-U', 'postgres', '--no-sync']);
  const start = (data: string, port: number) =>
    asPostgres(bin, 'pg_ctl', ['-D', data, '-l', join(dir, `${port}.log`), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  start(primary, p1);
  asPostgres(bin, 'pg_basebackup', ['-h', '127.0.0.1', '-p', String(p1), '-U', 'postgres', '-D', replica, '-R', '-X', 'stream', '--no-sync']);
  start(replica, p2);
  const psql = (port: number, sql: string) => {
    const run = spawnSync(join(bin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-Atc', sql], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`psql: ${run.stderr}`);
    return run.stdout.trim();
  };
  psql(p1, 'CREATE DATABASE fieldsync');
  // The new database reaches the replica by replay.
  for (let i = 0; i < 100 && psql(p2, "SELECT count(*) FROM pg_database WHERE datname = 'fieldsync'") !== '1'; i++) await new Promise((r) => setTimeout(r, 50));
  return {
    primaryUrl: `postgres://postgres@127.0.0.1:${p1}/fieldsync`,
    replicaUrl: `postgres://postgres@127.0.0.1:${p2}/fieldsync`,
    pauseReplay: (paused) => void psql(p2, paused ? 'SELECT pg_wal_replay_pause()' : 'SELECT pg_wal_replay_resume()'),
    stop() {
      for (const data of [replica, primary]) {
        try {
          asPostgres(bin, 'pg_ctl', ['-D', data, '-m', 'immediate', 'stop']);
        } catch {
          /* already down */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
