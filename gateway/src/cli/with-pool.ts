import type { Pool } from 'pg';
import type { Config } from '../config';
import { openDatabase } from '../db/open-database';
import { createPool } from '../db/pool';
import type { Logger } from '../logger';

/**
 * Runs a command-line task with a small pool on DATABASE_URL, or on the embedded database (started
 * for the task and stopped after it, unless a gateway already runs it).
 */
export async function withPool<T>(config: Config, logger: Logger, task: (pool: Pool) => Promise<T>): Promise<T> {
  const database = await openDatabase(config, logger);
  const pool = createPool(database.url, 2, logger);
  try {
    return await task(pool);
  } finally {
    await pool.end();
    await database.close();
  }
}
