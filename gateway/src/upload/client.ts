import { setTimeout as sleep } from 'node:timers/promises';
import { chunkFrom, type UploadChunk } from './chunks';

/** A problem with a line, as the API reports it. */
export interface Detail {
  readonly path?: string;
  readonly message: string;
}

/** One record of the .rejects file: a refused line (or a range of them), by its line number in the file. */
export interface RejectRecord {
  readonly line: number;
  /** Last line of a range of refused lines that the gateway counted but did not list one by one. */
  readonly through?: number;
  /** How many lines of the range were refused. */
  readonly count?: number;
  readonly error: string;
  readonly details: readonly Detail[];
}

/** What became of one chunk. */
export interface ChunkOutcome {
  /** Rows the gateway accepted: committed, since requests wait for their commit. */
  readonly accepted: number;
  /** Rows refused, as records for the .rejects file (a range record stands for several). */
  readonly rejects: readonly RejectRecord[];
  readonly rejectedRows: number;
  /** Requests sent again after 429, 503 or a broken connection. */
  readonly retries: number;
  /** Retries after an answer or a failure that may have come after the gateway took some rows. */
  readonly uncertainRetries: number;
  /** Set when the upload cannot go on: this file line and every one after it were not uploaded. */
  readonly failure?: { readonly fromLine: number; readonly reason: string };
}

export interface SendOptions {
  /** The gateway's base URL. */
  readonly url: string;
  readonly key?: string;
  /** Retries of one chunk at most, after 429, 503 or a failed connection. */
  readonly retries: number;
  /** A Retry-After longer than this is cut to it. */
  readonly maxRetryWaitMs: number;
  /** Waits between attempts; replaceable in tests. */
  readonly wait?: (ms: number) => Promise<void>;
  /** Told of each retry, for the progress line. */
  readonly onRetry?: (status: number | string, waitMs: number) => void;
  readonly requestTimeoutMs?: number;
}

const RETRY_STATUSES = new Set([429, 503]);
const USER_AGENT = 'metrics-gateway-upload';

export function bulkUrl(base: string): URL {
  const url = new URL(base.endsWith('/') ? base : `${base}/`);
  return new URL('v1/metrics/bulk?wait=true', url);
}

/** Retry-After in milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(header)) return Number(header) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Without a Retry-After: 0.5 s, 1 s, 2 s, ... up to 30 s, each jittered by up to a fifth. */
export function backoffMs(attempt: number): number {
  const base = Math.min(30_000, 500 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown> | undefined;
  readonly text: string;
}

async function post(part: UploadChunk, options: SendOptions): Promise<Answer> {
  const headers: Record<string, string> = {
    'content-type': 'application/x-ndjson',
    'content-encoding': 'gzip',
    'user-agent': USER_AGENT,
  };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  const response = await fetch(bulkUrl(options.url), {
    method: 'POST',
    headers,
    body: part.body,
    signal: AbortSignal.timeout(options.requestTimeoutMs ?? 10 * 60_000),
  });
  const text = await response.text();
  let body: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      body = parsed as Record<string, unknown>;
  } catch {
    // not JSON (a proxy's page, say): reported by its status and first words
  }
  return { status: response.status, headers: response.headers, body, text };
}

function reasonOf(answer: Answer): string {
  const error = typeof answer.body?.error === 'string' ? answer.body.error : `HTTP ${answer.status}`;
  const message =
    typeof answer.body?.message === 'string' ? answer.body.message : answer.text.replace(/\s+/g, ' ').slice(0, 160);
  return `${answer.status} ${error}${message ? `: ${message}` : ''}`;
}

/** Where a refused upload stopped, when the answer says (a 429 or 413 part-way: the lines before were taken). */
function stoppedAt(answer: Answer): { line: number; accepted: number } | undefined {
  const details = Array.isArray(answer.body?.details) ? (answer.body.details as Record<string, unknown>[]) : [];
  for (const detail of details) {
    if (Number.isSafeInteger(detail.line) && Number.isSafeInteger(detail.accepted)) {
      return { line: detail.line as number, accepted: detail.accepted as number };
    }
  }
  return undefined;
}

function errorDetails(value: unknown): Detail[] {
  if (!Array.isArray(value)) return [];
  return value.map((detail: Record<string, unknown>) => ({
    ...(typeof detail.path === 'string' ? { path: detail.path } : {}),
    message: String(detail.message),
  }));
}

/** The refused lines of a 200 answer, numbered in the file; a range record for those it did not list. */
function rejectsIn(part: UploadChunk, body: Record<string, unknown>): { records: RejectRecord[]; rows: number } {
  const listed = Array.isArray(body.errors) ? (body.errors as Record<string, unknown>[]) : [];
  const records: RejectRecord[] = listed.map((error) => ({
    line: part.firstLine + Number(error.line) - 1,
    error: String(error.error),
    details: errorDetails(error.details),
  }));
  const rejected = Number(body.rejected) || 0;
  const unlisted = rejected - listed.length;
  if (unlisted > 0) {
    const last = records.at(-1);
    records.push({
      line: last === undefined ? part.firstLine : last.line + 1,
      through: part.firstLine + part.lines - 1,
      count: unlisted,
      error: 'not_listed',
      details: [
        {
          message:
            `${unlisted} more lines in this range were refused, but not listed: the gateway lists the first ` +
            `${listed.length} of a request (a smaller --chunk-lines lists each)`,
        },
      ],
    });
  }
  return { records, rows: rejected };
}

/**
 * Sends one chunk to POST /v1/metrics/bulk (wait=true, so an answer means committed) and deals with
 * what comes back: refused lines are mapped to file line numbers; 429 and 503 are retried after
 * Retry-After, a failed connection after a backoff, `retries` times at most; when the gateway took
 * part of the chunk before a 429 (it says up to which line), only the rest is sent again. Anything
 * else ends the upload.
 */
export async function sendChunk(chunk: UploadChunk, options: SendOptions): Promise<ChunkOutcome> {
  const wait = options.wait ?? ((ms: number) => sleep(ms));
  const rejects: RejectRecord[] = chunk.oversized.map((line) => ({
    line,
    error: 'payload_too_large',
    details: [{ message: 'the line is too long to be sent; it was skipped' }],
  }));
  let rejectedRows = rejects.length;
  let accepted = 0;
  let retries = 0;
  let uncertainRetries = 0;
  let part = chunk;
  const outcome = (failure?: ChunkOutcome['failure']): ChunkOutcome => ({
    accepted,
    rejects: rejects.sort((a, b) => a.line - b.line),
    rejectedRows,
    retries,
    uncertainRetries,
    ...(failure === undefined ? {} : { failure }),
  });

  for (let attempt = 1; ; attempt++) {
    if (part.rows === 0) return outcome(); // only blank or skipped lines: nothing to send
    let answer: Answer;
    try {
      answer = await post(part, options);
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const reason = `no answer from ${options.url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`;
      if (attempt > options.retries) return outcome({ fromLine: part.firstLine, reason });
      const ms = backoffMs(attempt);
      options.onRetry?.(cause?.code ?? 'no answer', ms);
      retries += 1;
      // Refused before a byte was sent: certainly nothing taken. Otherwise the gateway may have taken some.
      if (cause?.code !== 'ECONNREFUSED') uncertainRetries += 1;
      await wait(ms);
      continue;
    }

    if ((answer.status === 200 || answer.status === 202) && answer.body !== undefined) {
      const { records, rows } = rejectsIn(part, answer.body);
      rejects.push(...records);
      rejectedRows += rows;
      accepted += Number(answer.body.accepted) || 0;
      return outcome();
    }

    // The gateway took the lines before `line`: count them, and send only the rest again.
    const stopped = stoppedAt(answer);
    if (stopped !== undefined && stopped.line > 1 && stopped.line <= part.lines) {
      const rest = chunkFrom(part, stopped.line);
      accepted += stopped.accepted;
      const refusedBefore = part.rows - rest.rows - stopped.accepted;
      if (refusedBefore > 0) {
        rejectedRows += refusedBefore;
        rejects.push({
          line: part.firstLine,
          through: rest.firstLine - 1,
          count: refusedBefore,
          error: 'not_listed',
          details: [
            {
              message: `${refusedBefore} lines in this range were refused; the ${answer.status} answer did not list them`,
            },
          ],
        });
      }
      part = rest;
    }

    if (RETRY_STATUSES.has(answer.status) && attempt <= options.retries) {
      const ms = Math.min(
        options.maxRetryWaitMs,
        retryAfterMs(answer.headers.get('retry-after')) ?? backoffMs(attempt),
      );
      options.onRetry?.(answer.status, ms);
      retries += 1;
      // A 503 may come after the rows were taken (not committed in time); a 429 is given before.
      if (answer.status === 503) uncertainRetries += 1;
      await wait(ms);
      continue;
    }
    return outcome({ fromLine: part.firstLine, reason: reasonOf(answer) });
  }
}
