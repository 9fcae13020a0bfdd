import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { claimRound, createPeriodicJob } from '../src/jobs/periodic.js';
import { backends, openTestDb, type TestDb } from './helpers/test-db.js';
import { createPostgresDb } from '../src/db/postgres.js';

describe.each(backends)('rounds of a periodic job shared by instances on %s', (backend) => {
  let testDb: TestDb;
  beforeAll(async () => {
    testDb = await openTestDb(backend);
  });
  afterAll(() => testDb?.drop());

  it('gives a round to one claimant within the gap, and again once the gap has passed', async () => {
    expect(await claimRound(testDb.db, 'gap', 60_000)).toBe(true);
    expect(await claimRound(testDb.db, 'gap', 60_000)).toBe(false);
    // Another job's rounds are its own.
    expect(await claimRound(testDb.db, 'other', 60_000)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(await claimRound(testDb.db, 'gap', 20)).toBe(true);
  });

  it('gives one yes to many instances claiming at once', async () => {
    // On PostgreSQL each claimant has a pool of its own, as instances do.
    const dbs = backend === 'postgres' ? Array.from({ length: 6 }, () => createPostgresDb(testDb.url!, { max: 1 })) : [testDb.db];
    try {
      const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => claimRound(dbs[i % dbs.length], 'race', 60_000)));
      expect(answers.filter(Boolean)).toHaveLength(1);
    } finally {
      if (backend === 'postgres') await Promise.all(dbs.map((db) => db.close()));
    }
  });

  it('runs scheduled rounds only when claimed, and tick() always', async () => {
    let rounds = 0;
    let claims = 0;
    const job = createPeriodicJob({
      intervalMs: 20,
      logger: pino({ level: 'silent' }),
      failure: 'round failed',
      work: async () => {
        rounds++;
      },
      claim: async () => {
        claims++;
        return claims % 2 === 0;
      },
    });
    await job.run();
    await new Promise((resolve) => setTimeout(resolve, 250));
    await job.stop();
    expect(claims).toBeGreaterThanOrEqual(4);
    expect(rounds).toBe(Math.floor(claims / 2));
    const [roundsBefore, claimsBefore] = [rounds, claims];
    await job.tick();
    expect(rounds).toBe(roundsBefore + 1);
    expect(claims).toBe(claimsBefore);
  });
});
