import { setTimeout as sleep } from 'node:timers/promises';
import { constants, gunzipSync, gzipSync } from 'node:zlib';
import type { BulkAnswerBody, Detail } from './wire';

// Sending one gzip NDJSON body to POST /v1/metrics/bulk and dealing with the answer: the one
// implementation of retries, used by MetricsClient and by `npm run upload`.

/** A bulk request's body and how its lines are numbered for the caller. */
export interface BulkPart {
  /** The caller's number (from 1) of the body's first line: request line L is firstLine + L - 1. */
  readonly firstLine: number;
  /** Lines in the body, blank ones included (the gateway counts them too). */
  readonly lines: number;
  /** Lines that are not blank: the rows the gateway will accept or refuse. */
  readonly rows: number;
  /** gzip-compressed NDJSON, each line ending in a newline. */
  readonly body: Buffer;
}

/** Fast compression: the gateway, not the sender, should be the slower side. */
export const GZIP_OPTIONS = { level: constants.Z_BEST_SPEED };

/** Whether a line holds only spaces, tabs and carriage returns: no row, though the gateway counts the line. */
export function isBlank(line: Uint8Array): boolean {
  for (const byte of line) if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  return true;
}

/**
 * The rest of a part from its `fromLine`-th line (counting from 1) on, numbered as before: what is
 * sent again after an answer that stopped part-way. A RangeError when the part has fewer lines.
 */
export function restOfPart(part: BulkPart, fromLine: number): BulkPart {
  const raw = gunzipSync(part.body);
  let offset = 0;
  let rowsBefore = 0;
  for (let line = 1; line < fromLine; line++) {
    const end = raw.indexOf(0x0a, offset);
    if (end === -1) throw new RangeError(`the part has fewer than ${fromLine} lines`);
    if (!isBlank(raw.subarray(offset, end))) rowsBefore += 1;
    offset = end + 1;
  }
  return {
    firstLine: part.firstLine + fromLine - 1,
    lines: part.lines - (fromLine - 1),
    rows: part.rows - rowsBefore,
    body: gzipSync(raw.subarray(offset), GZIP_OPTIONS),
  };
}

/** One record of refused lines, numbered as the caller numbers them. */
export interface RejectRecord {
  readonly line: number;
  /** Last line of a range of refused lines that the gateway counted but did not list one by one. */
  readonly through?: number;
  /** How many lines of the range were refused. */
  readonly count?: number;
  readonly error: string;
  readonly details: readonly Detail[];
}

/** What became of one part. */
export interface SendOutcome {
  /** Rows the gateway accepted: committed, since requests wait for their commit (also in a partial answer). */
  readonly accepted: number;
  /** Rows refused, in line order (a range record stands for several). */
  readonly rejects: readonly RejectRecord[];
  readonly rejectedRows: number;
  /** Requests sent again after 429, 503, a partial answer or a broken connection. */
  readonly retries: number;
  /** Retries of rows that the gateway may already have stored, or may still commit. */
  readonly uncertainRetries: number;
  /** Set when sending stopped: this line and every one after it were not (or not surely) stored. */
  readonly failure?: Failure;
}

/** Why sending stopped before every line was answered for. */
export interface Failure {
  readonly fromLine: number;
  readonly reason: string;
  /**
   * `retries_exhausted`: still busy, unavailable or unreachable after the last retry; `refused`: an
   * answer that sending again would not change (401, 403, 415, a 4xx that got nowhere); `aborted`: the
   * caller's signal.
   */
  readonly kind: 'retries_exhausted' | 'refused' | 'aborted';
}

/** A request about to be sent again. */
export interface Retry {
  /** The HTTP status, or the connection error's code, that is retried. */
  readonly status: number | string;
  readonly waitMs: number;
  /** Lines sent again. */
  readonly fromLine: number;
  readonly throughLine: number;
  /**
   * Set when rows of those lines may already be stored (or still be committed): how many when the
   * gateway said (`pending`), else undefined. Rows without event_id may then be stored twice.
   */
  readonly mayBeStored?: { readonly rows?: number };
}

export interface SendOptions {
  /** The gateway's base URL. */
  readonly url: string;
  readonly key?: string;
  /** Retries of one part at most, after 429, 503 or a failed connection. */
  readonly retries: number;
  /** A Retry-After longer than this is cut to it. */
  readonly maxRetryWaitMs: number;
  /** Waits between attempts; replaceable in tests. */
  readonly wait?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Told of each retry. */
  readonly onRetry?: (retry: Retry) => void;
  readonly requestTimeoutMs?: number;
  /** Stops sending (the request in flight too, and any wait); the outcome's failure says from where. */
  readonly signal?: AbortSignal;
  readonly userAgent?: string;
}

const RETRY_STATUSES = new Set([429, 503]);
const DEFAULT_REQUEST_TIMEOUT_MS = 10 * 60_000;
/** A bulk answer lists 1000 errors at most, well below this; a larger answer (a proxy's) is cut, not held. */
const MAX_ANSWER_BYTES = 4 << 20;

export function bulkUrl(base: string): URL {
  const url = new URL(base.endsWith('/') ? base : `${base}/`);
  return new URL('v1/metrics/bulk?wait=true', url);
}

/** RFC 9110's HTTP-date forms (IMF-fixdate, RFC 850, asctime): Date.parse alone takes "1.5" or "-1" for dates. */
const HTTP_DATE =
  /^(?:[A-Za-z]{3,9}, .+ \d{2}:\d{2}:\d{2} GMT|[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/;

/** Retry-After in milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(header)) return Number(header) * 1000;
  if (!HTTP_DATE.test(header.trim())) return undefined;
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
  readonly body: BulkAnswerBody | undefined;
  readonly text: string;
}

async function post(part: BulkPart, options: SendOptions): Promise<Answer> {
  const headers: Record<string, string> = {
    'content-type': 'application/x-ndjson',
    'content-encoding': 'gzip',
    'user-agent': options.userAgent ?? 'metrics-gateway-client',
  };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  const timeout = AbortSignal.timeout(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
  const response = await fetch(bulkUrl(options.url), {
    method: 'POST',
    headers,
    body: part.body,
    signal: options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]),
  });
  const text = await textOf(response);
  let body: BulkAnswerBody | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as BulkAnswerBody;
  } catch {
    // not JSON (a proxy's page, say): reported by its status and first words
  }
  return { status: response.status, headers: response.headers, body, text };
}

/** The answer's text, at most MAX_ANSWER_BYTES of it (then no longer JSON, and read as not a bulk answer). */
async function textOf(response: Response): Promise<string> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of response.body ?? []) {
    parts.push(part);
    size += part.byteLength;
    if (size > MAX_ANSWER_BYTES) break; // leaving the loop cancels the rest of the body
  }
  return Buffer.concat(parts).subarray(0, MAX_ANSWER_BYTES).toString('utf8');
}

function reasonOf(answer: Answer): string {
  const error = typeof answer.body?.error === 'string' ? answer.body.error : `HTTP ${answer.status}`;
  const message =
    typeof answer.body?.message === 'string' ? answer.body.message : answer.text.replace(/\s+/g, ' ').slice(0, 160);
  return `${answer.status} ${error}${message ? `: ${message}` : ''}`;
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/**
 * What an answer that stopped a request part-way (400/408/413, 429, 503) says about its lines, in the
 * request's numbering; undefined when it does not say it (an older gateway, or a refusal such as 401).
 */
interface PartialAnswer {
  /** Rows of the request that are durable. */
  readonly accepted: number;
  /** Rows received but not durable when answered: they are at or after `resendFromLine` and may still commit. */
  readonly pending: number;
  /** The first line to send again; every line before it was accepted or refused. */
  readonly resendFromLine: number;
}

function partialAnswer(answer: Answer, part: BulkPart): PartialAnswer | undefined {
  const body = answer.body;
  if (body === undefined || !isCount(body.accepted) || !isCount(body.pending)) return undefined;
  const line = body.resend_from_line;
  // Line part.lines + 1: every line was answered for.
  if (!Number.isSafeInteger(line) || (line as number) < 1 || (line as number) > part.lines + 1) return undefined;
  return { accepted: body.accepted, pending: body.pending, resendFromLine: line as number };
}

/**
 * Whether an answer without the new fields says that the gateway took rows before it stopped (an
 * older gateway's 429 or 413 part-way, in its details): sending the part again may store them twice.
 */
function tookRowsBefore(answer: Answer): boolean {
  const details = Array.isArray(answer.body?.details) ? (answer.body.details as Record<string, unknown>[]) : [];
  return details.some((detail) => isCount(detail?.accepted) && detail.accepted > 0);
}

function errorDetails(value: unknown): Detail[] {
  if (!Array.isArray(value)) return [];
  return value.map((detail: unknown) => {
    if (detail === null || typeof detail !== 'object') return { message: String(detail) };
    const { path, message } = detail as Record<string, unknown>;
    return { ...(typeof path === 'string' ? { path } : {}), message: String(message) };
  });
}

/**
 * The refused lines that an answer lists among the request's lines 1..throughLine, numbered as the
 * caller numbers them, and a range record for the `rejected` ones it did not list (the gateway lists
 * only so many).
 */
function rejectsIn(
  part: BulkPart,
  answer: Answer,
  { throughLine, rejected }: { throughLine: number; rejected: number },
): RejectRecord[] {
  const errors = Array.isArray(answer.body?.errors) ? (answer.body.errors as Record<string, unknown>[]) : [];
  const listed = errors.filter((error) => Number.isSafeInteger(error?.line) && (error.line as number) <= throughLine);
  const records: RejectRecord[] = listed.map((error) => ({
    line: part.firstLine + (error.line as number) - 1,
    error: String(error.error),
    details: errorDetails(error.details),
  }));
  const unlisted = rejected - listed.length;
  if (unlisted > 0) {
    const last = records.at(-1);
    records.push({
      line: last === undefined ? part.firstLine : last.line + 1,
      through: part.firstLine + throughLine - 1,
      count: unlisted,
      error: 'not_listed',
      details: [
        {
          message:
            `${unlisted} more lines in this range were refused, but the ${answer.status} answer listed only ` +
            `${listed.length} (smaller requests list each)`,
        },
      ],
    });
  }
  return records;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return sleep(ms, undefined, signal === undefined ? undefined : { signal }).catch(() => undefined);
}

/**
 * Sends one part to POST /v1/metrics/bulk (wait=true, so an answer means committed) and deals with
 * what comes back: refused lines are reported once each however often they are sent; 429 and 503 are
 * retried after Retry-After, a failed connection after a jittered backoff, `retries` times at most.
 * An answer that stopped part-way says which rows are durable (`accepted`) and from which line to send
 * again (`resend_from_line`): only those lines are sent again, also after a 400/408/413 that got
 * somewhere. Anything else (a 401, say) ends sending, and the outcome's failure says from which line.
 */
export async function sendBulk(first: BulkPart, options: SendOptions): Promise<SendOutcome> {
  const wait = options.wait ?? abortableSleep;
  // By line: a line is listed once, whichever answers name it.
  const rejects = new Map<number, RejectRecord>();
  const addRejects = (records: readonly RejectRecord[]): void => {
    for (const record of records) if (!rejects.has(record.line)) rejects.set(record.line, record);
  };
  let accepted = 0;
  let retries = 0;
  let uncertainRetries = 0;
  let part = first;
  const outcome = (failure?: SendOutcome['failure']): SendOutcome => {
    const records = [...rejects.values()].sort((a, b) => a.line - b.line);
    return {
      accepted,
      rejects: records,
      rejectedRows: records.reduce((sum, record) => sum + (record.count ?? 1), 0),
      retries,
      uncertainRetries,
      ...(failure === undefined ? {} : { failure }),
    };
  };
  const retry = async (status: Retry['status'], waitMs: number, mayBeStored?: Retry['mayBeStored']) => {
    options.onRetry?.({
      status,
      waitMs,
      fromLine: part.firstLine,
      throughLine: part.firstLine + part.lines - 1,
      ...(mayBeStored === undefined ? {} : { mayBeStored }),
    });
    retries += 1;
    if (mayBeStored !== undefined) uncertainRetries += 1;
    await wait(waitMs, options.signal);
  };
  const aborted = (): SendOutcome => outcome({ fromLine: part.firstLine, reason: 'aborted', kind: 'aborted' });

  for (let attempt = 1; ; attempt++) {
    if (part.rows === 0) return outcome(); // only blank lines: nothing to send
    if (options.signal?.aborted) return aborted();
    let answer: Answer;
    try {
      answer = await post(part, options);
    } catch (error) {
      if (options.signal?.aborted) return aborted();
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const reason = `no answer from ${options.url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`;
      if (attempt > options.retries) return outcome({ fromLine: part.firstLine, reason, kind: 'retries_exhausted' });
      // Refused before a byte was sent: certainly nothing taken. Otherwise the gateway may have taken some.
      await retry(cause?.code ?? 'no answer', backoffMs(attempt), cause?.code === 'ECONNREFUSED' ? undefined : {});
      continue;
    }

    // A 2xx without `accepted` (a proxy's page, say) is no bulk answer: it ends sending below, as refused.
    if ((answer.status === 200 || answer.status === 202) && isCount(answer.body?.accepted)) {
      addRejects(rejectsIn(part, answer, { throughLine: part.lines, rejected: Number(answer.body.rejected) || 0 }));
      accepted += answer.body.accepted;
      return outcome();
    }

    const partial = partialAnswer(answer, part);
    let mayBeStored: Retry['mayBeStored'];
    if (partial !== undefined) {
      // Every line before resend_from_line is accepted or refused: count them, and send only the rest again.
      const { resendFromLine } = partial;
      const rest = resendFromLine > part.lines ? undefined : restOfPart(part, resendFromLine);
      const rowsBefore = part.rows - (rest?.rows ?? 0);
      accepted += partial.accepted;
      addRejects(rejectsIn(part, answer, { throughLine: resendFromLine - 1, rejected: rowsBefore - partial.accepted }));
      if (rest === undefined) return outcome();
      part = rest;
      if (partial.pending > 0) mayBeStored = { rows: partial.pending };
    } else if (answer.status === 503 || tookRowsBefore(answer)) {
      // A 503 may come after the rows were taken (not committed in time); a 429 is given before.
      mayBeStored = {};
    }

    // A 4xx that stopped part-way is sent again only when it got somewhere, lest the same refusal repeat.
    const worthRetrying = RETRY_STATUSES.has(answer.status) || (partial !== undefined && partial.resendFromLine > 1);
    if (worthRetrying && attempt <= options.retries) {
      const retryAfter = retryAfterMs(answer.headers.get('retry-after'));
      await retry(answer.status, Math.min(options.maxRetryWaitMs, retryAfter ?? backoffMs(attempt)), mayBeStored);
      continue;
    }
    const stillPending =
      partial !== undefined && partial.pending > 0
        ? `; ${partial.pending} rows from this line on may still be committed: rows without event_id may be stored twice if sent again`
        : '';
    return outcome({
      fromLine: part.firstLine,
      reason: `${reasonOf(answer)}${stillPending}`,
      kind: worthRetrying ? 'retries_exhausted' : 'refused',
    });
  }
}
