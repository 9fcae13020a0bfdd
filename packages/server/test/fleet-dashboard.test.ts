import { existsSync, mkdirSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createAgent, startTestApp, uniquePhone, type TestApp } from './helpers/test-app.js';

/**
 * The dashboard in a real headless browser (SPEC §11, issue 13): Debian's Chromium driven by
 * playwright-core (never a downloaded browser). Screenshots go to test-artifacts/ at the root.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(import.meta.dirname, '..', '..', '..', 'test-artifacts');
const available = existsSync(CHROMIUM);
// CI installs Chromium (.ci/run): there a missing browser is a failure, not a skip.
if (!available && process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium`);
if (!available) console.warn(`dashboard browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install -y chromium)`);

const MANAGER = { code: 'DASHMGR', password: 'manager-password-123' };
const AGENT = { code: 'DASHAG', password: 'agent-password-1234' };

describe.skipIf(!available)('the dashboard in Chromium', () => {
  let app: TestApp;
  let browser: Browser;
  let agentKey: string;
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    app = await startTestApp('pglite');
    await createAgent(app, MANAGER.code, { role: 'manager', password: MANAGER.password });
    agentKey = (await createAgent(app, AGENT.code, { password: AGENT.password })).apiKey;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  /** A fresh page that records console errors, CSP violations and uncaught errors. */
  const open = async (viewport = { width: 1280, height: 900 }) => {
    const page = await browser.newPage({ viewport });
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    await page.goto(`${app.url}/dashboard`);
    return page;
  };
  const signIn = async (page: Page, who = MANAGER) => {
    await page.fill('#login', who.code);
    await page.fill('#password', who.password);
    await page.click('#login-form button[type=submit]');
  };
  const pull = (deviceId: string) =>
    app.api('GET', '/api/sync/delta?version=0', { key: agentKey, headers: { 'x-device-id': deviceId } });
  const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `dashboard-${name}.png`), fullPage: true });

  it('is served with a strict Content-Security-Policy and no inline script', async () => {
    const res = await fetch(`${app.url}/dashboard/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toContain('style=');
    for (const asset of ['/dashboard/app.js', '/dashboard/vendor/uplot/uPlot.esm.js', '/dashboard/vendor/socket.io/socket.io.esm.min.js']) {
      const a = await fetch(app.url + asset);
      expect(a.status, asset).toBe(200);
      expect(a.headers.get('content-type'), asset).toMatch(/javascript/);
      expect(a.headers.get('content-security-policy'), asset).toBe(csp);
    }
    // Nothing else of the packages is reachable.
    expect((await fetch(`${app.url}/dashboard/vendor/uplot/uPlot.cjs.js`)).status).toBe(404);
    expect((await fetch(`${app.url}/dashboard/vendor/socket.io/../../../package.json`)).status).toBe(404);
  });

  it('logs a manager in with login and password (keyboard only) and shows the devices created by the test, live', async () => {
    for (const id of ['dash-phone-1', 'dash-phone-2']) expect((await pull(id)).status).toBe(200);
    const page = await open();
    await page.waitForSelector('#login:focus');
    await page.keyboard.type(MANAGER.code);
    await page.keyboard.press('Tab');
    await page.keyboard.type(MANAGER.password);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#fleet-table tr[data-device-id="dash-phone-1"]');
    await page.waitForSelector('#fleet-table tr[data-device-id="dash-phone-2"]');
    const row = page.locator('#fleet-table tr[data-device-id="dash-phone-1"]');
    await expect.poll(() => row.locator('th').textContent()).toBe('dash-phone-1');
    expect(await row.locator('td').nth(0).textContent()).toBe(AGENT.code);
    expect(await row.locator('.score').textContent()).toBe('100');
    await page.waitForSelector('#live:text("live")');

    // A device that syncs now appears without a reload (fleet_update over Socket.IO).
    expect((await pull('dash-phone-3')).status).toBe(200);
    await page.waitForSelector('#fleet-table tr[data-device-id="dash-phone-3"]', { timeout: 10_000 });
    await shot(page, 'fleet');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, 'fleet-phone');
    await page.setViewportSize({ width: 1280, height: 900 });

    // The other views render from the API: sync charts (uPlot), alerts.
    await page.click('button[data-view="sync"]');
    await page.waitForSelector('#chart-volume .uplot');
    await shot(page, 'sync');
    await page.click('button[data-view="alerts"]');
    await page.waitForSelector('#alerts-active li');
    // Eligibility from outreach's API: a project with one linked contact is one callable pair,
    // and the one-pair check says why it may be called.
    const project = await app.api('POST', '/api/projects', { body: { projectId: 'dash-proj', name: 'Dashboard campaign' } });
    expect(project.status, project.text).toBe(201);
    const callee = await app.api('POST', '/api/contacts', { body: { firstName: 'Elig', lastName: 'Ible', phonePrimary: uniquePhone() } });
    const link = await app.api('POST', '/api/projects/dash-proj/contacts', { body: { contactId: callee.body.data.id } });
    expect(link.status, link.text).toBeLessThan(300);
    await page.click('button[data-view="eligibility"]');
    await page.fill('#eligibility-project', 'dash-proj');
    await page.press('#eligibility-project', 'Enter');
    await expect.poll(() => page.locator('#eligibility-status').textContent()).toBe('1 callable pairs in project dash-proj');
    expect(await page.locator('#eligibility-table tbody tr td').nth(0).textContent()).toBe('Dashboard campaign (dash-proj)');
    expect(await page.locator('#eligibility-table tbody tr td').nth(1).textContent()).toBe('Elig Ible');
    await page.fill('#pair-project', 'dash-proj');
    await page.fill('#pair-contact', callee.body.data.id);
    await page.press('#pair-contact', 'Enter');
    await expect.poll(() => page.locator('#pair-result').textContent()).toContain('Eligible: this contact may be called now.');
    await shot(page, 'eligibility');
    await page.close();
  });

  it('resolves conflicts by real clicks: a merged record from the editor, and the device\'s change', async () => {
    expect((await app.api('PUT', '/api/conflict-policies/contacts', { body: { strategy: 'manual' } })).status).toBe(200);
    const conflictOn = async (notes: string) => {
      const created = await app.api('POST', '/api/contacts', { body: { firstName: 'Queue', lastName: notes, phonePrimary: uniquePhone() } });
      const contact = created.body.data;
      expect((await app.api('PATCH', `/api/contacts/${contact.id}`, { body: { notes: 'office edit' } })).status).toBe(200);
      const pushed = await app.api('POST', '/api/sync', {
        key: agentKey,
        body: {
          deviceId: 'dash-phone-1',
          changes: [{ changeId: randomUUID(), id: contact.id, entityType: 'contacts', operation: 'update', baseVersion: contact.version, timestamp: new Date().toISOString(), data: { notes } }],
        },
      });
      expect(pushed.body.data.conflicts[0]).toMatchObject({ outcome: 'pending_review' });
      const pending = await app.api('GET', '/api/conflicts?status=pending&limit=500');
      return { contactId: contact.id as string, conflictId: pending.body.data.find((c: { recordId: string }) => c.recordId === contact.id).id as string };
    };
    const merged = await conflictOn('from the phone');
    const taken = await conflictOn('phone wins');

    const page = await open({ width: 390, height: 844 });
    await signIn(page);
    await page.waitForSelector('#fleet-table');
    await page.click('button[data-view="conflicts"]');
    const card = page.locator(`article[data-conflict-id="${merged.conflictId}"]`);
    await card.waitFor();
    await shot(page, 'conflicts-phone');
    const editor = card.locator('input.merged-field[data-field="notes"]');
    expect(await editor.isHidden()).toBe(true);
    await card.getByRole('button', { name: 'Edit merged' }).click();
    expect(await editor.isVisible()).toBe(true);
    expect(await editor.inputValue()).toBe('from the phone');
    await card.getByRole('button', { name: 'Server value' }).click();
    expect(await editor.inputValue()).toBe('office edit');
    await editor.fill('merged by a manager <b>');
    await shot(page, 'conflict-merge-editor');
    await card.getByRole('button', { name: 'Save merged' }).click();
    await card.waitFor({ state: 'detached' });

    await page.locator(`article[data-conflict-id="${taken.conflictId}"]`).getByRole('button', { name: 'Take device' }).click();
    await page.locator(`article[data-conflict-id="${taken.conflictId}"]`).waitFor({ state: 'detached' });

    const resolved = await app.api('GET', '/api/conflicts?status=resolved&limit=500');
    const byId = new Map(resolved.body.data.map((c: { id: string }) => [c.id, c]));
    expect(byId.get(merged.conflictId)).toMatchObject({ status: 'resolved', resolution: 'merged' });
    expect(byId.get(taken.conflictId)).toMatchObject({ status: 'resolved', resolution: 'client' });
    expect((await app.api('GET', `/api/contacts/${merged.contactId}`)).body.data).toMatchObject({ notes: 'merged by a manager <b>', lastName: 'from the phone' });
    expect((await app.api('GET', `/api/contacts/${taken.contactId}`)).body.data).toMatchObject({ notes: 'phone wins' });
    await page.close();
  });

  it('shows an XSS-shaped contact name as text and runs none of it', async () => {
    const name = '<img src=x onerror="window.__xss=1">';
    const last = '<script>window.__xss=2</script>';
    const created = await app.api('POST', '/api/contacts', { body: { firstName: name, lastName: last, company: '"><svg onload=alert(1)>', phonePrimary: uniquePhone() } });
    expect(created.status).toBe(201);
    const page = await open();
    await signIn(page);
    await page.waitForSelector('#fleet-table');
    await page.click('button[data-view="contacts"]');
    await page.fill('#contact-search', 'onerror');
    await page.press('#contact-search', 'Enter');
    const row = page.locator(`#contacts-table tr[data-contact-id="${created.body.data.id}"]`);
    await row.waitFor();
    expect(await row.locator('th').textContent()).toBe(`${name} ${last}`);
    expect(await row.locator('td').nth(2).textContent()).toBe('"><svg onload=alert(1)>');
    expect(await page.locator('#contacts-table img, #contacts-table script, #contacts-table svg').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    await shot(page, 'contacts-xss');
    await page.close();
  });

  it('turns an agent away: the dashboard is for admins and managers', async () => {
    const page = await open();
    await signIn(page, AGENT);
    await page.waitForSelector('#login-error:text("admins and managers")');
    expect(await page.locator('#app-view').isHidden()).toBe(true);
    await page.close();
  });

  it('produced no console error, CSP violation or uncaught error on any page', () => {
    // Expected 4xx answers the pages handled show up as failed resource loads; nothing else may.
    expect(problems.filter((p) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(p))).toEqual([]);
  });
});
