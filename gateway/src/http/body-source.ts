import type { Request } from 'express';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { AppError } from '../errors';

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

/** The request body as chunks of bytes, gunzipped when `Content-Encoding: gzip`. */
export function decodedBody(req: Request): AsyncIterable<Buffer> {
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding === 'identity' || encoding === '') return req;
  if (encoding !== 'gzip' && encoding !== 'x-gzip') {
    throw new AppError('unsupported_media_type', `Content-Encoding ${encoding} is not supported; use gzip or none`);
  }
  const gunzip = createGunzip();
  req.on('error', (error) => gunzip.destroy(error));
  return gunzipped(req.pipe(gunzip));
}

async function* gunzipped(stream: Readable): AsyncGenerator<Buffer> {
  try {
    yield* stream;
  } catch (error) {
    if (!isGzipError(error)) throw error;
    throw new AppError('invalid_json', `the body is not valid gzip (${(error as Error).message})`);
  }
}

/** zlib's errors for a corrupt or truncated stream. */
function isGzipError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_');
}
