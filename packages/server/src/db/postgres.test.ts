import { describe, expect, it } from 'vitest';
import { createScratchDatabase } from '../../test/helpers/test-db.js';
import { createPostgresDb } from './postgres.js';

describe.runIf(process.env.TEST_DATABASE_URL)('the PostgreSQL adapter', () => {
  it('plans a statement that asks for a generic plan once for all values, never afresh per run', async () => {
    const scratch = await createScratchDatabase();
    // One connection per pool, so every run below meets the same session.
    const db = createPostgresDb(scratch.url, { max: 1 });
    try {
      const sql = 'SELECT count(*)::int AS n FROM generate_series(1, $1::int) AS g WHERE g > $2::int';
      for (let i = 0; i < 7; i++) {
        expect((await db.query<{ n: number }>(sql, [10 + i, 5], { prepare: 'generic-test', plan: 'generic' })).rows).toEqual([{ n: 5 + i }]);
      }
      const plans = await db.query<{ generic_plans: number; custom_plans: number }>(
        'SELECT generic_plans::int, custom_plans::int FROM pg_prepared_statements WHERE name = $1',
        ['generic-test'],
        { prepare: 'generic-test-plans', plan: 'generic' },
      );
      expect(plans.rows).toEqual([{ generic_plans: 7, custom_plans: 0 }]);
      // Other statements keep PostgreSQL's own choice: the first runs of a named statement get custom plans.
      for (let i = 0; i < 2; i++) await db.query(sql, [10 + i, 5], { prepare: 'custom-test' });
      const custom = await db.query<{ custom_plans: number }>('SELECT custom_plans::int FROM pg_prepared_statements WHERE name = $1', ['custom-test'], {
        prepare: 'custom-test-plans',
      });
      expect(custom.rows).toEqual([{ custom_plans: 2 }]);
    } finally {
      await db.close();
      await scratch.drop();
    }
  });
});
