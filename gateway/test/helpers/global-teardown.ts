import { withClient } from '../../src/db/dev-postgres';
import { dropDatabase, templateName, testDatabasePrefix } from './database';
import { projectOnCitus, takeTestRunState, type ProjectOfRun } from './global-setup';
import { printRunNotes } from './run-notes';

/** Drops this run's template, and any clone a test file left behind, then stops what setup started. */
export default async function globalTeardown(_globalConfig: unknown, project: ProjectOfRun): Promise<void> {
  const state = takeTestRunState(projectOnCitus(project));
  if (!state) return;
  try {
    await withClient(state.serverUrl, async (client) => {
      const leftovers = await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname',
        [testDatabasePrefix(state.runId)],
      );
      for (const { datname } of leftovers.rows) await dropDatabase(client, datname);
      if (leftovers.rows.length > 0) {
        const names = leftovers.rows.map((row) => row.datname).join(', ');
        process.stderr.write(`test databases left behind by their test files (a missing drop()?): ${names}\n`);
      }
      await dropDatabase(client, templateName(state.runId));
    });
  } finally {
    await state.stopServer();
    printRunNotes();
  }
}
