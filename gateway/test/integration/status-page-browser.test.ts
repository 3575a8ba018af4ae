import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { generateNdjson } from '../../../seed/generate-metrics';
import { createApiKey } from '../../src/auth/api-keys';
import { seedDemoData } from '../../src/db/demo-data';
import type { Gateway } from '../../src/gateway';
import { PROJECT_ROOT } from '../../src/paths';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { describeInChromium, launchChromium } from '../helpers/chromium';
import { postJson, postNdjson, startTestGateway } from '../helpers/gateway';

// The status page in a real headless Chromium (found by helpers/find-chromium.js; .ci/run installs
// Debian's package when apt can):
// it loads, shows live figures, and they change as rows are ingested through the API. With
// UPDATE_SCREENSHOT=1 the final state is saved as docs/status-page.png for the README.

const SCREENSHOT = path.join(PROJECT_ROOT, 'docs', 'status-page.png');
const UPDATE_SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1';

const describeInBrowser = describeInChromium('status-page-browser.test.ts', 'the page was not tested in a browser');

/** A figure on the page as a number ("1,234" -> 1234; "–" -> NaN). */
async function figure(page: Page, id: string): Promise<number> {
  const text = (await page.textContent(`#${id}`)) ?? '';
  return Number(text.replace(/,/g, ''));
}

describeInBrowser('the status page in Chromium', () => {
  let db: TestDatabase;
  let gateway: Gateway;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    await seedDemoData(db.pool);
    gateway = await startTestGateway(db);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await gateway?.stop();
    await db?.drop();
  });

  it('loads with live figures, and shows rows ingested through the API and the lines refused', async () => {
    await page.goto(`${gateway.url}/`);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 10_000 });
    expect(await figure(page, 'total-accepted')).toBe(0);
    expect(await figure(page, 'buffer-capacity')).toBe(200_000);
    expect(await page.isVisible('#no-rejections')).toBe(true);
    expect(await page.locator('#reasons tbody tr').count()).toBeGreaterThanOrEqual(6);

    // Bulk uploads half a second apart, with an invalid line every 41 to 65, and one bad single metric at the
    // end. For the README's screenshot, half a minute of them, so that the chart has something to show.
    let accepted = 0;
    const rounds = UPDATE_SCREENSHOT ? 50 : 8;
    for (let round = 0; round < rounds; round++) {
      const count = Math.round(400 + 300 * Math.sin(round / 4));
      const badEvery = 41 + (round % 5) * 6;
      const body = [...generateNdjson({ count, seed: round + 1, badEvery })].join('');
      const answer = await postNdjson(`${gateway.url}/v1/metrics/bulk`, body);
      expect(answer.status).toBe(200);
      accepted += answer.body.accepted;
      if (round === rounds - 1) {
        const refused = await postJson(`${gateway.url}/v1/metrics`, { user_id: 1, talk_time: 3 });
        expect(refused.status).toBe(400);
      }
      await page.waitForTimeout(450);
    }

    const total = new RegExp(`^${accepted.toLocaleString('en-US')}$`);
    await page.locator('#total-accepted', { hasText: total }).waitFor({ timeout: 5000 });
    expect(await figure(page, 'rate-accepted')).toBeGreaterThan(0);
    expect(await figure(page, 'flush-latency')).toBeGreaterThan(0);
    expect(await figure(page, 'total-rejected')).toBeGreaterThan(0);

    // The refused lines, newest first, with their line numbers and reasons; the single metric refused last
    // may reach the page one poll after the totals did.
    await page
      .locator('#rejections tbody tr')
      .first()
      .locator('td', { hasText: /^single$/ })
      .waitFor({ timeout: 5000 });
    const rows = await page.locator('#rejections tbody tr').allTextContents();
    expect(rows.length).toBeGreaterThan(5);
    expect(await page.isVisible('#no-rejections')).toBe(false);
    const cells = (row: number) => page.locator('#rejections tbody tr').nth(row).locator('td').allTextContents();
    const [, endpoint, line, error, message] = await cells(0);
    expect({ endpoint, line, error }).toEqual({ endpoint: 'single', line: '', error: 'validation_failed' });
    expect(message).toMatch(/^\/talked_time: is required/);
    const [, bulkEndpoint, bulkLine, bulkError] = await cells(1);
    expect(bulkEndpoint).toBe('bulk');
    expect(Number(bulkLine)).toBeGreaterThan(0);
    expect(bulkError).toMatch(/^(validation_failed|invalid_json|unknown_reference)$/);
    const validationRow = page.locator('#reasons tbody tr', { hasText: 'validation_failed' });
    expect(Number(await validationRow.locator('td').nth(1).textContent())).toBeGreaterThan(0);

    // The chart has drawn the accepted rows.
    const drawn = await page.getAttribute('#chart path.accepted-line', 'd');
    expect(drawn?.split('L').length).toBeGreaterThan(3);

    const shot = await page.screenshot({ fullPage: true });
    expect(shot.subarray(1, 4).toString()).toBe('PNG');
    expect(shot.length).toBeGreaterThan(10_000);
    if (UPDATE_SCREENSHOT) await writeFile(SCREENSHOT, shot);
    expect(problems).toEqual([]);
  }, 90_000);

  it('asks for a key when /v1/stats needs one (METRICS_AUTH_REQUIRED=true), then shows the figures', async () => {
    const strict = await startTestGateway(db, { AUTH_REQUIRED: 'true', METRICS_AUTH_REQUIRED: 'true' });
    const context = await browser.newContext();
    try {
      const { key } = await createApiKey(db.pool, 'status-page', 'ingest');
      const keyed = await context.newPage();
      await keyed.goto(`${strict.url}/`);
      await keyed.waitForSelector('#key-form', { state: 'visible', timeout: 10_000 });
      expect(await keyed.textContent('#connection-text')).toBe('an API key is needed');
      await keyed.fill('#key-input', key);
      await keyed.click('#key-form button');
      await keyed.waitForSelector('#connection[data-state="live"]', { timeout: 10_000 });
      expect(await keyed.isVisible('#key-form')).toBe(false);
      expect(await figure(keyed, 'buffer-capacity')).toBe(200_000);
    } finally {
      await context.close();
      await strict.stop();
    }
  }, 30_000);
});
