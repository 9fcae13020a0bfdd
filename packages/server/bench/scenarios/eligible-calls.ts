import { NotAvailable, type Scenario } from '../lib/types.js';

/** SPEC §12's eligible-calls query needs projects (SPEC §9), which the server does not have yet. */
export const eligibleCalls: Scenario = {
  name: 'eligible-calls',
  title: 'eligible-calls query, 100k contacts x 1k projects',
  budgetMs: () => 10_000,
  async run(ctx) {
    const { rows } = await ctx.pool.query<{ t: string | null }>("SELECT to_regclass('projects')::text AS t");
    if (rows[0].t === null) {
      throw new NotAvailable('the outreach module (projects, project contacts, call sessions; SPEC §9) does not exist yet: no projects to generate, no eligible-calls query to time');
    }
    throw new NotAvailable('a projects table exists now, but this suite has no generator for 1k projects nor the eligible-calls request yet: add bench/scenarios/eligible-calls.ts');
  },
};
