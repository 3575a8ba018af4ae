import { ConfigError, loadConfig } from '../gateway/src/config';
import { migrate } from '../gateway/src/db/migrate';
import { withPool } from '../gateway/src/cli/with-pool';
import { createLogger } from '../gateway/src/logger';
import { seedDemoData } from '../gateway/src/db/demo-data';

/** `npm run seed`: adds the demo users and devices (idempotent) to DATABASE_URL or the embedded database. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const seeded = await withPool(config, logger, async (pool) => {
    if (config.migrateOnStart) await migrate(pool, logger);
    return seedDemoData(pool);
  });
  process.stdout.write(`seeded ${seeded.users} users and ${seeded.devices} devices (existing ones kept)\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `seed failed: ${error instanceof ConfigError || !(error instanceof Error) ? String(error) : error.stack}\n`,
  );
  process.exit(1);
});
