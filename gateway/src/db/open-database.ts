import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded';

export interface OpenedDatabase {
  readonly url: string;
  /** Set when the gateway runs its own PostgreSQL because DATABASE_URL is unset. */
  readonly embedded: EmbeddedPostgres | undefined;
  /** Stops the embedded server if this process started it; one found running is left running. */
  close(): Promise<void>;
}

/** `DATABASE_URL`, or else the embedded PostgreSQL with its data under `DATA_DIR`. */
export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  logger: Logger,
): Promise<OpenedDatabase> {
  if (config.databaseUrl !== undefined) {
    return { url: config.databaseUrl, embedded: undefined, close: async () => undefined };
  }
  const embedded = await startEmbeddedPostgres({
    dataDir: path.join(config.dataDir, 'pg'),
    logger: logger.child({ module: 'embedded-postgres' }),
  });
  return {
    url: embedded.url,
    embedded,
    close: async () => {
      if (!embedded.reused) await embedded.stop();
    },
  };
}
