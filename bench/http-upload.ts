// NDJSON uploads to the gateway's bulk endpoint over plain node:http, streamed from a file or a generator.

import { createReadStream } from 'node:fs';
import http from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface BulkAnswer {
  readonly status: number;
  readonly accepted: number;
  readonly rejected: number;
  /** The first errors of the answer, or the raw text of an answer that is not the bulk body. */
  readonly errors: unknown;
  readonly bytesSent: number;
}

export interface UploadOptions {
  readonly wait: boolean;
  readonly timeoutMs: number;
  /** Known body size; chunked transfer when absent. */
  readonly contentLength?: number;
  /** Called with the bytes sent so far, once per chunk. */
  readonly onBytes?: (bytesSent: number) => void;
}

/** POSTs `body` to `${baseUrl}/v1/metrics/bulk` and resolves with the gateway's answer. */
export function uploadNdjson(baseUrl: string, body: Readable, options: UploadOptions): Promise<BulkAnswer> {
  const url = new URL(`/v1/metrics/bulk?wait=${options.wait}`, baseUrl);
  let bytesSent = 0;
  const counter = new Transform({
    transform(chunk: Buffer | string, _encoding, callback) {
      bytesSent += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      options.onBytes?.(bytesSent);
      callback(null, chunk);
    },
  });
  return new Promise<BulkAnswer>((resolve, reject) => {
    let answered = false;
    const request = http.request(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/x-ndjson',
          ...(options.contentLength === undefined ? {} : { 'content-length': String(options.contentLength) }),
        },
        agent: false,
        signal: AbortSignal.timeout(options.timeoutMs),
      },
      (response) => {
        answered = true;
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('error', reject);
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          try {
            const parsed = JSON.parse(text) as { accepted?: unknown; rejected?: unknown; errors?: unknown };
            resolve({
              status,
              accepted: typeof parsed.accepted === 'number' ? parsed.accepted : 0,
              rejected: typeof parsed.rejected === 'number' ? parsed.rejected : 0,
              errors: parsed.errors ?? parsed,
              bytesSent,
            });
          } catch {
            resolve({ status, accepted: 0, rejected: 0, errors: text.slice(0, 500), bytesSent });
          }
        });
      },
    );
    request.on('error', (error) => {
      if (!answered) reject(error);
    });
    // An early answer (an error status) can cut the body short: then the answer is what counts.
    pipeline(body, counter, request).catch((error: unknown) => {
      if (!answered) reject(error);
    });
  });
}

export function uploadFile(
  baseUrl: string,
  file: string,
  bytes: number,
  options: Omit<UploadOptions, 'contentLength'>,
) {
  return uploadNdjson(baseUrl, createReadStream(file, { highWaterMark: 256 * 1024 }), {
    ...options,
    contentLength: bytes,
  });
}
