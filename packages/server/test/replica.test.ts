import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, startServer, type ServerProcess } from './helpers/process.js';
import { postgresBin, startReplicaCluster, type ReplicaCluster } from './helpers/replica-cluster.js';
import { uniquePhone } from './helpers/test-app.js';

/*
 * Reads on PostgreSQL's own streaming replication (SPEC §14, issue 16): with DATABASE_READ_URL
 * the delta pull is served by a replica the suite starts itself (initdb + pg_basebackup with
 * the machine's PostgreSQL binaries), writes by the primary; a device whose checkpoint is
 * ahead of the replica is answered by the primary, so it never moves backwards.
 */

const BIN = postgresBin();
const ADMIN_KEY = `fsk_replica_admin_${randomUUID().replace(/-/g, '')}`;

describe.runIf(BIN && process.env.TEST_DATABASE_URL)('delta pulls from a streaming replica', () => {
  let cluster: ReplicaCluster;
  let server: ServerProcess;
  const names = (delta: { changes: { data: { firstName?: string } }[] }) => delta.changes.map((c) => c.data.firstName);
  const pull = async (deviceId: string, version = 0) => {
    const res = await server.api('GET', `/api/sync/delta?version=${version}&collections=contacts&limit=5000`, { key: ADMIN_KEY, headers: { 'x-device-id': deviceId } });
    expect(res.status, res.text).toBe(200);
    return res.body.data as { changes: { data: { firstName?: string } }[]; nextVersion: number; latestVersion: number };
  };
  const create = async (firstName: string) => {
    const res = await server.api('POST', '/api/contacts', { key: ADMIN_KEY, body: { firstName, phonePrimary: uniquePhone() } });
    expect(res.status, res.text).toBe(201);
    return res.body.data as { id: string; version: number };
  };
  /** Polls until the replica serves `firstName` to a fresh device. */
  const replicated = async (firstName: string) => {
    for (let i = 0; i < 200; i++) {
      if (names(await pull(`probe-${randomUUID()}`)).includes(firstName)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${firstName} never reached the replica`);
  };

  beforeAll(async () => {
    cluster = await startReplicaCluster(BIN!);
    server = await startServer({ DATABASE_URL: cluster.primaryUrl, DATABASE_READ_URL: cluster.replicaUrl, FIELDSYNC_BOOTSTRAP_ADMIN_KEY: ADMIN_KEY });
  }, 120_000);
  afterAll(async () => {
    await killAll();
    cluster?.stop();
  });

  it('serves pulls from the replica and writes to the primary: while replay is paused, a new write is not pulled yet', async () => {
    await create('Before');
    await replicated('Before');
    cluster.pauseReplay(true);
    try {
      await create('While paused');
      const seen = names(await pull(`fresh-${randomUUID()}`));
      expect(seen).toContain('Before');
      expect(seen).not.toContain('While paused');
    } finally {
      cluster.pauseReplay(false);
    }
    await replicated('While paused');
  }, 60_000);

  it('answers a device whose checkpoint is past the replica from the primary: it never moves backwards and misses nothing', async () => {
    cluster.pauseReplay(true);
    try {
      // A device that heard of a write live (a `changes` event) holds its version as checkpoint;
      // the replica has not replayed it.
      const device = `ahead-${randomUUID()}`;
      const heard = await create('Heard live');
      const checkpoint = heard.version;
      const later = await create('Written after');
      expect(later.version).toBeGreaterThan(checkpoint);
      // The replica would answer nothing past an older version; the primary has the later write.
      const delta = await pull(device, checkpoint);
      expect(delta.nextVersion).toBeGreaterThanOrEqual(later.version);
      expect(names(delta)).toEqual(['Written after']);
      // A device at the replica's version keeps being served there (nothing new to it yet).
      expect(names(await pull(`fresh-${randomUUID()}`))).not.toContain('Written after');
    } finally {
      cluster.pauseReplay(false);
    }
    await replicated('Written after');
  }, 60_000);
});
