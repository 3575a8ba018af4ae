import path from 'node:path';
import { DEFAULT_DATA_DIR } from './paths';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const ACCESS_LOG_POLICIES = ['all', 'errors', 'off'] as const;
/** Which requests get an access log line (http/access-log.ts). */
export type AccessLogPolicy = (typeof ACCESS_LOG_POLICIES)[number];

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Another setting's value, for a default that depends on it. */
type Get = <K extends keyof Config>(key: K) => Config[K];

/** How the text of a variable becomes a value. */
interface Kind<T> {
  /** Ends the message "NAME must be ...". */
  readonly expected: string;
  /** The value, or undefined when the text is refused. */
  readonly parse: (raw: string) => T | undefined;
  /** The refused text is left out of the message: it may hold a password. */
  readonly secret?: boolean;
}

interface Variable<T> {
  readonly env: string;
  readonly kind: Kind<T>;
  /** Taken when the variable is unset or empty, and when its text is refused (so that the checks across variables still run). */
  readonly default: T | ((get: Get, env: Env) => T);
  /** The default as the docs table shows it (Markdown); needed when `default` is a function. */
  readonly shownDefault?: string;
  /** What it does, for the docs table (Markdown). */
  readonly meaning: string;
}

const integer = (min: number, max: number): Kind<number> => ({
  expected: `an integer from ${min} to ${max}`,
  parse: (raw) => {
    const value = Number(raw);
    const ok = /^\s*-?\d+\s*$/.test(raw) && Number.isSafeInteger(value) && value >= min && value <= max;
    return ok ? value : undefined;
  },
});
const boolean: Kind<boolean> = {
  expected: 'true or false',
  parse: (raw) => {
    const value = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(value)) return true;
    return ['false', '0', 'no', 'off'].includes(value) ? false : undefined;
  },
};
const text: Kind<string> = { expected: 'text', parse: (raw) => raw };
const oneOf = <T extends string>(values: readonly T[]): Kind<T> => ({
  expected: `one of ${values.join(', ')}`,
  parse: (raw) => values.find((value) => value === raw),
});
const postgresUrl: Kind<string> = {
  expected: 'a postgres:// or postgresql:// URL',
  parse: (raw) => (/^postgres(ql)?:\/\//.test(raw) ? raw : undefined),
  secret: true,
};

const HOUR_MS = 3_600_000;
/** A length of time as hours or days: `6h`, `1d`, `30d`. */
const duration = (minHours: number, maxHours: number): Kind<number> => ({
  expected: `a duration in hours or days (such as 6h, 1d, 7d) from ${minHours}h to ${maxHours / 24}d`,
  parse: (raw) => {
    const match = /^\s*(\d+)\s*([hd])\s*$/.exec(raw);
    if (match === null) return undefined;
    const hours = Number(match[1]) * (match[2] === 'd' ? 24 : 1);
    return hours >= minHours && hours <= maxHours ? hours * HOUR_MS : undefined;
  },
});
/** A duration, or `off` (0). */
const durationOrOff = (minHours: number, maxHours: number): Kind<number> => {
  const base = duration(minHours, maxHours);
  return {
    expected: `off or ${base.expected}`,
    parse: (raw) => (raw.trim().toLowerCase() === 'off' ? 0 : base.parse(raw)),
  };
};

const variable = <T>(env: string, kind: Kind<T>, rest: Omit<Variable<T>, 'env' | 'kind'>) => ({ env, kind, ...rest });

const NO_LIMIT = '`0` (no limit)';

/**
 * Every variable the gateway reads, in the order of the docs table (docs/operations.md, "Configuration").
 * A default that reads other settings types its parameter and result: Config is made from this object.
 */
const VARIABLES = {
  databaseUrl: variable<string | undefined>('DATABASE_URL', postgresUrl, {
    default: undefined,
    shownDefault: 'unset: embedded PostgreSQL',
    meaning: 'PostgreSQL connection string',
  }),
  dataDir: variable('DATA_DIR', text, {
    default: DEFAULT_DATA_DIR,
    shownDefault: '`.data`',
    meaning: 'where the embedded PostgreSQL keeps its data',
  }),
  port: variable('PORT', integer(0, 65535), { default: 8080, meaning: 'HTTP port' }),
  host: variable('HOST', text, { default: '127.0.0.1', meaning: 'bind address (`0.0.0.0` for every interface)' }),
  logLevel: variable<LogLevel>('LOG_LEVEL', oneOf(LOG_LEVELS), {
    default: 'info',
    meaning: LOG_LEVELS.map((level) => `\`${level}\``).join(', '),
  }),
  accessLog: variable<AccessLogPolicy>('ACCESS_LOG', oneOf(ACCESS_LOG_POLICIES), {
    default: 'errors',
    meaning:
      'access log lines (`info`, `error` for 5xx): `errors` logs the ingest routes (`POST /v1/metrics`, `/v1/metrics/bulk`) only when they answer 4xx/5xx or take `ACCESS_LOG_SLOW_MS` or more, and every request on the other routes; `all`: every request; `off`: none. Probes and pollers (`/healthz`, `/readyz`, `/metrics`, `/v1/stats`) are never logged',
  }),
  accessLogSlowMs: variable('ACCESS_LOG_SLOW_MS', integer(0, 3_600_000), {
    default: 1000,
    meaning: 'with `ACCESS_LOG=errors`: an ingest request that takes this long (ms) is logged whatever its answer',
  }),
  batchMaxRows: variable('BATCH_MAX_ROWS', integer(1, 1_000_000), {
    default: 5000,
    meaning: 'rows per COPY batch at most',
  }),
  batchMaxWaitMs: variable('BATCH_MAX_WAIT_MS', integer(0, 60_000), {
    default: 5,
    meaning: 'a batch is written this long after its first row at the latest',
  }),
  bufferMaxRows: variable('BUFFER_MAX_ROWS', integer(1, 100_000_000), {
    default: 200_000,
    meaning: 'rows buffered or being written at most',
  }),
  flushConcurrency: variable('FLUSH_CONCURRENCY', integer(1, 64), {
    default: 2,
    meaning: 'COPY batches in flight at once',
  }),
  ackTimeoutMs: variable('ACK_TIMEOUT_MS', integer(100, 600_000), {
    default: 10_000,
    meaning:
      "`wait=true`: answer `503` when none of the request's rows is committed for this long; a big upload that keeps committing is not cut off",
  }),
  bulkBackpressureTimeoutMs: variable('BULK_BACKPRESSURE_TIMEOUT_MS', integer(100, 3_600_000), {
    default: 30_000,
    meaning: 'a bulk upload waits this long for buffer room, then `429`',
  }),
  shutdownTimeoutMs: variable('SHUTDOWN_TIMEOUT_MS', integer(0, 3_600_000), {
    default: 30_000,
    meaning: 'deadline for flushing the buffer on `SIGTERM`',
  }),
  migrateOnStart: variable('MIGRATE_ON_START', boolean, {
    default: true,
    meaning:
      'apply pending migrations at start-up, under an advisory lock; `false`: refuse to start, naming them, while any is pending (apply them with `npm run migrate`)',
  }),
  seedDemoData: variable('SEED_DEMO_DATA', boolean, {
    default: (get: Get): boolean => get('databaseUrl') === undefined,
    shownDefault: '`true` with the embedded database, else `false`',
    meaning: 'seed demo users and devices into an empty database',
  }),
  authRequired: variable('AUTH_REQUIRED', boolean, {
    default: (_get: Get, env: Env): boolean => env.NODE_ENV === 'production',
    shownDefault: '`true` when `NODE_ENV=production` (as in the Docker image), else `false`',
    meaning:
      'require `Authorization: Bearer KEY` on every route but `/healthz` and `/readyz` (see [API keys](#api-keys))',
  }),
  authCacheTtlMs: variable('AUTH_CACHE_TTL_MS', integer(0, 3_600_000), {
    default: 30_000,
    meaning:
      'how long a key lookup is cached when no change to the key is announced (a gateway reconnecting to PostgreSQL); revocations take effect at once otherwise (0: every request asks)',
  }),
  metricsAuthRequired: variable('METRICS_AUTH_REQUIRED', boolean, {
    default: false,
    meaning: 'with `AUTH_REQUIRED=true`: `GET /metrics` and `GET /v1/stats` need a key too',
  }),
  docsAuthRequired: variable('DOCS_AUTH_REQUIRED', boolean, {
    default: false,
    meaning: 'with `AUTH_REQUIRED=true`: `/docs` and `/openapi.json` need a key too',
  }),
  rateLimitPerKeyRps: variable('RATE_LIMIT_PER_KEY_RPS', integer(0, 1_000_000), {
    default: 0,
    shownDefault: NO_LIMIT,
    meaning: 'with `AUTH_REQUIRED=true`: requests per second per key in each gateway, then `429`',
  }),
  rateLimitBurst: variable('RATE_LIMIT_BURST', integer(1, 1_000_000), {
    default: (get: Get): number => Math.max(1, get('rateLimitPerKeyRps')),
    shownDefault: '`RATE_LIMIT_PER_KEY_RPS`',
    meaning: 'requests a key may send at once',
  }),
  authLookupRatePerAddress: variable('AUTH_LOOKUP_RATE_PER_ADDRESS', integer(0, 1_000_000), {
    default: 20,
    meaning:
      'with `AUTH_REQUIRED=true`: lookups of keys not in the cache per second per client address (IPv6: per /64), then `429` (0: no limit)',
  }),
  authLookupBurstPerAddress: variable('AUTH_LOOKUP_BURST_PER_ADDRESS', integer(1, 1_000_000), {
    default: 40,
    meaning: 'such lookups a client address may make at once',
  }),
  authLookupConcurrency: variable('AUTH_LOOKUP_CONCURRENCY', integer(1, 1000), {
    default: (get: Get): number => Math.max(1, Math.min(4, get('pgPoolMax') - get('flushConcurrency') - 1)),
    shownDefault: '`4` (at most `PG_POOL_MAX` − `FLUSH_CONCURRENCY` − 1)',
    meaning: 'key lookups running at once per gateway; 64 times as many wait, more get `429`',
  }),
  maxConnections: variable('MAX_CONNECTIONS', integer(1, 1_000_000), {
    default: 1024,
    meaning: 'TCP connections held at once; more are closed at once',
  }),
  bulkMaxConcurrent: variable('BULK_MAX_CONCURRENT', integer(0, 1_000_000), {
    default: 16,
    meaning: 'bulk uploads in progress at once; the next gets `429` before its body is read (0: no limit)',
  }),
  metricMaxBytes: variable('METRIC_MAX_BYTES', integer(256, 10_485_760), {
    default: 16_384,
    meaning: 'largest body of `POST /v1/metrics`',
  }),
  bulkMaxLineBytes: variable('BULK_MAX_LINE_BYTES', integer(256, 10_485_760), {
    default: 65_536,
    meaning: 'longest NDJSON line',
  }),
  bulkMaxBytes: variable('BULK_MAX_BYTES', integer(0, Number.MAX_SAFE_INTEGER), {
    default: 0,
    shownDefault: NO_LIMIT,
    meaning:
      'largest bulk body, counted after decompression; uploads stream in bounded memory, so the default lets a file of any size through',
  }),
  bulkGzipMaxRatio: variable('BULK_GZIP_MAX_RATIO', integer(0, 1_000_000), {
    default: 200,
    meaning: 'a gzip bulk body may inflate this many times, checked past 1 MiB (0: no limit)',
  }),
  bodyIdleTimeoutMs: variable('BODY_IDLE_TIMEOUT_MS', integer(0, 3_600_000), {
    default: 30_000,
    meaning: 'a bulk body that sends nothing for this long gets `408` (0: never)',
  }),
  bodyMinBytesPerSecond: variable('BODY_MIN_BYTES_PER_SECOND', integer(0, 1_073_741_824), {
    default: 1024,
    meaning:
      'a bulk body arriving slower than this, on average over `BODY_IDLE_TIMEOUT_MS` of waiting for it, gets `408` (0: any rate)',
  }),
  headersTimeoutMs: variable('HEADERS_TIMEOUT_MS', integer(100, 3_600_000), {
    default: 20_000,
    meaning: 'the request headers must arrive within this',
  }),
  requestTimeoutMs: variable('REQUEST_TIMEOUT_MS', integer(0, 86_400_000), {
    default: 0,
    shownDefault: NO_LIMIT,
    meaning: 'the whole request, headers and body, must arrive within this',
  }),
  pgPoolMax: variable('PG_POOL_MAX', integer(3, 1000), {
    default: 10,
    meaning:
      'PostgreSQL connections at most, in two pools: `FLUSH_CONCURRENCY + 1` write batches (COPY, `txid_status`, rejected rows, spool commits), the rest (at least 1) serve requests (lookups of users, devices and API keys, reads, admin routes, `/readyz`); with `AUTH_REQUIRED=true`, one more listens for key changes',
  }),
  requestDeadlineMs: variable('REQUEST_DEADLINE_MS', integer(100, 600_000), {
    default: (get: Get): number => Math.max(10_000, get('ackTimeoutMs')),
    shownDefault: '`10000`, or `ACK_TIMEOUT_MS` if that is longer',
    meaning:
      'a request other than a bulk upload that is not answered by then gets `503`; each database call of a request gets a part of it: `lock_timeout` a quarter, `statement_timeout` half, no answer from the server (`query_timeout`) three quarters, waiting for a pool connection a quarter',
  }),
  writeStallTimeoutMs: variable('WRITE_STALL_TIMEOUT_MS', integer(0, 3_600_000), {
    default: 30_000,
    meaning:
      'a batch write whose connection sends and receives nothing for this long is cut and retried (0: never); keep it above the slowest legitimate statement',
  }),
  spoolEnabled: variable('SPOOL', boolean, {
    default: true,
    meaning: "write `wait=false` rows to a local spool (fsync'd) before answering `202`",
  }),
  spoolDir: variable('SPOOL_DIR', text, {
    default: (get: Get): string => path.join(get('dataDir'), 'spool'),
    shownDefault: '`DATA_DIR/spool`',
    meaning: "this gateway's spool; one directory per gateway",
  }),
  spoolSegmentBytes: variable('SPOOL_SEGMENT_BYTES', integer(4096, 1024 * 1024 * 1024), {
    default: 64 * 1024 * 1024,
    shownDefault: '`67108864` (64 MiB)',
    meaning: 'size of one spool segment file',
  }),
  spoolMaxBytes: variable('SPOOL_MAX_BYTES', integer(0, Number.MAX_SAFE_INTEGER), {
    default: 4 * 1024 * 1024 * 1024,
    shownDefault: '`4294967296` (4 GiB)',
    meaning:
      'the spool holds this much at most (an outage is absorbed there), then `wait=false` gets `429`; 0: no limit',
  }),
  partitionIntervalMs: variable('PARTITION_INTERVAL', duration(1, 366 * 24), {
    default: 24 * HOUR_MS,
    shownDefault: '`1d`',
    meaning:
      'time span of one partition of `user_metrics` (`1h` .. `366d`); size it so that the indexes of the partitions being written fit in about a quarter of memory (see [Partitions](#partitions-and-retention))',
  }),
  partitionPremake: variable('PARTITION_PREMAKE', integer(0, 1000), {
    default: 2,
    meaning: 'partitions made ahead of the current one',
  }),
  partitionMaintenanceMs: variable('PARTITION_MAINTENANCE_MS', integer(1000, 86_400_000), {
    default: 600_000,
    meaning:
      'how often partition maintenance runs (also at start-up): partitions made ahead, rows in the default partition moved, retention',
  }),
  retentionMs: variable('RETENTION', durationOrOff(1, 100 * 366 * 24), {
    default: 0,
    shownDefault: '`off`',
    meaning:
      'partitions whose whole range is older than this (such as `30d`) are detached and dropped (never a `DELETE`); `off` keeps everything',
  }),
};

/** The gateway's settings, one field per declaration above. */
export type Config = {
  readonly [K in keyof typeof VARIABLES]: (typeof VARIABLES)[K] extends Variable<infer T> ? T : never;
};

const DECLARED: readonly Variable<unknown>[] = Object.values(VARIABLES);

/** The names of every variable the gateway reads. */
export const CONFIG_VARIABLE_NAMES: readonly string[] = DECLARED.map((variable) => variable.env);

/** The Markdown table of every variable that docs/operations.md holds ("Configuration"; a test compares them). */
export function configTable(): string {
  const rows = DECLARED.map((v) => `| \`${v.env}\` | ${v.shownDefault ?? `\`${v.default}\``} | ${v.meaning} |`);
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

/** Reads the configuration from `env`; collects every problem, then throws one ConfigError. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const values = new Map<keyof Config, unknown>();
  // Read on first use, so that a default can depend on any other setting.
  const get: Get = (key) => {
    if (!values.has(key)) values.set(key, read(VARIABLES[key], env, get, problems));
    return values.get(key) as Config[typeof key];
  };
  const config = Object.fromEntries(Object.keys(VARIABLES).map((key) => [key, get(key as keyof Config)])) as Config;
  checkTogether(config, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

function read(variable: Variable<unknown>, env: Env, get: Get, problems: string[]): unknown {
  const fallback = (): unknown =>
    typeof variable.default === 'function' ? variable.default(get, env) : variable.default;
  const raw = env[variable.env];
  if (raw === undefined || raw === '') return fallback();
  const value = variable.kind.parse(raw);
  if (value !== undefined) return value;
  const got = variable.kind.secret ? '' : `, got ${JSON.stringify(raw)}`;
  problems.push(`${variable.env} must be ${variable.kind.expected}${got}`);
  return fallback();
}

/** Adds the problems of settings that are each valid but not together. */
function checkTogether(config: Config, problems: string[]): void {
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
}
