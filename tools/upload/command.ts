import { once } from 'node:events';
import { constants, createWriteStream, type WriteStream } from 'node:fs';
import { access, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readChunks, type UploadChunk } from './chunks';
import { bulkUrl, type RejectRecord, type Retry } from 'metrics-gateway-client';
import { sendChunk } from './client';
import { Progress, formatCount } from './progress';

export const DEFAULT_URL = 'http://127.0.0.1:8080';
export const KEY_ENV = 'METRICS_GATEWAY_KEY';
export const DEFAULT_CHUNK_LINES = 50_000;
export const DEFAULT_RETRIES = 10;
/** A chunk ends at this many uncompressed bytes too, well under the gateway's BULK_MAX_BYTES. */
export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;
/** Lines longer than this are not sent (the gateway's own BULK_MAX_LINE_BYTES is 64 KiB by default). */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;
const MAX_RETRY_WAIT_MS = 60_000;

export const UPLOAD_USAGE = `Usage: npm run upload -- FILE.ndjson[.gz] [options]

Uploads an NDJSON file (gzip or not) of any size to POST /v1/metrics/bulk, in chunks of lines sent
one request each, gzip-compressed, waiting for each to be committed. Refused lines are written to
FILE.rejects (NDJSON: {"line", "error", "details"} with the line numbers of FILE).

  --url URL           the gateway (default ${DEFAULT_URL})
  --key KEY           API key (default: $${KEY_ENV})
  --chunk-lines N     lines per request (default ${formatCount(DEFAULT_CHUNK_LINES)}); the gateway lists up to
                      1,000 refused lines per request
  --retries N         retries of a request after 429, 503, a partial answer or a lost connection (default
                      ${DEFAULT_RETRIES}); each waits for Retry-After (at most ${MAX_RETRY_WAIT_MS / 1000} s) or a growing
                      backoff; after a partial answer only the lines from its resend_from_line are sent again
  --start-line N      skip the lines before N (resume an upload that stopped); numbering is unchanged
  -h, --help          this help

Exit status: 0 when every line was accepted, 1 when any was refused or not uploaded, 2 on a usage error.`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface UploadOptions {
  readonly file: string;
  readonly url: string;
  readonly key: string | undefined;
  readonly chunkLines: number;
  readonly chunkBytes: number;
  readonly maxLineBytes: number;
  readonly retries: number;
  readonly startLine: number;
  readonly maxRetryWaitMs: number;
}

function positiveInteger(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * The options of `npm run upload -- ...`; undefined for --help. A relative FILE is taken from the
 * directory npm was started in (INIT_CWD), since npm runs scripts from the project's root.
 */
export function parseUploadArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): UploadOptions | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        key: { type: 'string' },
        'chunk-lines': { type: 'string' },
        retries: { type: 'string' },
        'start-line': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return undefined;
  if (positionals.length !== 1) throw new UsageError('name one file to upload');
  const url = values.url ?? DEFAULT_URL;
  try {
    const { protocol } = new URL(url);
    if (protocol !== 'http:' && protocol !== 'https:') throw new Error();
  } catch {
    throw new UsageError(`--url must be an http:// or https:// URL, got ${JSON.stringify(url)}`);
  }
  return {
    file: path.resolve(env.INIT_CWD ?? process.cwd(), positionals[0] as string),
    url,
    key: values.key ?? (env[KEY_ENV] || undefined),
    chunkLines: positiveInteger('chunk-lines', values['chunk-lines'], DEFAULT_CHUNK_LINES, 1),
    chunkBytes: DEFAULT_CHUNK_BYTES,
    maxLineBytes: MAX_LINE_BYTES,
    retries: positiveInteger('retries', values.retries, DEFAULT_RETRIES, 0),
    startLine: positiveInteger('start-line', values['start-line'], 1, 1),
    maxRetryWaitMs: MAX_RETRY_WAIT_MS,
  };
}

export interface UploadIo {
  /** The summary. */
  readonly out: (text: string) => void;
  /** Progress and notes. */
  readonly err: (text: string) => void;
  readonly errIsTty: boolean;
  /** Aborted: stop after the request in flight (Ctrl-C). */
  readonly signal?: AbortSignal;
  /** Waits between retries; replaceable in tests. */
  readonly wait?: (ms: number) => Promise<void>;
}

export interface UploadSummary {
  readonly lines: number;
  readonly rows: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly rejectedBy: Readonly<Record<string, number>>;
  readonly requests: number;
  readonly retries: number;
  readonly uncertainRetries: number;
  readonly seconds: number;
  readonly rejectsFile: string | undefined;
  /** Set when the upload stopped early: this line and every one after it were not uploaded. */
  readonly notUploaded?: { readonly fromLine: number; readonly reason: string };
}

/** The .rejects file, opened at its first record: appended to when resuming, else written anew. */
class RejectsFile {
  private stream: WriteStream | undefined;
  private failed: Error | undefined;
  records = 0;

  constructor(
    readonly file: string,
    private readonly append: boolean,
  ) {}

  async write(records: readonly RejectRecord[]): Promise<void> {
    if (records.length === 0) return;
    if (this.stream === undefined) {
      this.stream = createWriteStream(this.file, { flags: this.append ? 'a' : 'w' });
      this.stream.on('error', (error) => (this.failed = error));
    }
    const stream = this.stream;
    if (this.failed !== undefined) throw this.failed;
    this.records += records.length;
    const text = records.map((record) => `${JSON.stringify(record)}\n`).join('');
    if (!stream.write(text)) await once(stream, 'drain');
  }

  async close(): Promise<void> {
    const { stream } = this;
    if (stream !== undefined) {
      await new Promise<void>((resolve, reject) =>
        stream.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
    } else if (!this.append) {
      // No refused lines this time: a .rejects file left by an earlier upload would mislead.
      await rm(this.file, { force: true });
    }
  }
}

/** The progress note for a request sent again. */
export function retryNote({ status, waitMs, fromLine, throughLine, mayBeStored }: Retry): string {
  const lines =
    fromLine === throughLine
      ? `line ${formatCount(fromLine)}`
      : `lines ${formatCount(fromLine)}-${formatCount(throughLine)}`;
  const note = `  ${status}: retrying ${lines} in ${(waitMs / 1000).toFixed(1)} s`;
  if (mayBeStored === undefined) return note;
  const which =
    mayBeStored.rows === undefined
      ? 'the gateway may have taken some of these rows'
      : `${formatCount(mayBeStored.rows)} of these rows may still be committed by the earlier request`;
  return `${note}; ${which}: rows without event_id may be stored twice`;
}

export function formatSummary(options: UploadOptions, summary: UploadSummary): string {
  const name = path.basename(options.file);
  const rate = summary.seconds > 0 ? summary.rows / summary.seconds : 0;
  const width = Math.max(formatCount(summary.accepted).length, formatCount(summary.rejected).length);
  const count = (value: number): string => formatCount(value).padStart(width);
  const reasons = Object.entries(summary.rejectedBy)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([error, n]) => `${error} ${formatCount(n)}`)
    .join(', ');
  const lines = [
    `${name}: ${formatCount(summary.rows)} rows in ${formatCount(summary.requests)} requests, ` +
      `${summary.seconds.toFixed(1)} s (${formatCount(rate)} rows/s)`,
    `  accepted  ${count(summary.accepted)}`,
    `  rejected  ${count(summary.rejected)}${reasons ? `  (${reasons})` : ''}` +
      (summary.rejectsFile ? `  -> ${summary.rejectsFile}` : ''),
  ];
  if (summary.retries > 0) {
    lines.push(
      `  retried   ${count(summary.retries)}  requests, after 429, 503, a partial answer or a lost connection` +
        (summary.uncertainRetries > 0
          ? `; ${summary.uncertainRetries} of them after the gateway may have taken rows: rows without event_id may be stored twice`
          : ''),
    );
  }
  if (summary.notUploaded !== undefined) {
    const { fromLine, reason } = summary.notUploaded;
    lines.push(
      `  NOT UPLOADED: line ${formatCount(fromLine)} and every one after it (${reason})`,
      `  to resume: npm run upload -- ${options.file} --start-line ${fromLine}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Uploads the file as `options` say; resolves with the summary (also written to io.out) and the exit status. */
export async function runUpload(
  options: UploadOptions,
  io: UploadIo,
): Promise<{ exitCode: number; summary: UploadSummary }> {
  const startedAt = Date.now();
  const { size } = await stat(options.file);
  // Refused lines go beside the file: find out now, not after the first refusal, that they cannot.
  await access(path.dirname(options.file), constants.W_OK).catch(() => {
    throw new UsageError(`cannot write ${options.file}.rejects: the folder is not writable`);
  });
  const rejectsFile = new RejectsFile(`${options.file}.rejects`, options.startLine > 1);
  const progress = new Progress({ write: io.err, tty: io.errIsTty, totalBytes: size });
  io.err(`uploading ${options.file} to ${bulkUrl(options.url).href}\n`);

  let lines = 0;
  let rows = 0;
  let accepted = 0;
  let rejected = 0;
  let requests = 0;
  let retries = 0;
  let uncertainRetries = 0;
  let bytes = 0;
  let nextLine = options.startLine;
  let notUploaded: UploadSummary['notUploaded'];
  const rejectedBy: Record<string, number> = {};

  const chunks = readChunks(options.file, options)[Symbol.asyncIterator]();
  // The next chunk is read and compressed while the current one is sent.
  const ahead = (): Promise<IteratorResult<UploadChunk>> => {
    const next = chunks.next();
    next.catch(() => undefined); // awaited below; not unhandled meanwhile
    return next;
  };
  let next = ahead();
  try {
    for (;;) {
      let item: IteratorResult<UploadChunk>;
      try {
        item = await next;
      } catch (error) {
        notUploaded = { fromLine: nextLine, reason: `the file could not be read: ${(error as Error).message}` };
        break;
      }
      if (item.done) break;
      const chunk = item.value;
      next = ahead();

      const outcome = await sendChunk(chunk, {
        url: options.url,
        key: options.key,
        retries: options.retries,
        maxRetryWaitMs: options.maxRetryWaitMs,
        wait: io.wait,
        onRetry: (retry) => progress.note(retryNote(retry)),
      });
      requests += (chunk.rows > 0 ? 1 : 0) + outcome.retries;
      retries += outcome.retries;
      uncertainRetries += outcome.uncertainRetries;
      accepted += outcome.accepted;
      rejected += outcome.rejectedRows;
      // A range record stands for `count` lines.
      for (const record of outcome.rejects) {
        rejectedBy[record.error] = (rejectedBy[record.error] ?? 0) + (record.count ?? 1);
      }
      await rejectsFile.write(outcome.rejects);
      if (outcome.failure !== undefined) {
        notUploaded = { fromLine: outcome.failure.fromLine, reason: outcome.failure.reason };
        lines += outcome.failure.fromLine - chunk.firstLine;
        break;
      }
      lines += chunk.lines;
      rows += chunk.rows;
      bytes = chunk.fileOffset;
      nextLine = chunk.firstLine + chunk.lines;
      progress.update({ rows, bytes });
      if (io.signal?.aborted) {
        notUploaded = { fromLine: nextLine, reason: 'interrupted' };
        break;
      }
    }
  } finally {
    await chunks.return(undefined).catch(() => undefined);
    await rejectsFile.close();
  }
  if (notUploaded === undefined) bytes = size;
  progress.finish({ rows, bytes });

  const summary: UploadSummary = {
    lines,
    rows: accepted + rejected,
    accepted,
    rejected,
    rejectedBy,
    requests,
    retries,
    uncertainRetries,
    seconds: (Date.now() - startedAt) / 1000,
    rejectsFile: rejectsFile.records > 0 ? rejectsFile.file : undefined,
    ...(notUploaded === undefined ? {} : { notUploaded }),
  };
  io.out(formatSummary(options, summary));
  return { exitCode: rejected > 0 || notUploaded !== undefined ? 1 : 0, summary };
}
