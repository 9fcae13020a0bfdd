import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, startTestApp, type TestApp } from './helpers/test-app.js';
import { authedProbe, closeAll, type Probe } from './helpers/sockets.js';

/*
 * Fleet operations across two instances of one deployment (PostgreSQL and Redis, SPEC §11 and
 * §14): analytics of both instances add up, alerts are raised once, and a dashboard watching
 * on one instance hears about devices syncing on the other.
 */

const clustered = Boolean(process.env.TEST_DATABASE_URL && process.env.TEST_REDIS_URL);

describe.runIf(clustered)('fleet operations across two instances through Redis', () => {
  let one: TestApp;
  let two: TestApp;
  let agentKey: string;
  let managerKey: string;
  const open: Probe[] = [];

  beforeAll(async () => {
    const env = { REDIS_URL: process.env.TEST_REDIS_URL! };
    one = await startTestApp('postgres', env);
    two = await startTestApp('postgres', env, { sharedDb: one.testDb });
    const tag = randomUUID().slice(0, 6);
    agentKey = (await createAgent(one, `fa-${tag}`)).apiKey;
    managerKey = (await createAgent(one, `fm-${tag}`, { role: 'manager' })).apiKey;
  });
  afterAll(async () => {
    closeAll(...open);
    await two?.close();
    await one?.close();
  });

  const pull = (app: TestApp, deviceId: string) => app.api('GET', '/api/sync/delta?version=0', { key: agentKey, headers: { 'x-device-id': deviceId } });

  it('adds up the sync analytics of both instances in the same hour, and answers it the same on each', async () => {
    const before = (await one.api('GET', '/api/analytics/sync', { key: managerKey })).body.data.totals.pulls as number;
    for (let i = 0; i < 3; i++) expect((await pull(one, 'cluster-phone-1')).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await pull(two, 'cluster-phone-2')).status).toBe(200);
    await Promise.all([one.built.services.analytics.flush(), two.built.services.analytics.flush()]);
    for (const app of [one, two]) {
      const totals = (await app.api('GET', '/api/analytics/sync', { key: managerKey })).body.data.totals;
      expect(totals.pulls).toBe(before + 5);
    }
  });

  it('raises one alert when both instances evaluate at once', async () => {
    expect((await pull(one, 'cluster-failing')).status).toBe(200);
    const failures = [one, two].flatMap((app) =>
      Array.from({ length: 20 }, () => app.api('POST', '/api/sync', { key: agentKey, body: { deviceId: 'cluster-failing', changes: [], lastSyncVersion: 2 ** 60 } })),
    );
    expect((await Promise.all(failures)).every((r) => r.status === 400)).toBe(true);
    await Promise.all([one.built.services.alertsJob.tick(), two.built.services.alertsJob.tick()]);
    const active = (await two.api('GET', '/api/alerts', { key: managerKey })).body.data as { type: string; value: number }[];
    expect(active.filter((a) => a.type === 'failed_syncs_per_minute')).toHaveLength(1);
    expect(active.find((a) => a.type === 'failed_syncs_per_minute')!.value).toBe(8);
  });

  it('tells a dashboard watching on one instance about a device syncing on the other', async () => {
    const console = await authedProbe(two.url, { apiKey: managerKey, deviceId: 'cluster-console' });
    open.push(console);
    expect((await console.ack('fleet:watch', {})).success).toBe(true);
    expect((await pull(one, 'cluster-phone-3')).status).toBe(200);
    await console.waitFor('fleet_update', (p) => p.deviceIds.includes('cluster-phone-3'));
  });
});
