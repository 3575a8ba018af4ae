import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Lines for the very end of a run, after Jest's summary, where a green run cannot hide them: which
// PostgreSQL the suite used, and each test that skipped itself and why. global-setup.ts opens the
// file (its workers inherit the variable), tests append, global-teardown.ts prints it, after the summary.

const RUN_NOTES_ENV = 'MG_TEST_NOTES_FILE';

/** Opens the run's notes; a second project's setup in the same run keeps the first one's file. */
export function openRunNotes(runId: string): void {
  process.env[RUN_NOTES_ENV] ??= path.join(os.tmpdir(), `mg-test-notes-${runId}.txt`);
}

/** Adds a line; dropped when no run notes are open (a run without the integration global setup). */
export function addRunNote(line: string): void {
  const file = process.env[RUN_NOTES_ENV];
  if (file) appendFileSync(file, `${line}\n`);
}

export function printRunNotes(): void {
  const file = process.env[RUN_NOTES_ENV];
  if (!file || !existsSync(file)) return;
  const lines = [...new Set(readFileSync(file, 'utf8').split('\n'))].filter((line) => line !== '');
  rmSync(file, { force: true });
  if (lines.length > 0) process.stderr.write(`\n${lines.join('\n')}\n`);
}
