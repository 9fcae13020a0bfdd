import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from './helpers/test-db.js';
import { startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

const HOUR = 3600_000;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const ahead = (ms: number) => new Date(Date.now() + ms).toISOString();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(backends)('outreach eligibility, rule by rule, on %s', (backend) => {
  let app: TestApp;

  /** A new organisation (its own settings and terminal sessions): its admin key. */
  const org = async (settings?: Record<string, number>) => {
    const res = await app.api('POST', '/api/tenants', { body: { name: 'Org', slug: `org-${randomUUID().slice(0, 8)}` } });
    expect(res.status).toBe(201);
    const key = res.body.data.apiKey as string;
    if (settings) expect((await app.api('PATCH', '/api/settings', { key, body: settings })).status).toBe(200);
    return key;
  };
  const project = async (key: string, extra: Record<string, unknown> = {}) => {
    const res = await app.api('POST', '/api/projects', { key, body: { projectId: `p-${randomUUID().slice(0, 8)}`, name: 'Solar', ...extra } });
    expect(res.status).toBe(201);
    return res.body.data.projectId as string;
  };
  const contact = async (key: string, extra: Record<string, unknown> = {}) => {
    const res = await app.api('POST', '/api/contacts', { key, body: { firstName: 'Cal', phonePrimary: uniquePhone(), ...extra } });
    expect(res.status).toBe(201);
    return res.body.data.id as string;
  };
  const link = async (key: string, projectId: string, contactId: string, extra: Record<string, unknown> = {}) => {
    const res = await app.api('POST', `/api/projects/${projectId}/contacts`, { key, body: { contactId, ...extra } });
    expect(res.status).toBeLessThan(300);
  };
  /** A linked pair in a new project. */
  const pair = async (key: string, opts: { project?: Record<string, unknown>; contact?: Record<string, unknown>; link?: Record<string, unknown> } = {}) => {
    const p = await project(key, opts.project);
    const c = await contact(key, opts.contact);
    await link(key, p, c, opts.link);
    return { p, c };
  };
  const call = async (key: string, p: string, c: string, startedAt: string) => {
    const res = await app.api('POST', '/api/call-sessions', { key, body: { projectId: p, contactId: c, outcome: 'no_answer', startedAt } });
    expect(res.status).toBe(201);
  };
  const terminal = async (key: string, body: Record<string, unknown>) => {
    const res = await app.api('POST', '/api/terminal-sessions', { key, body: { reason: 'closed', ...body } });
    expect(res.status).toBe(201);
  };
  /** The reason codes for a pair (empty: eligible), checked against `eligible`. */
  const reasons = async (key: string, p: string, c: string): Promise<string[]> => {
    const res = await app.api('GET', `/api/eligibility?projectId=${encodeURIComponent(p)}&contactId=${c}`, { key });
    expect(res.status).toBe(200);
    expect(res.body.data.eligible).toBe(res.body.data.reasons.length === 0);
    expect(res.body.data).toMatchObject({ projectId: p, contactId: c });
    for (const r of res.body.data.reasons) expect(r.message.length).toBeGreaterThan(5);
    return res.body.data.reasons.map((r: { code: string }) => r.code);
  };
  /** Whether the eligible-calls list of the project holds the pair. */
  const listed = async (key: string, p: string, c: string): Promise<boolean> => {
    const res = await app.api('GET', `/api/eligible-calls?projectId=${encodeURIComponent(p)}&limit=1000`, { key });
    expect(res.status).toBe(200);
    return res.body.data.some((e: { projectId: string; contactId: string }) => e.projectId === p && e.contactId === c);
  };
  /** Both answers agree: the pair's reasons are `expected`, and it is listed exactly when there are none. */
  const expectReasons = async (key: string, p: string, c: string, expected: string[]) => {
    expect((await reasons(key, p, c)).sort()).toEqual([...expected].sort());
    expect(await listed(key, p, c)).toBe(expected.length === 0);
  };

  let key: string;
  beforeAll(async () => {
    app = await startTestApp(backend);
    key = await org();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('lists a fresh linked pair as eligible, with its contact, and never an unlinked contact', async () => {
    const { p, c } = await pair(key);
    await expectReasons(key, p, c, []);
    const other = await contact(key);
    expect(await listed(key, p, other)).toBe(false);
    const res = await app.api('GET', `/api/eligible-calls?projectId=${p}`, { key });
    expect(res.body.data).toEqual([
      { projectId: p, projectName: 'Solar', contactId: c, contact: { firstName: 'Cal', lastName: null, phonePrimary: expect.any(String), email: null, preferredChannel: null } },
    ]);
    // Without projectId: across the organisation, at most `limit`.
    const all = await app.api('GET', '/api/eligible-calls?limit=1', { key });
    expect(all.body.data).toHaveLength(1);
  });

  it('project_suppressed: a suppressed project is not called', async () => {
    const { p, c } = await pair(key, { project: { callSuppressed: true } });
    await expectReasons(key, p, c, ['project_suppressed']);
    await app.api('POST', '/api/projects', { key, body: { projectId: p, name: 'Solar', callSuppressed: false } });
    await expectReasons(key, p, c, []);
  });

  it('do_not_call: a do-not-call contact is not called in any project', async () => {
    const { p, c } = await pair(key, { contact: { doNotCall: true } });
    await expectReasons(key, p, c, ['do_not_call']);
  });

  it('suppressed_for_project: suppressed in one project, callable in another', async () => {
    const { p, c } = await pair(key, { link: { suppressForProject: true } });
    await expectReasons(key, p, c, ['suppressed_for_project']);
    const p2 = await project(key);
    await link(key, p2, c);
    await expectReasons(key, p2, c, []);
  });

  it('terminal_project: a project-wide terminal session stops all its contacts; a pair terminal only that pair', async () => {
    const { p, c } = await pair(key);
    const c2 = await contact(key);
    await link(key, p, c2);
    await terminal(key, { scope: 'project', projectId: p, contactId: c });
    await expectReasons(key, p, c, ['terminal_project']);
    await expectReasons(key, p, c2, []);
    await terminal(key, { scope: 'project', projectId: p });
    await expectReasons(key, p, c2, ['terminal_project']);
    // The contact in another project is not touched.
    const p2 = await project(key);
    await link(key, p2, c);
    await expectReasons(key, p2, c, []);
  });

  it('terminal_contact: a contact terminal session stops that contact in every project', async () => {
    const { p, c } = await pair(key);
    const p2 = await project(key);
    await link(key, p2, c);
    const other = await contact(key);
    await link(key, p, other);
    await terminal(key, { scope: 'contact', contactId: c });
    await expectReasons(key, p, c, ['terminal_contact']);
    await expectReasons(key, p2, c, ['terminal_contact']);
    await expectReasons(key, p, other, []);
  });

  it('terminal_global: stops every call of the organisation, and only of it', async () => {
    const own = await org();
    const { p, c } = await pair(own);
    const elsewhere = await pair(key);
    await terminal(own, { scope: 'global' });
    await expectReasons(own, p, c, ['terminal_global']);
    expect((await app.api('GET', '/api/eligible-calls', { key: own })).body.data).toEqual([]);
    await expectReasons(key, elsewhere.p, elsewhere.c, []);
  });

  it('terminal sessions apply until expiresAt: an expired one never, an expiring one until it expires', async () => {
    const own = await org();
    const { p, c } = await pair(own);
    await terminal(own, { scope: 'contact', contactId: c, expiresAt: ago(1000) });
    await terminal(own, { scope: 'project', projectId: p, expiresAt: ago(1) });
    await expectReasons(own, p, c, []);
    await terminal(own, { scope: 'global', expiresAt: ahead(1500) });
    await terminal(own, { scope: 'project', projectId: p, contactId: c, expiresAt: ahead(1500) });
    await expectReasons(own, p, c, ['terminal_global', 'terminal_project']);
    await sleep(1700);
    await expectReasons(own, p, c, []);
  });

  it('cooldown: a call closes its project until startedAt + callCooldownHours; an older call does not', async () => {
    const { p, c } = await pair(key);
    const c2 = await contact(key);
    await link(key, p, c2);
    await call(key, p, c, ago(25 * HOUR)); // cooled down an hour ago
    await expectReasons(key, p, c2, []);
    await call(key, p, c, ago(1 * HOUR));
    // The cooldown is the project's: every contact of it waits.
    await expectReasons(key, p, c2, ['cooldown']);
    const res = await app.api('GET', `/api/eligibility?projectId=${p}&contactId=${c2}`, { key });
    expect(res.body.data.reasons[0].message).toContain(new Date(Date.parse(ago(HOUR)) + 24 * HOUR).toISOString().slice(0, 13));
    // A project whose nextCallEligibleAt is set in the future directly is cooling down too.
    const later = await pair(key, { project: { nextCallEligibleAt: ahead(HOUR) } });
    await expectReasons(key, later.p, later.c, ['cooldown']);
  });

  it('daily_limit: the pair’s calls in the rolling last 24 hours reach callDailyLimit', async () => {
    const own = await org({ callCooldownHours: 0, callDailyLimit: 2, callWeeklyLimit: 100 });
    const { p, c } = await pair(own);
    await call(own, p, c, ago(24 * HOUR + 60_000)); // just outside the window
    await call(own, p, c, ago(23 * HOUR + 59 * 60_000));
    await expectReasons(own, p, c, []);
    await call(own, p, c, ago(60_000));
    await expectReasons(own, p, c, ['daily_limit']);
    // Per pair: the same contact in another project has its own count.
    const p2 = await project(own);
    await link(own, p2, c);
    await expectReasons(own, p2, c, []);
  });

  it('weekly_limit: the pair’s calls in the rolling last 7 days reach callWeeklyLimit', async () => {
    const own = await org({ callCooldownHours: 0, callDailyLimit: 10, callWeeklyLimit: 3 });
    const { p, c } = await pair(own);
    await call(own, p, c, ago(7 * 24 * HOUR + 60_000)); // outside the week
    await call(own, p, c, ago(6 * 24 * HOUR));
    await call(own, p, c, ago(3 * 24 * HOUR));
    await expectReasons(own, p, c, []);
    await call(own, p, c, ago(2 * 24 * HOUR));
    await expectReasons(own, p, c, ['weekly_limit']);
  });

  it('lists every reason that applies at once', async () => {
    const own = await org({ callCooldownHours: 48, callDailyLimit: 1, callWeeklyLimit: 1 });
    const { p, c } = await pair(own, { project: { callSuppressed: true }, contact: { doNotCall: true }, link: { suppressForProject: true } });
    await call(own, p, c, ago(HOUR));
    await terminal(own, { scope: 'project', projectId: p });
    await terminal(own, { scope: 'contact', contactId: c });
    await terminal(own, { scope: 'global' });
    await expectReasons(own, p, c, [
      'project_suppressed',
      'do_not_call',
      'suppressed_for_project',
      'terminal_project',
      'terminal_contact',
      'terminal_global',
      'cooldown',
      'daily_limit',
      'weekly_limit',
    ]);
  });

  it('leaves deleted contacts out of the list, and answers 404 for their eligibility', async () => {
    const { p, c } = await pair(key);
    expect((await app.api('DELETE', `/api/contacts/${c}`, { key })).status).toBe(204);
    expect(await listed(key, p, c)).toBe(false);
    expect((await app.api('GET', `/api/eligibility?projectId=${p}&contactId=${c}`, { key })).status).toBe(404);
  });

  it('answers 404 for unknown or foreign projects and contacts, 400 for bad parameters', async () => {
    const { p, c } = await pair(key);
    const other = await org();
    expect((await app.api('GET', `/api/eligibility?projectId=${p}&contactId=${c}`, { key: other })).status).toBe(404);
    expect((await app.api('GET', `/api/eligible-calls?projectId=${p}`, { key: other })).status).toBe(404);
    expect((await app.api('GET', `/api/eligibility?projectId=nope-${randomUUID()}&contactId=${c}`, { key })).status).toBe(404);
    expect((await app.api('GET', `/api/eligibility?projectId=${p}&contactId=${randomUUID()}`, { key })).status).toBe(404);
    expect((await app.api('GET', `/api/eligibility?projectId=${p}&contactId=not-a-uuid`, { key })).status).toBe(404);
    for (const query of [`projectId=${p}`, `contactId=${c}`, `projectId=${p}&contactId=${c}&x=1`]) {
      expect((await app.api('GET', `/api/eligibility?${query}`, { key })).status, query).toBe(400);
    }
    for (const query of ['limit=0', 'limit=1001', 'limit=abc', 'other=1']) {
      const res = await app.api('GET', `/api/eligible-calls?${query}`, { key });
      expect(res.status, query).toBe(400);
      expect(res.body.error).toBe('VALIDATION_FAILED');
    }
  });
});
