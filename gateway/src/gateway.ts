import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { databaseIsEmpty, seedDemoData } from './db/demo-data';
import { ApiKeyChangeListener } from './auth/api-key-changes';
import type { Config } from './config';
import { createMetricsWriter } from './db/metrics-writer';
import { partitionOverview } from './db/partitions';
import { assertMigrated, listMigrationNames, migrate, pendingMigrations } from './db/migrate';
import { createPool, createWriterPool, poolSizes, requestPoolSettings, watchForStalls } from './db/pool';
import { accessControlFor } from './http/access-control';
import { createApp } from './http/app';
import type { ReadinessCheck } from './http/health-routes';
import { createHttpServer } from './http/http-server';
import { Batcher } from './ingest/batcher';
import { MetricIntake } from './ingest/intake';
import { ReferenceCache } from './ingest/references';
import { PartitionMaintenance } from './lifecycle/partition-maintenance';
import { startParts, type Part, type ShutdownOutcome } from './lifecycle/parts';
import { lockSpoolDir } from './spool/lock';
import { bindSpoolToDatabase } from './spool/identity';
import { replaySpool } from './spool/replay';
import { Spool } from './spool/spool';
import { IngestStats } from './telemetry/ingest-stats';
import { createPrometheusTelemetry } from './telemetry/prometheus';
import { PartitionStats } from './telemetry/partition-stats';
import { RecentRejections } from './telemetry/recent-rejections';

/**
 * How long a step of partition maintenance waits for its locks before it gives up until the next run:
 * writers queue behind a waiting ATTACH or DETACH, so this bounds how long it can hold them up.
 */
const PARTITION_LOCK_TIMEOUT_MS = 1000;

export interface Gateway {
  readonly url: string;
  readonly server: Server;
  /** The writer pool: COPY batches, txid_status checks, rejected rows, spool commits. */
  readonly pool: Pool;
  /** Everything on the request path: lookups, reads, admin routes, readiness; each call bounded by REQUEST_DEADLINE_MS. */
  readonly requestPool: Pool;
  readonly batcher: Batcher;
  readonly partitions: PartitionMaintenance;
  /** Ordered, idempotent stop: no new requests, flush the buffer, close the pools (lifecycle/parts.ts). */
  stop(): Promise<ShutdownOutcome>;
}

function readinessCheck(pool: Pool, migrations: readonly string[]): ReadinessCheck {
  return async () => {
    try {
      const pending = await pendingMigrations(pool, migrations);
      if (pending.length > 0) return { ready: false, reason: `migrations not applied: ${pending.join(', ')}` };
      return { ready: true };
    } catch (error) {
      return { ready: false, reason: `PostgreSQL does not answer: ${(error as Error).message}` };
    }
  };
}

/** Applies (or checks) the migrations and seeds an empty database with the demo users and devices. */
async function prepareDatabase(config: Config, pool: Pool, logger: Logger): Promise<void> {
  if (config.migrateOnStart) await migrate(pool, logger.child({ module: 'migrate' }));
  else await assertMigrated(pool);
  if (config.seedDemoData && (await databaseIsEmpty(pool))) {
    const seeded = await seedDemoData(pool);
    logger.info(seeded, 'demo users and devices seeded into the empty database');
  }
}

/** The spool directory, locked against a second gateway and bound to this database; stop() unlocks it. */
function spoolDirPart(dir: string, pool: Pool, logger: Logger): Part {
  let release: (() => Promise<void>) | undefined;
  return {
    name: 'spool directory',
    start: async () => {
      await mkdir(dir, { recursive: true });
      const unlock = await lockSpoolDir(dir);
      await bindSpoolToDatabase(dir, pool, logger).catch(async (error: unknown) => {
        await unlock();
        throw error;
      });
      release = unlock;
    },
    stop: () => release?.(),
  };
}

/** Resolves once `server` listens on the configured address. */
function listen(server: Server, config: Config): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/** Builds the gateway on `databaseUrl` and starts listening; the composition root for main and tests. */
export async function startGateway(config: Config, databaseUrl: string, logger: Logger): Promise<Gateway> {
  const sizes = poolSizes(config.pgPoolMax, config.flushConcurrency);
  const poolLogger = logger.child({ module: 'pool' });
  const pool = createWriterPool(databaseUrl, sizes.writer, config.writeStallTimeoutMs, poolLogger);
  const requestPool = createPool(
    databaseUrl,
    sizes.request,
    logger.child({ module: 'request-pool' }),
    requestPoolSettings(config.requestDeadlineMs),
  );
  const spoolLogger = logger.child({ module: 'spool' });
  const references = new ReferenceCache(requestPool);
  const telemetry = createPrometheusTelemetry(pool);
  const batcher = new Batcher({
    batchMaxRows: config.batchMaxRows,
    batchMaxWaitMs: config.batchMaxWaitMs,
    bufferMaxRows: config.bufferMaxRows,
    flushConcurrency: config.flushConcurrency,
    writer: createMetricsWriter(pool),
    logger: logger.child({ module: 'batcher' }),
    onSpooledDone: (ranges) => {
      for (const range of ranges) if (range.spoolId === spool?.id) void spool.rowsDone(range.firstSeq, range.lastSeq);
    },
    onUnknownReference: () => references.forgetAll(),
    observer: telemetry.batcherObserver,
  });
  telemetry.trackBuffer(batcher);
  const spool = config.spoolEnabled
    ? new Spool({
        dir: config.spoolDir,
        segmentBytes: config.spoolSegmentBytes,
        maxBytes: config.spoolMaxBytes,
        logger: spoolLogger,
        sink: batcher,
      })
    : undefined;
  const rejections = new RecentRejections();
  const partitionStats = new PartitionStats(() => partitionOverview(requestPool));
  telemetry.trackPartitions(partitionStats);
  const stats = new IngestStats({
    readTotals: telemetry.totals,
    buffer: batcher,
    rejections,
    partitions: partitionStats,
  });
  const intake = new MetricIntake({
    batcher,
    references,
    ackTimeoutMs: config.ackTimeoutMs,
    bulkBackpressureTimeoutMs: config.bulkBackpressureTimeoutMs,
    maxLineBytes: config.bulkMaxLineBytes,
    spool,
    onAccepted: telemetry.rowsAccepted,
    onRefused: telemetry.rowsRefused,
    logger: logger.child({ module: 'intake' }),
  });
  const access = accessControlFor(config, requestPool, logger.child({ module: 'auth' }));
  const app = createApp({
    logger,
    accessLog: { policy: config.accessLog, slowMs: config.accessLogSlowMs, onEnded: telemetry.requestEnded },
    pool: requestPool,
    intake,
    references,
    readiness: readinessCheck(requestPool, await listMigrationNames()),
    metricMaxBytes: config.metricMaxBytes,
    requestDeadlineMs: config.requestDeadlineMs,
    accessControl: access?.forRoute,
    bulkBodyLimits: {
      maxBytes: config.bulkMaxBytes,
      maxGzipRatio: config.bulkGzipMaxRatio,
      idleTimeoutMs: config.bodyIdleTimeoutMs,
      minBytesPerSecond: config.bodyMinBytesPerSecond,
    },
    bulkMaxConcurrent: config.bulkMaxConcurrent,
    metricsRegistry: telemetry.registry,
    onRefused: telemetry.rowsRefused,
    status: { stats, rejections },
  });
  const server = createHttpServer(app, config);
  const partitions = new PartitionMaintenance({
    pool,
    settings: {
      intervalMs: config.partitionIntervalMs,
      premake: config.partitionPremake,
      retentionMs: config.retentionMs > 0 ? config.retentionMs : undefined,
      lockTimeoutMs: PARTITION_LOCK_TIMEOUT_MS,
    },
    everyMs: config.partitionMaintenanceMs,
    logger: logger.child({ module: 'partitions' }),
  });
  const keyChanges =
    access &&
    new ApiKeyChangeListener({
      connectionString: databaseUrl,
      subscriber: access.authenticator,
      logger: logger.child({ module: 'auth' }),
    });

  // Started in this order, stopped in reverse (lifecycle/parts.ts): every drain within the shutdown
  // deadline, then every stop. The key listener thus closes after the drain, so a revocation still
  // reaches the requests being drained.
  const stop = await startParts(
    [
      { name: 'pools', stop: () => Promise.all([pool.end(), requestPool.end()]) },
      { name: 'migrations', start: () => prepareDatabase(config, pool, logger) },
      partitions.part(),
      { name: 'stall watch', start: () => watchForStalls(pool, config.writeStallTimeoutMs, poolLogger) },
      spool && spoolDirPart(config.spoolDir, pool, spoolLogger),
      // Drained last: after the server's requests and the spool's backlog.
      { name: 'batcher', drain: () => batcher.drain(), abandon: () => batcher.abort().inMemoryOnly },
      // Puts back into the buffer what an earlier process spooled but did not commit.
      spool && { name: 'spool replay', start: () => replaySpool(config.spoolDir, pool, batcher, spoolLogger) },
      // Rows spooled by the last requests, and any backlog an outage left on disk, go in before the
      // end; what is still unwritten at the deadline stays in its files for the next start.
      spool && { name: 'spool', drain: () => spool.feedBacklog(), stop: () => spool.close() },
      {
        name: 'http server',
        start: () => listen(server, config),
        // Requests that wait for their rows finish once the buffer is flushed.
        drain: () => Promise.all([closeServer(server), batcher.drain()]),
        abandon: () => server.closeAllConnections(),
      },
      { name: 'stats', start: () => stats.start(), stop: () => stats.stop() },
      // Started once listening: its first LISTEN empties the key cache, so nothing cached before is missed.
      keyChanges && { name: 'key-change listener', start: () => keyChanges.start(), stop: () => keyChanges.close() },
    ],
    {
      logger,
      timeoutMs: config.shutdownTimeoutMs,
      bufferedRows: () => batcher.depth,
      spooledRows: () => spool?.pendingRows ?? 0,
    },
  );
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return { url, server, pool, requestPool, batcher, partitions, stop };
}
