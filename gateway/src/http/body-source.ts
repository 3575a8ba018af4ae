import type { Request } from 'express';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { AppError } from '../contract/errors';

const NDJSON_TYPES = ['application/x-ndjson', 'application/ndjson'];

/** Refuses a bulk body that is not NDJSON in UTF-8, before a byte of it is read. */
export function assertNdjson(req: Request): void {
  if (req.is(NDJSON_TYPES) === false || req.is(NDJSON_TYPES) === null) {
    throw new AppError('unsupported_media_type', 'the bulk endpoint takes Content-Type: application/x-ndjson');
  }
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new AppError('unsupported_media_type', `charset ${charset} is not supported; send UTF-8`);
  }
}

export function assertJson(req: Request): void {
  if (!req.is('application/json')) {
    throw new AppError('unsupported_media_type', 'this endpoint takes Content-Type: application/json');
  }
}

/** Limits on a streamed request body; 0 turns one off. */
export interface BodyLimits {
  /** Bytes after decompression. */
  readonly maxBytes: number;
  /** Decompressed bytes per compressed byte, checked once past GZIP_RATIO_FLOOR_BYTES. */
  readonly maxGzipRatio: number;
  /** The longest wait for the next piece of the body. */
  readonly idleTimeoutMs: number;
  /** Bytes per second the body must arrive at, on average over each `idleTimeoutMs` of waiting for it. */
  readonly minBytesPerSecond?: number;
}

const NO_BODY_LIMITS: BodyLimits = { maxBytes: 0, maxGzipRatio: 0, idleTimeoutMs: 0 };

/** Small bodies may compress very well (a few repeated lines); the ratio matters for big ones. */
const GZIP_RATIO_FLOOR_BYTES = 1_048_576;

/**
 * The request body as chunks of bytes, gunzipped when `Content-Encoding: gzip`, within `limits`:
 * past `maxBytes` decompressed, or inflating more than `maxGzipRatio` times (a gzip bomb), reading
 * stops with 413; when no byte arrives for `idleTimeoutMs`, or fewer than `minBytesPerSecond` arrive
 * on average over a window of `idleTimeoutMs`, with 408. Whatever stops the reading, the request
 * stream is left undestroyed so that the error can still be answered on its socket.
 */
export function decodedBody(req: Request, limits: BodyLimits = NO_BODY_LIMITS): AsyncIterable<Buffer> {
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding === 'identity' || encoding === '') {
    const declared = Number(req.headers['content-length']);
    if (limits.maxBytes > 0 && declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
    return limitedBody(req, req, undefined, limits);
  }
  if (encoding !== 'gzip' && encoding !== 'x-gzip') {
    throw new AppError('unsupported_media_type', `Content-Encoding ${encoding} is not supported; use gzip or none`);
  }
  const gunzip = createGunzip();
  req.on('error', (error) => gunzip.destroy(error));
  return limitedBody(req, req.pipe(gunzip), gunzip, limits, pipedWire(req));
}

async function* limitedBody(
  req: Request,
  source: Readable,
  gunzip: Gunzip | undefined,
  limits: BodyLimits,
  /** How the body arrives on the wire; unset: as read here (the body is read as it comes, not piped). */
  wire?: WireMeter,
): AsyncGenerator<Buffer> {
  // Never return()ed: that would destroy the request, and with it the socket the answer goes out on.
  const chunks = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let bytes = 0;
  let waitedMs = 0;
  const pace = new BodyPace(limits, wire ?? { waitedMs: () => waitedMs, bytes: () => bytes });
  try {
    for (;;) {
      const waitStartedAt = performance.now();
      const next = await nextWithin(chunks, limits.idleTimeoutMs);
      waitedMs += performance.now() - waitStartedAt;
      if (next.done) return;
      bytes += next.value.length;
      pace.check();
      if (limits.maxBytes > 0 && bytes > limits.maxBytes) throw tooLarge(limits.maxBytes);
      if (
        gunzip !== undefined &&
        limits.maxGzipRatio > 0 &&
        bytes > GZIP_RATIO_FLOOR_BYTES &&
        bytes > limits.maxGzipRatio * gunzip.bytesWritten
      ) {
        throw new AppError(
          'payload_too_large',
          `the gzip body inflates more than ${limits.maxGzipRatio} times (BULK_GZIP_MAX_RATIO); refused as a decompression bomb`,
        );
      }
      yield next.value;
    }
  } catch (error) {
    if (error instanceof AppError) throw error;
    if (isGzipError(error)) {
      throw new AppError('invalid_json', `the body is not valid gzip (${(error as Error).message})`);
    }
    // The client went away mid-body: nobody will read the answer, but it is not our failure.
    if (req.destroyed) throw new AppError('invalid_json', 'the client closed the connection before the body ended');
    throw error;
  } finally {
    gunzip?.destroy();
  }
}

function tooLarge(maxBytes: number): AppError {
  return new AppError('payload_too_large', `the bulk body is larger than ${maxBytes} bytes (BULK_MAX_BYTES)`);
}

/** Bytes of a body received on the wire so far, and the time the gateway was ready to take more. */
interface WireMeter {
  waitedMs(): number;
  bytes(): number;
}

/**
 * The wire side of a request piped into gunzip: its compressed bytes, and the time it flowed. While
 * gunzip is busy or its reader is slow, the pipe pauses the request; that time is not the client's.
 */
function pipedWire(req: Readable): WireMeter {
  let bytes = 0;
  let waitedMs = 0;
  let flowingSince: number | undefined;
  const start = (): void => {
    flowingSince ??= performance.now();
  };
  const stop = (): void => {
    if (flowingSince !== undefined) waitedMs += performance.now() - flowingSince;
    flowingSince = undefined;
  };
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  req.on('resume', start);
  req.on('pause', stop);
  req.once('end', stop);
  req.once('close', stop);
  if (req.readableFlowing === true) start();
  return {
    waitedMs: () => waitedMs + (flowingSince === undefined ? 0 : performance.now() - flowingSince),
    bytes: () => bytes,
  };
}

/**
 * Whether a body arrives fast enough: at least `minBytesPerSecond` on the wire, on average over each
 * window of `idleTimeoutMs` that the gateway spent ready to take it. While the gateway does not read
 * (backpressure from a full buffer, a busy gunzip), the client cannot send, and that time is not
 * counted. A trickle of a byte every few seconds never trips the idle timeout, but fails here.
 */
class BodyPace {
  private windowStart = { waitedMs: 0, bytes: 0 };

  constructor(
    private readonly limits: BodyLimits,
    private readonly wire: WireMeter,
  ) {}

  check(): void {
    const { idleTimeoutMs: windowMs, minBytesPerSecond = 0 } = this.limits;
    if (windowMs <= 0 || minBytesPerSecond <= 0) return;
    const waitedMs = this.wire.waitedMs() - this.windowStart.waitedMs;
    if (waitedMs < windowMs) return;
    const bytes = this.wire.bytes() - this.windowStart.bytes;
    if (bytes < (minBytesPerSecond * waitedMs) / 1000) {
      throw new AppError(
        'request_timeout',
        `the body arrived at ${Math.floor((bytes * 1000) / waitedMs)} bytes/s over ${Math.round(waitedMs)} ms, ` +
          `less than ${minBytesPerSecond} (BODY_MIN_BYTES_PER_SECOND)`,
      );
    }
    this.windowStart = { waitedMs: this.wire.waitedMs(), bytes: this.wire.bytes() };
  }
}

/** `iterator.next()`, or a 408 when it takes longer than `timeoutMs` (0: no limit). */
async function nextWithin<T>(iterator: AsyncIterator<T>, timeoutMs: number): Promise<IteratorResult<T>> {
  if (timeoutMs <= 0) return iterator.next();
  let timer: NodeJS.Timeout | undefined;
  const idle = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new AppError('request_timeout', `no part of the body arrived for ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    // A next() that loses the race settles later (or fails when the socket closes); race handles both.
    return await Promise.race([iterator.next(), idle]);
  } finally {
    clearTimeout(timer);
  }
}

/** zlib's errors for a corrupt or truncated stream. */
function isGzipError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_');
}
