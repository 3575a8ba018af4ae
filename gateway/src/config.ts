import path from 'node:path';
import { DEFAULT_DATA_DIR } from './paths';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** Unset: an embedded PostgreSQL is started with its data under `dataDir`. */
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly port: number;
  readonly host: string;
  readonly logLevel: LogLevel;
  readonly batchMaxRows: number;
  readonly batchMaxWaitMs: number;
  readonly bufferMaxRows: number;
  readonly flushConcurrency: number;
  /** How long a `wait=true` request waits for its rows to commit before it gets 503. */
  readonly ackTimeoutMs: number;
  /** How long a bulk upload may wait for buffer space before its remaining lines are refused (429). */
  readonly bulkBackpressureTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
  readonly migrateOnStart: boolean;
  /** Seed demo users and devices into an empty database at start-up. */
  readonly seedDemoData: boolean;
  /** Every route but /healthz and /readyz (and /metrics, /docs unless asked) needs `Authorization: Bearer KEY`. */
  readonly authRequired: boolean;
  /** How long a key lookup is trusted when no change to it is announced (api-key-changes.ts). */
  readonly authCacheTtlMs: number;
  readonly metricsAuthRequired: boolean;
  readonly docsAuthRequired: boolean;
  /** Requests per second per API key; 0: no limit. */
  readonly rateLimitPerKeyRps: number;
  readonly rateLimitBurst: number;
  /** Lookups of API keys not in the cache per second per client address; 0: no limit. */
  readonly authLookupRatePerAddress: number;
  readonly authLookupBurstPerAddress: number;
  /** API key lookups running at once, so that a flood of unknown keys leaves the pool to the writer. */
  readonly authLookupConcurrency: number;
  /** TCP connections the HTTP server holds at once; more are closed at once. */
  readonly maxConnections: number;
  /** Bulk uploads in progress at once; the next gets 429 before its body is read. 0: no limit. */
  readonly bulkMaxConcurrent: number;
  /** A bulk body must arrive at this rate, on average over each BODY_IDLE_TIMEOUT_MS of waiting for it; 0: any. */
  readonly bodyMinBytesPerSecond: number;
  readonly metricMaxBytes: number;
  readonly bulkMaxLineBytes: number;
  /** Bytes of a bulk body after decompression; 0: no limit. */
  readonly bulkMaxBytes: number;
  /** Decompressed bytes per compressed byte of a gzip bulk body; 0: no limit. */
  readonly bulkGzipMaxRatio: number;
  /** A bulk body that sends nothing for this long is cut off (408); 0: never. */
  readonly bodyIdleTimeoutMs: number;
  readonly headersTimeoutMs: number;
  /** The whole request, headers and body, must arrive within this; 0: no limit. */
  readonly requestTimeoutMs: number;
  readonly pgPoolMax: number;
  /** Every non-bulk request is answered within this; the request path's database calls are bounded by parts of it. */
  readonly requestDeadlineMs: number;
  /** A write whose connection moves no byte for this long has it closed and is retried; 0: never. */
  readonly writeStallTimeoutMs: number;
  /** wait=false rows are written to a local spool before they are acknowledged. */
  readonly spoolEnabled: boolean;
  readonly spoolDir: string;
  readonly spoolSegmentBytes: number;
  /** The spool's segment files may hold this many bytes together; then wait=false gets 429. 0: no limit. */
  readonly spoolMaxBytes: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Every variable the gateway reads, with its default and meaning; README's table is made from this. */
export const CONFIG_DOCS: readonly { name: string; default: string; meaning: string }[] = [
  { name: 'DATABASE_URL', default: '(unset: embedded PostgreSQL)', meaning: 'PostgreSQL connection string' },
  { name: 'DATA_DIR', default: '.data', meaning: 'where the embedded PostgreSQL keeps its data' },
  { name: 'PORT', default: '8080', meaning: 'HTTP port' },
  { name: 'HOST', default: '127.0.0.1', meaning: 'HTTP bind address (0.0.0.0 for all interfaces)' },
  { name: 'LOG_LEVEL', default: 'info', meaning: LOG_LEVELS.join(', ') },
  { name: 'BATCH_MAX_ROWS', default: '5000', meaning: 'rows per COPY batch at most' },
  { name: 'BATCH_MAX_WAIT_MS', default: '5', meaning: 'flush a batch this long after its first row' },
  { name: 'BUFFER_MAX_ROWS', default: '200000', meaning: 'rows buffered or in flight at most' },
  { name: 'FLUSH_CONCURRENCY', default: '2', meaning: 'COPY batches in flight at once' },
  {
    name: 'ACK_TIMEOUT_MS',
    default: '10000',
    meaning: "wait=true: answer 503 when none of the request's rows is committed for this long",
  },
  {
    name: 'BULK_BACKPRESSURE_TIMEOUT_MS',
    default: '30000',
    meaning: 'bulk: wait this long for buffer space, then 429',
  },
  { name: 'SHUTDOWN_TIMEOUT_MS', default: '30000', meaning: 'deadline for draining the buffer on SIGTERM' },
  {
    name: 'MIGRATE_ON_START',
    default: 'true',
    meaning: 'apply pending migrations at start-up; false: refuse to start while any is pending',
  },
  {
    name: 'SEED_DEMO_DATA',
    default: 'true with the embedded database, else false',
    meaning: 'seed demo users and devices into an empty database',
  },
  {
    name: 'AUTH_REQUIRED',
    default: 'true when NODE_ENV=production (as in the Docker image), else false',
    meaning: 'require Authorization: Bearer KEY on every route but /healthz and /readyz (see npm run keys)',
  },
  {
    name: 'AUTH_CACHE_TTL_MS',
    default: '30000',
    meaning: 'how long a key lookup is cached when no change is announced (reconnecting); revocations apply at once',
  },
  {
    name: 'METRICS_AUTH_REQUIRED',
    default: 'false',
    meaning: 'with AUTH_REQUIRED: GET /metrics and GET /v1/stats (the status page) need a key too',
  },
  {
    name: 'DOCS_AUTH_REQUIRED',
    default: 'false',
    meaning: 'with AUTH_REQUIRED: /docs and /openapi.json need a key too',
  },
  {
    name: 'RATE_LIMIT_PER_KEY_RPS',
    default: '0 (no limit)',
    meaning: 'with AUTH_REQUIRED: requests per second per key per gateway, then 429',
  },
  { name: 'RATE_LIMIT_BURST', default: 'RATE_LIMIT_PER_KEY_RPS', meaning: 'requests per key allowed at once' },
  {
    name: 'AUTH_LOOKUP_RATE_PER_ADDRESS',
    default: '20',
    meaning:
      'with AUTH_REQUIRED: lookups of keys not in the cache per second per client address (IPv6: per /64), then 429; 0: no limit',
  },
  { name: 'AUTH_LOOKUP_BURST_PER_ADDRESS', default: '40', meaning: 'such lookups a client address may make at once' },
  {
    name: 'AUTH_LOOKUP_CONCURRENCY',
    default: '4 (at most PG_POOL_MAX - FLUSH_CONCURRENCY)',
    meaning: 'key lookups running at once per gateway; 64 times as many wait, more get 429',
  },
  { name: 'MAX_CONNECTIONS', default: '1024', meaning: 'TCP connections held at once; more are closed at once' },
  {
    name: 'BULK_MAX_CONCURRENT',
    default: '16',
    meaning: 'bulk uploads in progress at once; the next gets 429 before its body is read; 0: no limit',
  },
  {
    name: 'BODY_MIN_BYTES_PER_SECOND',
    default: '1024',
    meaning: 'a bulk body arriving slower than this over BODY_IDLE_TIMEOUT_MS gets 408; 0: any rate',
  },
  { name: 'METRIC_MAX_BYTES', default: '16384', meaning: 'largest body of POST /v1/metrics' },
  { name: 'BULK_MAX_LINE_BYTES', default: '65536', meaning: 'longest NDJSON line of a bulk upload' },
  {
    name: 'BULK_MAX_BYTES',
    default: '0 (no limit: an upload streams in bounded memory; gzip bombs are stopped by the ratio)',
    meaning: 'largest bulk body, counted after decompression; 0: no limit',
  },
  {
    name: 'BULK_GZIP_MAX_RATIO',
    default: '200',
    meaning: 'gzip bulk bodies may inflate this many times (checked past 1 MiB); 0: no limit',
  },
  {
    name: 'BODY_IDLE_TIMEOUT_MS',
    default: '30000',
    meaning: 'a bulk body that stalls this long, or a small body not whole by then, gets 408; 0: never',
  },
  { name: 'HEADERS_TIMEOUT_MS', default: '20000', meaning: 'the request headers must arrive within this' },
  {
    name: 'REQUEST_TIMEOUT_MS',
    default: '0 (no limit: bulk uploads stream as long as they keep sending)',
    meaning: 'the whole request (headers and body) must arrive within this; 0: no limit',
  },
  {
    name: 'PG_POOL_MAX',
    default: '10',
    meaning:
      'PostgreSQL connections at most: FLUSH_CONCURRENCY + 1 for writing batches, the rest (at least 1) for requests; with AUTH_REQUIRED, one more listens for key changes',
  },
  {
    name: 'REQUEST_DEADLINE_MS',
    default: '10000, or ACK_TIMEOUT_MS if that is longer',
    meaning:
      'a non-bulk request not answered by then gets 503; its database calls get lock_timeout 1/4 of it, statement_timeout 1/2, a pool wait 1/4',
  },
  {
    name: 'WRITE_STALL_TIMEOUT_MS',
    default: '30000',
    meaning: 'a batch write whose connection moves no byte for this long is cut and retried; 0: never',
  },
  { name: 'SPOOL', default: 'true', meaning: 'write wait=false rows to a local spool (fsync) before answering 202' },
  { name: 'SPOOL_DIR', default: 'DATA_DIR/spool', meaning: 'the spool of this gateway; one directory per gateway' },
  { name: 'SPOOL_SEGMENT_BYTES', default: '67108864 (64 MiB)', meaning: 'size of one spool segment file' },
  {
    name: 'SPOOL_MAX_BYTES',
    default: '4294967296 (4 GiB)',
    meaning:
      'the spool may hold this much on disk (an outage is absorbed there); then wait=false gets 429; 0: no limit',
  },
];

/** Reads the configuration from `env`; collects every problem, then throws one ConfigError. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];

  const text = (name: string, fallback: string): string => {
    const value = env[name];
    return value === undefined || value === '' ? fallback : value;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!/^\s*-?\d+\s*$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return value;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(value)) return true;
    if (['false', '0', 'no', 'off'].includes(value)) return false;
    problems.push(`${name} must be true or false, got ${JSON.stringify(raw)}`);
    return fallback;
  };

  const databaseUrl = env.DATABASE_URL === '' ? undefined : env.DATABASE_URL;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  const logLevel = text('LOG_LEVEL', 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }

  const rateLimitPerKeyRps = integer('RATE_LIMIT_PER_KEY_RPS', 0, 0, 1_000_000);
  const ackTimeoutMs = integer('ACK_TIMEOUT_MS', 10_000, 100, 600_000);
  const pgPoolMax = integer('PG_POOL_MAX', 10, 3, 1000);
  const flushConcurrency = integer('FLUSH_CONCURRENCY', 2, 1, 64);

  const config: Config = {
    databaseUrl,
    dataDir: text('DATA_DIR', DEFAULT_DATA_DIR),
    port: integer('PORT', 8080, 0, 65535),
    host: text('HOST', '127.0.0.1'),
    logLevel,
    batchMaxRows: integer('BATCH_MAX_ROWS', 5000, 1, 1_000_000),
    batchMaxWaitMs: integer('BATCH_MAX_WAIT_MS', 5, 0, 60_000),
    bufferMaxRows: integer('BUFFER_MAX_ROWS', 200_000, 1, 100_000_000),
    flushConcurrency,
    ackTimeoutMs,
    bulkBackpressureTimeoutMs: integer('BULK_BACKPRESSURE_TIMEOUT_MS', 30_000, 100, 3_600_000),
    shutdownTimeoutMs: integer('SHUTDOWN_TIMEOUT_MS', 30_000, 0, 3_600_000),
    migrateOnStart: bool('MIGRATE_ON_START', true),
    seedDemoData: bool('SEED_DEMO_DATA', databaseUrl === undefined),
    authRequired: bool('AUTH_REQUIRED', env.NODE_ENV === 'production'),
    authCacheTtlMs: integer('AUTH_CACHE_TTL_MS', 30_000, 0, 3_600_000),
    metricsAuthRequired: bool('METRICS_AUTH_REQUIRED', false),
    docsAuthRequired: bool('DOCS_AUTH_REQUIRED', false),
    rateLimitPerKeyRps,
    rateLimitBurst: integer('RATE_LIMIT_BURST', Math.max(1, rateLimitPerKeyRps), 1, 1_000_000),
    authLookupRatePerAddress: integer('AUTH_LOOKUP_RATE_PER_ADDRESS', 20, 0, 1_000_000),
    authLookupBurstPerAddress: integer('AUTH_LOOKUP_BURST_PER_ADDRESS', 40, 1, 1_000_000),
    authLookupConcurrency: integer(
      'AUTH_LOOKUP_CONCURRENCY',
      Math.max(1, Math.min(4, pgPoolMax - flushConcurrency - 1)),
      1,
      1000,
    ),
    maxConnections: integer('MAX_CONNECTIONS', 1024, 1, 1_000_000),
    bulkMaxConcurrent: integer('BULK_MAX_CONCURRENT', 16, 0, 1_000_000),
    bodyMinBytesPerSecond: integer('BODY_MIN_BYTES_PER_SECOND', 1024, 0, 1_073_741_824),
    metricMaxBytes: integer('METRIC_MAX_BYTES', 16_384, 256, 10_485_760),
    bulkMaxLineBytes: integer('BULK_MAX_LINE_BYTES', 65_536, 256, 10_485_760),
    bulkMaxBytes: integer('BULK_MAX_BYTES', 0, 0, Number.MAX_SAFE_INTEGER),
    bulkGzipMaxRatio: integer('BULK_GZIP_MAX_RATIO', 200, 0, 1_000_000),
    bodyIdleTimeoutMs: integer('BODY_IDLE_TIMEOUT_MS', 30_000, 0, 3_600_000),
    headersTimeoutMs: integer('HEADERS_TIMEOUT_MS', 20_000, 100, 3_600_000),
    requestTimeoutMs: integer('REQUEST_TIMEOUT_MS', 0, 0, 86_400_000),
    pgPoolMax,
    requestDeadlineMs: integer('REQUEST_DEADLINE_MS', Math.max(10_000, ackTimeoutMs), 100, 600_000),
    writeStallTimeoutMs: integer('WRITE_STALL_TIMEOUT_MS', 30_000, 0, 3_600_000),
    spoolEnabled: bool('SPOOL', true),
    spoolDir: text('SPOOL_DIR', path.join(text('DATA_DIR', DEFAULT_DATA_DIR), 'spool')),
    spoolSegmentBytes: integer('SPOOL_SEGMENT_BYTES', 64 * 1024 * 1024, 4096, 1024 * 1024 * 1024),
    spoolMaxBytes: integer('SPOOL_MAX_BYTES', 4 * 1024 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
  };

  if (config.bufferMaxRows < config.batchMaxRows) {
    problems.push(`BUFFER_MAX_ROWS (${config.bufferMaxRows}) must be at least BATCH_MAX_ROWS (${config.batchMaxRows})`);
  }
  if (config.pgPoolMax < config.flushConcurrency + 2) {
    problems.push(
      `PG_POOL_MAX (${config.pgPoolMax}) must be at least FLUSH_CONCURRENCY + 2 (${config.flushConcurrency + 2}): ` +
        'FLUSH_CONCURRENCY + 1 connections write batches, the rest serve requests',
    );
  }
  const requestConnections = config.pgPoolMax - config.flushConcurrency - 1;
  if (config.authLookupConcurrency > requestConnections) {
    problems.push(
      `AUTH_LOOKUP_CONCURRENCY (${config.authLookupConcurrency}) must be at most PG_POOL_MAX - FLUSH_CONCURRENCY - 1 (${requestConnections}), the connections that serve requests`,
    );
  }
  // Settings that would silently do nothing are refused: someone would believe they protect something.
  if (!config.authRequired) {
    for (const [name, on] of [
      ['METRICS_AUTH_REQUIRED', config.metricsAuthRequired],
      ['DOCS_AUTH_REQUIRED', config.docsAuthRequired],
      ['RATE_LIMIT_PER_KEY_RPS', config.rateLimitPerKeyRps > 0],
    ] as const) {
      if (on) problems.push(`${name} needs AUTH_REQUIRED=true: without API keys it would have no effect`);
    }
  }
  if (config.requestTimeoutMs > 0 && config.headersTimeoutMs > config.requestTimeoutMs) {
    problems.push(
      `HEADERS_TIMEOUT_MS (${config.headersTimeoutMs}) must not be more than REQUEST_TIMEOUT_MS (${config.requestTimeoutMs})`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
