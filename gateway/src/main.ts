import { ConfigError, loadConfig, type Config } from './config';
import { openDatabase } from './db/open-database';
import { startGateway } from './gateway';
import { createProcessLogger } from './logger';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`metrics-gateway: ${error.message}\n`);
    process.exit(1);
  }
  const { logger, flushSync } = createProcessLogger(config.logLevel);
  // Whatever ends the process (a failed start included), the last lines are written first.
  process.once('exit', flushSync);
  const database = await openDatabase(config, logger);
  const gateway = await startGateway(config, database.url, logger).catch(async (error: unknown) => {
    await database.close();
    throw error;
  });

  // Before the banner: whoever waits for it may signal at once.
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'signal received');
    void (async () => {
      const { flushed } = await gateway.stop();
      await database.close({ alsoAdopted: true }); // see OpenedDatabase.close
      process.exit(flushed ? 0 : 1);
    })();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  logger.info(
    {
      url: gateway.url,
      database: database.embedded ? `embedded PostgreSQL on port ${database.embedded.port}` : 'DATABASE_URL',
      auth: config.authRequired ? 'required' : 'off',
    },
    'metrics-gateway is listening',
  );
  if (!config.authRequired) logger.warn('AUTH_REQUIRED=false: every route is open without an API key');
  process.stdout.write(
    [
      '',
      `  metrics-gateway  ${gateway.url}`,
      `    POST ${gateway.url}/v1/metrics        one metric (JSON)`,
      `    POST ${gateway.url}/v1/metrics/bulk   NDJSON, optionally gzip`,
      `    GET  ${gateway.url}/readyz`,
      database.embedded
        ? `  database: embedded PostgreSQL ${database.embedded.url} (data in ${database.embedded.dataDir})`
        : '  database: DATABASE_URL',
      config.authRequired
        ? '  auth: API keys required (npm run keys -- create --name NAME --scope ingest|admin)'
        : '  auth: OFF (AUTH_REQUIRED=false): anyone who can reach this port may post metrics and register users',
      '',
    ].join('\n') + '\n',
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`metrics-gateway failed to start: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
