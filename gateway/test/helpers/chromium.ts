import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

// Debian's headless Chromium (.ci/run installs it when apt can), driven by playwright-core.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** `describe` when Chromium is there, else `describe.skip` with a line on stderr saying what was not tested. */
export function describeInChromium(testFile: string, untested: string): jest.Describe {
  if (existsSync(CHROMIUM)) return describe;
  process.stderr.write(
    `\n  SKIPPED ${testFile}: no Chromium at ${CHROMIUM} ` +
      `(apt-get install chromium, or set CHROMIUM_PATH); ${untested}.\n\n`,
  );
  return describe.skip;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
}
