import { ConfigError, loadConfig } from '../gateway/src/config';
import { migrate } from '../gateway/src/db/migrate';
import { openDatabase } from '../gateway/src/db/open-database';
import { createPool } from '../gateway/src/db/pool';
import { createLogger } from '../gateway/src/logger';
import { seedDemoData } from './seed-database';

/** `npm run seed`: adds the demo users and devices (idempotent) to DATABASE_URL or the embedded database. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const database = await openDatabase(config, logger);
  const pool = createPool(database.url, 2, logger);
  try {
    if (config.migrateOnStart) await migrate(pool, logger);
    const seeded = await seedDemoData(pool);
    process.stdout.write(`seeded ${seeded.users} users and ${seeded.devices} devices (existing ones kept)\n`);
  } finally {
    await pool.end();
    await database.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `seed failed: ${error instanceof ConfigError || !(error instanceof Error) ? String(error) : error.stack}\n`,
  );
  process.exit(1);
});
