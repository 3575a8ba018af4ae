import type { Browser, Page } from 'playwright-core';
import { createApiKey } from '../../src/auth/api-keys';
import type { Gateway } from '../../src/gateway';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { describeInChromium, launchChromium } from '../helpers/chromium';
import { postNdjson, startTestGateway } from '../helpers/gateway';

// The pages in a real headless Chromium under the policies the gateway sends (security-headers.test.ts
// checks the headers): /docs works with scripts and styles from 'self' only, and the status page, with
// AUTH_REQUIRED=true and no key, lists rejections by code without what clients sent, then shows the
// messages once an admin key is entered. Skipped without Chromium, like status-page-browser.test.ts.

const describeInBrowser = describeInChromium('pages-browser.test.ts', 'the pages were not tested under their CSP');

/** A page that records CSP violations, script errors and console errors. */
async function watchedPage(browser: Browser): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  await page.exposeFunction('reportViolation', (text: string) => problems.push(`CSP: ${text}`));
  // A string: this file is compiled without the DOM's types.
  await page.addInitScript(`document.addEventListener('securitypolicyviolation', (event) =>
    window.reportViolation(event.violatedDirective + ' blocked ' + event.blockedURI + ' (' + event.sourceFile + ':' + event.lineNumber + ')'));`);
  return { page, problems };
}

describeInBrowser('the pages in Chromium, under their Content-Security-Policy', () => {
  const FIELD = 'field_name_from_a_client_x4q';
  let db: TestDatabase;
  let gateway: Gateway;
  let browser: Browser;
  let adminKey: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.pool.query(`INSERT INTO users (id, name) VALUES (1, 'one')`);
    adminKey = (await createApiKey(db.pool, 'pages-admin', 'admin')).key;
    const ingestKey = (await createApiKey(db.pool, 'pages-ingest', 'ingest')).key;
    gateway = await startTestGateway(db, { AUTH_REQUIRED: 'true' });
    const line = (extra: Record<string, unknown>) =>
      JSON.stringify({
        user_id: 1,
        talked_time: 1,
        microphone_used: true,
        speaker_used: false,
        time_recorded: 1_700_000_000_000,
        ...extra,
      });
    const answer = await postNdjson(`${gateway.url}/v1/metrics/bulk`, `${line({})}\n${line({ [FIELD]: 1 })}\n`, {
      authorization: `Bearer ${ingestKey}`,
    });
    expect(answer.body).toMatchObject({ accepted: 1, rejected: 1 });
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await gateway?.stop();
    await db?.drop();
  });

  it('/docs renders the API and runs "Try it out" with scripts and styles from the gateway only', async () => {
    const { page, problems } = await watchedPage(browser);
    await page.goto(`${gateway.url}/docs/`);
    await page.waitForSelector('.opblock', { timeout: 20_000 });
    expect(await page.locator('.opblock').count()).toBeGreaterThan(5);
    // Styled by swagger-ui.css: a blocked stylesheet would leave the summary unstyled.
    const display = await page.evaluate(`getComputedStyle(document.querySelector('.opblock-summary')).display`);
    expect(display).toBe('flex');

    const health = page.locator('.opblock', { hasText: '/healthz' }).first();
    await health.locator('.opblock-summary').click();
    await health.locator('button.try-out__btn').click();
    await health.locator('button.execute').click();
    await health.locator('.live-responses-table').waitFor({ timeout: 10_000 });
    expect(await health.locator('.live-responses-table tbody .response-col_status').first().textContent()).toContain(
      '200',
    );
    await page.locator('.opblock', { hasText: '/v1/metrics/bulk' }).first().locator('.opblock-summary').click();
    await page.waitForTimeout(300);
    expect(problems).toEqual([]);
    await page.close();
  }, 120_000);

  it('the status page shows codes without a key, and the messages with an admin key', async () => {
    const { page, problems } = await watchedPage(browser);
    await page.goto(`${gateway.url}/`);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 10_000 });
    const firstRow = page.locator('#rejections tbody tr').first();
    await firstRow.waitFor({ timeout: 10_000 });
    const [, endpoint, line, error, message] = await firstRow.locator('td').allTextContents();
    expect({ endpoint, line, error, message }).toEqual({
      endpoint: 'bulk',
      line: '2',
      error: 'validation_failed',
      message: '–',
    });
    expect(await page.isVisible('#messages-withheld')).toBe(true);
    expect(await page.textContent('body')).not.toContain(FIELD);

    await page.click('#admin-key-button');
    await page.fill('#key-input', adminKey);
    await page.click('#key-form button[type="submit"]');
    await page.locator('#rejections td.message', { hasText: FIELD }).waitFor({ timeout: 10_000 });
    expect(await page.isVisible('#messages-withheld')).toBe(false);
    expect(await page.isVisible('#key-form')).toBe(false);
    expect(problems).toEqual([]);
    await page.close();
  }, 120_000);
});
