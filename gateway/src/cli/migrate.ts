import { ConfigError, loadConfig } from '../config';
import { migrate } from '../db/migrate';
import { openDatabase } from '../db/open-database';
import { createPool } from '../db/pool';
import { createLogger } from '../logger';

/** `npm run migrate`: applies pending migrations to DATABASE_URL, or to the embedded database. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const database = await openDatabase(config, logger);
  const pool = createPool(database.url, 2, logger);
  try {
    const applied = await migrate(pool, logger);
    process.stdout.write(
      applied.length === 0 ? 'migrations: up to date\n' : `migrations applied: ${applied.join(', ')}\n`,
    );
  } finally {
    await pool.end();
    await database.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `migrate failed: ${error instanceof ConfigError || !(error instanceof Error) ? String(error) : error.stack}\n`,
  );
  process.exit(1);
});
