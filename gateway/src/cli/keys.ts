import pino from 'pino';
import { ConfigError, loadConfig } from '../config';
import { createLogger } from '../logger';
import { UsageError, parseKeysCommand, runKeysCommand } from './keys-command';
import { withPool } from './with-pool';

/**
 * `npm run keys -- create|revoke|list`: manages API keys in DATABASE_URL, or in the embedded database.
 * Logs go to stderr, so that stdout holds only the report and `create`'s key is its last line.
 */
async function main(): Promise<number> {
  const command = parseKeysCommand(process.argv.slice(2));
  const config = loadConfig();
  // Quiet unless LOG_LEVEL asks: the embedded database's start-up is no news to someone listing keys.
  const logger = createLogger(process.env.LOG_LEVEL ? config.logLevel : 'warn', pino.destination(2));
  return withPool(config, logger, (pool) =>
    runKeysCommand(
      command,
      pool,
      { out: (line) => process.stdout.write(`${line}\n`), err: (line) => process.stderr.write(`${line}\n`) },
      config.authCacheTtlMs,
    ),
  );
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(
      `keys failed: ${error instanceof ConfigError || !(error instanceof Error) ? String(error) : error.stack}\n`,
    );
    process.exitCode = 1;
  },
);
