import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

const CHUNK_CHARS = 64 * 1024;

/** Joins encoded rows into chunks of about 64 KiB, so the socket sees few large writes. */
function* chunksOf(rows: readonly string[]): Generator<string> {
  let chunk = '';
  for (const row of rows) {
    chunk += row;
    if (chunk.length >= CHUNK_CHARS) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk.length > 0) yield chunk;
}

/**
 * Streams rows already in COPY text format into `COPY <target> FROM STDIN` and checks that the
 * server counted every one. On failure the stream is destroyed, which sends CopyFail; the caller must
 * not reuse the connection, since its protocol state is then uncertain.
 */
export async function copyRows(client: PoolClient, target: string, rows: readonly string[]): Promise<void> {
  const stream = client.query(copyFrom(`COPY ${target} FROM STDIN`));
  await pipeline(Readable.from(chunksOf(rows)), stream);
  if (stream.rowCount !== rows.length) {
    throw new Error(`COPY into ${target} stored ${stream.rowCount} of ${rows.length} rows`);
  }
}
