import { chromium, type Browser } from 'playwright-core';
import { findChromium } from './find-chromium';
import { addRunNote } from './run-notes';

// Debian's headless Chromium (.ci/run installs it when apt can), driven by playwright-core.

const CHROMIUM = findChromium();
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
  if (CHROMIUM !== undefined) return describe;
  const where = process.env.CHROMIUM_PATH ? `CHROMIUM_PATH=${process.env.CHROMIUM_PATH}` : 'chromium on the PATH';
  process.stderr.write(
    `\n  SKIPPED ${testFile}: no ${where} (apt-get install chromium, or set CHROMIUM_PATH); ${untested}.\n\n`,
  );
  addRunNote(`SKIPPED: ${testFile} (no chromium): ${untested}`);
  return describe.skip;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM as string, args: CHROMIUM_ARGS, timeout: 30_000 });
}
