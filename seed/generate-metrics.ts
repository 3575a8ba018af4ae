import { createWriteStream } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import type { Metric } from '../gateway/src/ingest/schema';
import { parseRfc3339 } from '../gateway/src/ingest/time';
import { DEMO_DEVICE_IDS, DEMO_USER_IDS } from '../gateway/src/db/demo-data';
import { createRandom, type Random } from '../gateway/src/db/seeded-random';

/** One metric as a device would send it: the gateway's own Metric type. */
export type GeneratedMetric = Metric;

export interface GenerateMetricsOptions {
  /** Exact number of metrics to yield. */
  count: number;
  /** PRNG seed; the same seed and startMs give the same metrics. Default 1. */
  seed?: number;
  /** Latest possible time_recorded (epoch ms); metrics span the 30 days up to it. Default: now. */
  startMs?: number;
  /** User ids to draw from. Default: the demo users. */
  users?: readonly number[];
  /** Device ids to draw from. Default: the demo devices. Empty: device_id is always null or absent. */
  devices?: readonly string[];
  /** Add a random (seeded) v4 UUID `event_id` to every metric. */
  withEventIds?: boolean;
}

export const DEFAULT_SEED = 1;
export const TIME_WINDOW_MS = 30 * 24 * 60 * 60 * 1000;
export const MIN_TALKED_TIME = 0.5;
export const MAX_TALKED_TIME = 1800;

// Offsets (minutes east of UTC) that clients in different regions send, including half and quarter hours.
const UTC_OFFSETS_MINUTES: readonly number[] = [0, 60, 120, 180, 330, 345, 480, 540, 600, -180, -210, -300, -420];

// Event ids come from a stream of their own, so that turning them on leaves every other field unchanged.
const EVENT_ID_STREAM = 0x9e3779b9;

/**
 * Yields `count` valid metrics, lazily, deterministic for a given seed and startMs. Options are checked
 * at the call, not at the first next().
 */
export function generateMetrics(options: GenerateMetricsOptions): Generator<GeneratedMetric, void, undefined> {
  const { count, seed = DEFAULT_SEED, users = DEMO_USER_IDS, devices = DEMO_DEVICE_IDS } = options;
  const startMs = Math.floor(options.startMs ?? Date.now());
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`count must be an integer >= 0, got ${count}`);
  }
  if (!Number.isFinite(startMs)) {
    throw new RangeError(`startMs must be a finite number, got ${options.startMs}`);
  }
  if (users.length === 0) throw new RangeError('users must not be empty');
  return lazyMetrics(count, seed, startMs, users, devices, options.withEventIds === true);
}

function* lazyMetrics(
  count: number,
  seed: number,
  startMs: number,
  users: readonly number[],
  devices: readonly string[],
  withEventIds: boolean,
): Generator<GeneratedMetric, void, undefined> {
  const random = createRandom(seed);
  const eventIds = withEventIds ? createRandom((seed ^ EVENT_ID_STREAM) >>> 0) : undefined;
  for (let i = 0; i < count; i++) {
    const userId = random.pick(users);
    // Most sessions name their device; older clients send null or leave the field out.
    const deviceDraw = random.float();
    const deviceId =
      devices.length > 0 && deviceDraw < 0.8 ? random.pick(devices) : deviceDraw < 0.9 ? null : undefined;
    const talkedTime = drawTalkedTime(random);
    const microphoneUsed = random.chance(0.93);
    const speakerUsed = random.chance(0.7);
    const sentimentDraw = random.float();
    const sentiment = sentimentDraw < 0.85 ? drawSentiment(random) : sentimentDraw < 0.95 ? null : undefined;
    const timeRecorded = drawTimeRecorded(random, startMs);
    // Built in one literal so that the keys keep the contract's order in the JSON.
    const metric: GeneratedMetric = {
      user_id: userId,
      ...(deviceId === undefined ? {} : { device_id: deviceId }),
      talked_time: talkedTime,
      microphone_used: microphoneUsed,
      speaker_used: speakerUsed,
      ...(sentiment === undefined ? {} : { voice_sentiment: sentiment }),
      time_recorded: timeRecorded,
      ...(eventIds === undefined ? {} : { event_id: uuidV4(eventIds) }),
    };
    yield metric;
  }
}

/** Seconds, log-normal around a minute (most calls are short, a few run long), 3 decimals. */
function drawTalkedTime(random: Random): number {
  const seconds = Math.exp(random.normal(Math.log(60), 1.3));
  return Math.round(Math.min(MAX_TALKED_TIME, Math.max(MIN_TALKED_TIME, seconds)) * 1000) / 1000;
}

/** In [-1, 1], mildly positive on average, 3 decimals. */
function drawSentiment(random: Random): number {
  const value = Math.round(random.normal(0.1, 0.35) * 1000) / 1000;
  return Math.min(1, Math.max(-1, value)) + 0; // + 0 turns -0 into 0
}

function drawTimeRecorded(random: Random, startMs: number): string | number {
  // Whole milliseconds in [startMs - 30 days + 1 s, startMs], so truncating to seconds stays in the window.
  let ms = startMs - Math.floor(random.float() * (TIME_WINDOW_MS - 1000));
  if (random.chance(0.5)) ms = Math.floor(ms / 1000) * 1000;
  const format = random.float();
  if (format < 0.15) return ms;
  if (format < 0.65) return stripZeroMillis(new Date(ms).toISOString());
  return formatWithOffset(ms, random.pick(UTC_OFFSETS_MINUTES));
}

function formatWithOffset(ms: number, offsetMinutes: number): string {
  const local = stripZeroMillis(new Date(ms + offsetMinutes * 60_000).toISOString()).slice(0, -1);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const hours = String(Math.floor(abs / 60)).padStart(2, '0');
  const minutes = String(abs % 60).padStart(2, '0');
  return `${local}${sign}${hours}:${minutes}`;
}

function stripZeroMillis(iso: string): string {
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}

const BYTE_HEX: readonly string[] = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

function wordHex(word: number): string {
  return (
    (BYTE_HEX[word >>> 24] as string) +
    (BYTE_HEX[(word >>> 16) & 0xff] as string) +
    (BYTE_HEX[(word >>> 8) & 0xff] as string) +
    (BYTE_HEX[word & 0xff] as string)
  );
}

/** A random UUID with the version (4) and variant (10xx) bits of RFC 9562, lowercase. */
function uuidV4(random: Random): string {
  const a = wordHex(random.uint32());
  const b = wordHex((random.uint32() & 0xffff0fff) | 0x00004000);
  const c = wordHex(((random.uint32() & 0x3fffffff) | 0x80000000) >>> 0);
  const d = wordHex(random.uint32());
  return `${a}-${b.slice(0, 4)}-${b.slice(4)}-${c.slice(0, 4)}-${c.slice(4)}${d}`;
}

/** What is wrong with each kind of line that makeBadLine produces, in the order it cycles through them. */
export const BAD_LINE_KINDS = [
  'unknown_field', //       talk_time instead of talked_time
  'negative_talked_time',
  'missing_user_id',
  'user_id_zero',
  'nul_in_string', //       device_id with a NUL character, which PostgreSQL cannot store
  'not_json',
  'impossible_date', //     2024-02-30T10:00:00Z
  'unknown_user', //        user_id 999999, not a demo user
] as const;
export type BadLineKind = (typeof BAD_LINE_KINDS)[number];

export function badLineKind(i: number): BadLineKind {
  const n = BAD_LINE_KINDS.length;
  return BAD_LINE_KINDS[((Math.trunc(i) % n) + n) % n] as BadLineKind;
}

const BAD_LINE_BASE: GeneratedMetric = {
  user_id: 1,
  device_id: DEMO_DEVICE_IDS[0] ?? null,
  talked_time: 42.5,
  microphone_used: true,
  speaker_used: false,
  voice_sentiment: 0.25,
  time_recorded: '2024-01-15T10:00:00Z',
};

/**
 * The i-th invalid NDJSON line (no newline), cycling through BAD_LINE_KINDS. Each line is `base` (a valid
 * metric) with exactly one thing wrong, so the gateway's error names exactly that.
 */
export function makeBadLine(i: number, base: GeneratedMetric = BAD_LINE_BASE): string {
  const metric: Record<string, unknown> = { ...base };
  switch (badLineKind(i)) {
    case 'unknown_field':
      return JSON.stringify(renameKey(metric, 'talked_time', 'talk_time'));
    case 'negative_talked_time':
      return JSON.stringify({ ...metric, talked_time: -Math.max(1, base.talked_time) });
    case 'missing_user_id':
      delete metric.user_id;
      return JSON.stringify(metric);
    case 'user_id_zero':
      return JSON.stringify({ ...metric, user_id: 0 });
    case 'nul_in_string':
      return JSON.stringify({ ...metric, device_id: `${base.device_id ?? BAD_LINE_BASE.device_id}\u0000` });
    case 'not_json':
      return 'not json';
    case 'impossible_date':
      return JSON.stringify({ ...metric, time_recorded: '2024-02-30T10:00:00Z' });
    case 'unknown_user':
      return JSON.stringify({ ...metric, user_id: 999999 });
  }
}

/** A copy with one key renamed in place, so the line reads like the typo it stands for. */
function renameKey(object: Record<string, unknown>, from: string, to: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key === from ? to : key, value]));
}

const CHUNK_CHARS = 64 * 1024;

export interface NdjsonOptions extends GenerateMetricsOptions {
  /** Replace every Nth line (N, 2N, ...) with makeBadLine. */
  badEvery?: number;
  /** Called after each chunk with the number of lines generated so far. */
  onProgress?: (lines: number) => void;
}

/**
 * NDJSON text (every line ends in `\n`) in chunks of about 64 KiB, generated lazily: one stream write
 * per line would cost more than generating it. Feed it to Readable.from for a file or an HTTP body.
 */
export function generateNdjson(options: NdjsonOptions): Generator<string, void, undefined> {
  const { badEvery, onProgress } = options;
  if (badEvery !== undefined && (!Number.isSafeInteger(badEvery) || badEvery < 1)) {
    throw new RangeError(`badEvery must be an integer >= 1, got ${badEvery}`);
  }
  return ndjsonChunks(generateMetrics(options), badEvery, onProgress);
}

function* ndjsonChunks(
  metrics: Iterable<GeneratedMetric>,
  badEvery: number | undefined,
  onProgress: ((lines: number) => void) | undefined,
): Generator<string, void, undefined> {
  let chunk = '';
  let line = 0;
  for (const metric of metrics) {
    line++;
    const bad = badEvery !== undefined && line % badEvery === 0;
    chunk += `${bad ? makeBadLine(line / badEvery - 1, metric) : JSON.stringify(metric)}\n`;
    if (chunk.length >= CHUNK_CHARS) {
      yield chunk;
      chunk = '';
      onProgress?.(line);
    }
  }
  if (chunk.length > 0) yield chunk;
}

const CLI_SYNOPSIS =
  'Usage: node dist/seed/generate-metrics.js --count N [--out FILE] [--gzip] [--seed S] [--start TIME]' +
  ' [--event-ids] [--bad-every N]   (--help for details)';

export const CLI_USAGE = `Usage: node dist/seed/generate-metrics.js --count N [options]

Writes N voice-session metrics for the demo users and devices as NDJSON (one JSON object per line).

  -n, --count N       number of lines to write (required)
  -o, --out FILE      write to FILE instead of stdout ("-" is stdout); a FILE ending in .gz is gzipped
      --gzip          gzip the output
      --seed S        PRNG seed, an integer (default ${DEFAULT_SEED})
      --start TIME    latest time_recorded, RFC 3339 or epoch ms (default: now); the same --seed and
                      --start give the same lines
      --event-ids     give every line a random UUID event_id
      --bad-every N   make every Nth line invalid, cycling through kinds of error (for demos)
  -h, --help          show this help
`;

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  /** Clock for the default --start. */
  now?: () => number;
}

interface CliOptions {
  count: number;
  out: string | undefined;
  gzip: boolean;
  seed: number;
  startMs: number;
  withEventIds: boolean;
  badEvery: number | undefined;
}

class UsageError extends Error {}

const PROGRESS_INTERVAL_MS = 1000;

/** Runs the generator CLI; resolves to the process exit code (2 for bad arguments). */
export async function runGenerateCli(
  argv: readonly string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let options: CliOptions | 'help';
  try {
    options = parseCliArgs(argv, (io.now ?? Date.now)());
  } catch (error) {
    if (!(error instanceof UsageError) && !isParseArgsError(error)) throw error;
    io.stderr.write(`generate-metrics: ${(error as Error).message}\n${CLI_SYNOPSIS}\n`);
    return 2;
  }
  if (options === 'help') {
    io.stdout.write(CLI_USAGE);
    return 0;
  }

  const file = options.out === undefined || options.out === '-' ? undefined : options.out;
  const gzip = options.gzip || (file?.endsWith('.gz') ?? false);
  const progress = file === undefined ? undefined : progressReporter(io.stderr, options.count);
  const source = Readable.from(
    generateNdjson({
      count: options.count,
      seed: options.seed,
      startMs: options.startMs,
      withEventIds: options.withEventIds,
      badEvery: options.badEvery,
      onProgress: progress,
    }),
  );
  const destination = file === undefined ? io.stdout : createWriteStream(file);
  try {
    // pipeline pulls from the generator only as fast as the destination drains: memory stays flat.
    if (gzip) await pipeline(source, createGzip(), destination);
    else await pipeline(source, destination);
  } catch (error) {
    // A reader that stops early (`| head`) is not a failure of ours.
    if (file === undefined && (error as NodeJS.ErrnoException).code === 'EPIPE') return 0;
    io.stderr.write(`generate-metrics: cannot write ${file ?? 'stdout'}: ${(error as Error).message}\n`);
    return 1;
  }
  if (file !== undefined) {
    io.stderr.write(`wrote ${options.count} lines to ${file}${gzip ? ' (gzip)' : ''}\n`);
  }
  return 0;
}

function progressReporter(stderr: Writable, total: number): (lines: number) => void {
  let last = Date.now();
  return (lines) => {
    const now = Date.now();
    if (now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    stderr.write(`generated ${lines} / ${total} lines (${Math.floor((lines / total) * 100)}%)\n`);
  };
}

function parseCliArgs(argv: readonly string[], nowMs: number): CliOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      count: { type: 'string', short: 'n' },
      out: { type: 'string', short: 'o' },
      gzip: { type: 'boolean', default: false },
      seed: { type: 'string' },
      start: { type: 'string' },
      'event-ids': { type: 'boolean', default: false },
      'bad-every': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  if (values.count === undefined) throw new UsageError('--count is required');
  const options: CliOptions = {
    count: parseInteger('--count', values.count, 0),
    out: values.out,
    gzip: values.gzip,
    seed: values.seed === undefined ? DEFAULT_SEED : parseInteger('--seed', values.seed, -(2 ** 31)),
    startMs: values.start === undefined ? nowMs : parseInstant('--start', values.start),
    withEventIds: values['event-ids'],
    badEvery: values['bad-every'] === undefined ? undefined : parseInteger('--bad-every', values['bad-every'], 1),
  };
  if (options.out === '') throw new UsageError('--out must name a file');
  if (options.startMs > nowMs) {
    throw new UsageError(`--start must not be in the future, got ${JSON.stringify(values.start)}`);
  }
  return options;
}

function parseInteger(name: string, text: string, min: number): number {
  // Digits only (underscores allowed as separators): "1e7", "0x10" or "12abc" would be guesses.
  const value = /^-?\d[\d_]*$/.test(text) ? Number(text.replaceAll('_', '')) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`${name} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parseInstant(name: string, text: string): number {
  // The gateway's own parser, so --start follows the same rules as time_recorded (2024-02-30 is refused).
  const parsed = /^\d+$/.test(text) ? Number(text) : parseRfc3339(text);
  const ms = parsed === undefined ? NaN : Math.floor(parsed); // sub-millisecond digits are dropped
  if (!Number.isSafeInteger(ms)) {
    throw new UsageError(`${name} must be an RFC 3339 timestamp or epoch milliseconds, got ${JSON.stringify(text)}`);
  }
  return ms;
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

if (require.main === module) {
  runGenerateCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`generate-metrics: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
