import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createAgent, startTestApp, uniquePhone, type TestApp } from '../../../packages/server/test/helpers/test-app.js';

/**
 * The field app (issue 14) in a real headless browser: Debian's Chromium driven by
 * playwright-core (never a downloaded browser), two browser contexts as two phones. Screenshots
 * go to test-artifacts/ at the root.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Never skipped: these tests are the proof that the app works offline in a browser.
if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
const ARTIFACTS = join(import.meta.dirname, '..', '..', '..', 'test-artifacts');
const ANA = { code: 'FIELDANA', password: 'ana-password-123' };
const BEN = { code: 'FIELDBEN', password: 'ben-password-123' };

let app: TestApp;
let browser: Browser;
const problems: string[] = [];

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  app = await startTestApp('pglite');
  await createAgent(app, ANA.code, { password: ANA.password, name: 'Ana Field' });
  await createAgent(app, BEN.code, { password: BEN.password, name: 'Ben Field' });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await app?.close();
});

/** A phone: its own browser context (storage, service worker, network), recording errors and CSP violations. */
async function phone(viewport = { width: 390, height: 844 }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('console', (msg) => {
    // Requests that fail while the test holds the phone offline are expected; anything else is a fault.
    if (msg.type() === 'error' && !/ERR_INTERNET_DISCONNECTED|Failed to load resource|net::ERR/.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  return { context, page };
}

async function signIn(page: Page, who: { code: string; password: string }, base = app.url) {
  await page.goto(`${base}/app/`);
  await page.fill('#login', who.code);
  await page.fill('#password', who.password);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#status-bar:not([hidden])');
  await page.waitForSelector('#net.online', { timeout: 10_000 });
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `field-app-${name}.png`), fullPage: true });
const rows = (page: Page, text: string) => page.locator('#contact-list li', { hasText: text });

/** The server's contacts whose name matches `search` (as the admin sees them). */
async function serverContacts(search: string) {
  const res = await app.api('GET', `/api/contacts?search=${encodeURIComponent(search)}&limit=50`);
  expect(res.status).toBe(200);
  return res.body.data as { id: string; firstName: string; lastName: string | null; notes: string | null }[];
}

describe('the field app at /app/', () => {
  it('is served with a strict CSP, no inline script or style, an installable manifest and a service worker; bad paths are 404 envelopes', async () => {
    const redirect = await fetch(`${app.url}/app`, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe('/app/');
    const res = await fetch(`${app.url}/app/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "worker-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]) expect(csp).toContain(directive);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toContain('style=');
    expect(html).toContain('rel="manifest"');

    const manifest = await fetch(`${app.url}/app/manifest.webmanifest`);
    expect(manifest.headers.get('content-type')).toMatch(/application\/manifest\+json/);
    const m = await manifest.json();
    expect(m).toMatchObject({ start_url: './', scope: './', display: 'standalone', name: expect.any(String), short_name: expect.any(String) });
    for (const icon of m.icons) expect((await fetch(`${app.url}/app/${icon.src}`)).headers.get('content-type')).toBe('image/svg+xml');
    for (const asset of ['app.js', 'sw.js', 'style.css']) {
      const a = await fetch(`${app.url}/app/${asset}`);
      expect(a.status, asset).toBe(200);
      expect(a.headers.get('content-security-policy'), asset).toBe(csp);
    }
    expect(await (await fetch(`${app.url}/app/sw.js`)).text()).toContain('fieldsync-shell-');

    for (const path of ['/app/nope.js', '/app/..%2fbuild.mjs', '/app/%2e%2e/%2e%2e/package.json', '/app/src/main.ts', '/app/.env', `/app/${'a'.repeat(300)}`]) {
      const bad = await fetch(app.url + path);
      expect(bad.status, path).toBe(404);
      expect(await bad.json(), path).toMatchObject({ success: false, error: 'NOT_FOUND' });
    }
  });

  it("serves the app's files without spending the address's request budget (a page load is several files)", async () => {
    const limited = await startTestApp('pglite', { RATE_LIMIT_PER_MINUTE: '5' });
    try {
      for (let i = 0; i < 3; i++) {
        for (const path of ['/app/', '/app/app.js', '/app/style.css', '/app/sw.js', '/app/manifest.webmanifest', '/app/icon.svg']) {
          expect((await fetch(limited.url + path)).status, path).toBe(200);
        }
      }
      // The API it calls is limited as ever.
      const statuses = [];
      for (let i = 0; i < 7; i++) statuses.push((await fetch(`${limited.url}/api/contacts`)).status);
      expect(statuses).toContain(429);
    } finally {
      await limited.close();
    }
  });

  it('two phones: live updates, one offline edits and creates, reloads with its outbox in IndexedDB, comes back and converges once', async () => {
    const a = await phone();
    const b = await phone();
    await signIn(a.page, ANA);
    await signIn(b.page, BEN);

    // A creates a contact through the form; B's list shows it live, without a reload.
    await a.page.click('#new-contact');
    await a.page.fill('#contact-firstName', 'Ada');
    await a.page.fill('#contact-lastName', 'Fieldtest');
    await a.page.fill('#contact-phonePrimary', uniquePhone());
    await a.page.fill('#contact-company', '<img src=x onerror=alert(1)>');
    await a.page.click('#contact-form button[type=submit]');
    await rows(a.page, 'Ada Fieldtest').waitFor();
    await rows(b.page, 'Ada Fieldtest').waitFor({ timeout: 10_000 });
    // Escaped output: the markup in a field is text, not an element.
    expect(await rows(b.page, 'Ada Fieldtest').locator('.sub').textContent()).toContain('<img src=x onerror=alert(1)>');
    expect(await b.page.locator('#contact-list img').count()).toBe(0);
    await a.page.waitForSelector('#pending:text("No changes waiting")');
    await shot(b.page, 'contacts');

    // B searches; the live list narrows.
    await b.page.fill('#contact-search', 'fieldtest');
    await expect.poll(() => b.page.locator('#contact-list li[data-id]').count()).toBe(1);
    await b.page.fill('#contact-search', '');

    // A goes offline: the status bar says so; A edits Ada and creates Olga.
    await a.context.setOffline(true);
    await a.page.waitForSelector('#net.offline', { timeout: 10_000 });
    await rows(a.page, 'Ada Fieldtest').click();
    await a.page.fill('#contact-notes', 'met offline, call back Friday');
    await a.page.click('#contact-form button[type=submit]');
    await a.page.click('#new-contact');
    await a.page.fill('#contact-firstName', 'Olga');
    await a.page.fill('#contact-lastName', 'Offline');
    await a.page.fill('#contact-phonePrimary', uniquePhone());
    await a.page.click('#contact-form button[type=submit]');
    await a.page.waitForSelector('#pending:text("2 changes waiting")');
    await rows(a.page, 'Olga Offline').locator('.badge').waitFor();
    await shot(a.page, 'offline');

    // A reload while offline: the shell from the service worker, the data and the outbox from IndexedDB.
    const reload = await a.page.reload();
    expect(reload?.fromServiceWorker()).toBe(true);
    await rows(a.page, 'Olga Offline').waitFor();
    await a.page.waitForSelector('#pending:text("2 changes waiting")');
    await a.page.waitForSelector('#net.offline');
    expect(await serverContacts('Olga')).toEqual([]);
    await expect.poll(() => rows(b.page, 'Olga Offline').count(), { timeout: 1000 }).toBe(0);

    // Back online: A pushes its outbox once; the server and B converge.
    await a.context.setOffline(false);
    await a.page.waitForSelector('#pending:text("No changes waiting")', { timeout: 15_000 });
    await a.page.waitForSelector('#net.online', { timeout: 15_000 });
    const olgas = await serverContacts('Olga Offline');
    expect(olgas).toHaveLength(1);
    const adas = await serverContacts('Fieldtest');
    expect(adas).toHaveLength(1);
    expect(adas[0].notes).toBe('met offline, call back Friday');
    await rows(b.page, 'Olga Offline').waitFor({ timeout: 10_000 });
    await expect.poll(() => rows(b.page, 'Olga Offline').count()).toBe(1);
    await rows(b.page, 'Ada Fieldtest').click();
    await expect.poll(() => b.page.inputValue('#contact-notes'), { timeout: 10_000 }).toBe('met offline, call back Friday');
    // Nothing more arrives later (no duplicate from a re-sent push).
    await new Promise((r) => setTimeout(r, 1000));
    expect(await serverContacts('Olga Offline')).toHaveLength(1);
    expect(await rows(a.page, 'Olga Offline').count()).toBe(1);
    await expect.poll(() => a.page.locator('#contact-list .badge').count()).toBe(0);
    await shot(a.page, 'converged');

    // Lists: a list and an item, ticked.
    await a.page.click('#tabs a[data-tab=lists]');
    await a.page.fill('#new-space', 'Route 66');
    await a.page.click('#new-space + button');
    await a.page.waitForSelector('#items-title:text("Route 66")');
    await a.page.fill('#new-item', 'Visit the diner');
    await a.page.click('#new-item + button');
    await a.page.locator('#item-list li', { hasText: 'Visit the diner' }).locator('input[type=checkbox]').check();
    await a.page.waitForSelector('#item-list li.done');
    await a.page.waitForSelector('#pending:text("No changes waiting")', { timeout: 10_000 });
    const spaces = await app.api('GET', '/api/spaces');
    expect(spaces.status).toBe(200);
    await shot(a.page, 'lists');

    // Chat: A starts a conversation with B and writes; B reads it live.
    await a.page.click('#tabs a[data-tab=chat]');
    await a.page.selectOption('#chat-user', { label: `Ben Field (${BEN.code})` });
    await a.page.click('#chat-user + button');
    // The server keeps one private conversation per pair (its own id): the app moves to it once pushed.
    await a.page.waitForSelector('#pending:text("No changes waiting")', { timeout: 10_000 });
    await a.page.waitForSelector('#conversation-list li.selected', { timeout: 10_000 });
    await a.page.waitForSelector('#message-input:not([disabled])');
    await a.page.fill('#message-input', 'Heading to Ada now');
    await a.page.click('#message-form button');
    await a.page.locator('#message-list li', { hasText: 'Heading to Ada now' }).waitFor();
    await b.page.click('#tabs a[data-tab=chat]');
    await b.page.locator('#conversation-list li', { hasText: 'Ana Field' }).click({ timeout: 10_000 });
    await b.page.locator('#message-list li', { hasText: 'Heading to Ada now' }).waitFor({ timeout: 10_000 });
    await shot(b.page, 'chat');

    await a.context.close();
    await b.context.close();
    expect(problems).toEqual([]);
  }, 120_000);

  it('opens offline after the first load: the service worker keeps the shell (the server gone entirely)', async () => {
    const own = await startTestApp('pglite');
    try {
      await createAgent(own, ANA.code, { password: ANA.password, name: 'Ana Field' });
      const { context, page } = await phone();
      await signIn(page, ANA, own.url);
      await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
      // Installable on a phone: Chromium's own check of the manifest, icons and service worker
      // (it lists every unmet criterion; a test context is incognito, where nothing installs).
      const cdp = await context.newCDPSession(page);
      const { installabilityErrors } = (await cdp.send('Page.getInstallabilityErrors')) as { installabilityErrors: { errorId: string }[] };
      expect(installabilityErrors.filter((e) => e.errorId !== 'in-incognito')).toEqual([]);
      await own.close(); // no server at all now: only the service worker's cache can answer
      const reload = await page.reload();
      expect(reload?.status()).toBe(200);
      expect(reload?.fromServiceWorker()).toBe(true);
      await page.waitForSelector('#status-bar:not([hidden])');
      await page.waitForSelector('#net.offline');
      expect(await page.locator('#contact-list').count()).toBe(1);
      await context.close();
    } finally {
      await own.close().catch(() => undefined);
    }
    expect(problems).toEqual([]);
  }, 60_000);
});
