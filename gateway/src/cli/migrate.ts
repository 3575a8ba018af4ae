import { ConfigError, loadConfig } from '../config';
import { migrate } from '../db/migrate';
import { createLogger } from '../logger';
import { withPool } from './with-pool';

/** `npm run migrate`: applies pending migrations to DATABASE_URL, or to the embedded database. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const applied = await withPool(config, logger, (pool) => migrate(pool, logger));
  process.stdout.write(
    applied.length === 0 ? 'migrations: up to date\n' : `migrations applied: ${applied.join(', ')}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(
    `migrate failed: ${error instanceof ConfigError || !(error instanceof Error) ? String(error) : error.stack}\n`,
  );
  process.exit(1);
});
