import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

const CHUNK_BYTES = 256 * 1024;

/**
 * Writes the rows' UTF-8 straight into buffers of about 256 KiB: the socket sees few large writes,
 * and no joined string is built (and flattened) on the way.
 */
function* chunksOf(rows: readonly string[]): Generator<Buffer> {
  let buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  let used = 0;
  for (const row of rows) {
    // A UTF-8 character takes at most 3 bytes per UTF-16 code unit.
    if (used + row.length * 3 > buffer.length) {
      if (used > 0) yield buffer.subarray(0, used);
      buffer = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, row.length * 3));
      used = 0;
    }
    used += buffer.write(row, used);
  }
  if (used > 0) yield buffer.subarray(0, used);
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
