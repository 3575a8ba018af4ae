import express, { type Request, type RequestHandler } from 'express';
import { AppError } from '../contract/errors';
import { assertJson } from './body-source';

/**
 * The Content-Types the lean reader takes: JSON in UTF-8, said the plain way. Anything else (another
 * charset, parameters, a malformed header) goes to express.json(), whose answers are the contract's.
 */
const PLAIN_JSON_TYPE = /^application\/json(?:\s*;\s*charset\s*=\s*"?utf-8"?)?$/i;

/**
 * The JSON body of a route (one metric, a user, a device) into `req.body`, at most `maxBytes`. The
 * common request (`Content-Type: application/json`, a Content-Length, no Content-Encoding) is read
 * here: its chunks gathered, decoded as UTF-8 and `JSON.parse`d, without the layers of express.json()
 * (type-is, content-type, raw-body, iconv-lite, http-errors), which cost more than the rest of the
 * route. Every other request goes to express.json(), so every answer stays what it was: this reader
 * answers exactly as express.json() does in the cases it takes (a differential test holds it to that).
 * The deadline for the body to arrive is body-deadline.ts's, put before this in the chain.
 */
export function jsonBody(maxBytes: number): RequestHandler {
  const fallback = express.json({ limit: maxBytes, strict: false });
  return (req, res, next) => {
    if (!isPlainCase(req)) {
      assertJson(req);
      fallback(req, res, next);
      return;
    }
    const length = Number(req.headers['content-length']);
    if (length > maxBytes) {
      refuseAfterBody(req, next, new AppError('payload_too_large'));
      return;
    }
    readWhole(req, length, next);
  };
}

/** A request the lean reader answers exactly as express.json() would; else the fallback takes it. */
export function isPlainCase(req: Request): boolean {
  const { headers } = req;
  const type = headers['content-type'];
  if (type === undefined || !PLAIN_JSON_TYPE.test(type)) return false;
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
  // Chunked bodies, and requests without a body, are left to express.json(): rare, and its rules.
  if (headers['transfer-encoding'] !== undefined || headers['content-length'] === undefined) return false;
  // A body that is already read, or a socket already gone: express.json() skips these its own way.
  const socket = req.socket as typeof req.socket | null;
  return socket !== null && socket.readable && req.readable && (req as { upgrade?: boolean }).upgrade !== true;
}

/** Reads a body of `length` bytes (its Content-Length, at most the limit) and parses it. */
function readWhole(req: Request, length: number, next: (error?: unknown) => void): void {
  let first: Buffer | undefined;
  let more: Buffer[] | undefined;
  let received = 0;
  let settled = false;
  const finish = (error: unknown): void => {
    if (settled) return;
    settled = true;
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onError);
    req.off('aborted', onAborted);
    req.off('close', onAborted);
    if (error === undefined) next();
    else refuseAfterBody(req, next, error);
  };
  const onData = (chunk: Buffer): void => {
    // No limit to check per chunk: Node's parser passes no more than the Content-Length, which is
    // within the limit; a body cut short is told at the end.
    received += chunk.length;
    if (first === undefined) first = chunk;
    else (more ??= [first]).push(chunk);
  };
  const onEnd = (): void => {
    if (received !== length) return finish(invalidJson('request size did not match content length'));
    const bytes = more === undefined ? first : Buffer.concat(more);
    // As express.json(): UTF-8 with a leading byte order mark dropped, and an empty body is {}.
    let text = bytes === undefined ? '' : bytes.toString('utf8');
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    try {
      req.body = text.length === 0 ? {} : (JSON.parse(text) as unknown);
    } catch (error) {
      return finish(invalidJson((error as Error).message));
    }
    finish(undefined);
  };
  const onError = (error: Error & { status?: number }): void => {
    // As body-parser: a failure of the stream itself (Node's parser) is the request's fault, a 400.
    if (typeof error.status !== 'number') error.status = 400;
    finish(error);
  };
  const onAborted = (): void => finish(invalidJson('request aborted'));
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
  req.on('aborted', onAborted);
  // Closed without 'aborted' (the socket destroyed under it): no end will come.
  req.on('close', onAborted);
}

function invalidJson(reason: string): AppError {
  return new AppError('invalid_json', `the body is not valid JSON: ${reason}`);
}

/**
 * Passes `error` on once the rest of the body is read (or the connection is gone), as express.json()
 * does, so that the connection can carry the next request.
 */
function refuseAfterBody(req: Request, next: (error?: unknown) => void, error: unknown): void {
  if (req.readableEnded || req.destroyed) {
    next(error);
    return;
  }
  let passed = false;
  const pass = (): void => {
    if (passed) return;
    passed = true;
    next(error);
  };
  req.once('end', pass);
  req.once('close', pass);
  req.resume();
}
