import type { Logger } from 'pino';

/**
 * One piece of the running gateway: a pool, the spool, the HTTP server... The composition root lists
 * the parts once, in start order; they stop in the reverse order, in up to three passes:
 * - drain, within the shutdown deadline: let the work in flight finish (the server takes no new
 *   requests, the buffer and the spool's backlog are written);
 * - abandon, only when the deadline passes (or start-up failed): give up on the work in flight;
 * - stop: release what the part holds (connections, files, timers).
 * Every hook is optional.
 */
export interface Part {
  readonly name: string;
  start?(): Promise<unknown> | void;
  drain?(): Promise<unknown>;
  /** Returns how many rows that were only in memory are now lost, if it held any. */
  abandon?(): number | void;
  stop?(): Promise<unknown> | void;
}

export interface ShutdownOptions {
  readonly logger: Logger;
  readonly timeoutMs: number;
  /** Rows in the buffer now (for the log), and left in the spool once it is closed. */
  readonly bufferedRows: () => number;
  readonly spooledRows: () => number;
}

export interface ShutdownOutcome {
  /** Whether the buffer was flushed before the deadline. */
  readonly flushed: boolean;
  /** Rows that were only in memory when the deadline passed: not stored. */
  readonly lostRows: number;
  /** Rows left in the spool, replayed at the next start. */
  readonly spooledRows: number;
}

/** What is still done after the deadline gets this long at most per part, so the process always ends. */
const AFTER_DEADLINE_GRACE_MS = 1000;

/** `work`, or nothing once `ms` have passed (it goes on, unawaited). */
async function atMost(ms: number, work: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Abandons, then stops, `started` (in start order) in reverse, each stop bounded; returns the rows lost. */
async function giveUp(started: readonly Part[]): Promise<number> {
  const reversed = [...started].reverse();
  let lostRows = 0;
  for (const part of reversed) lostRows += part.abandon?.() ?? 0;
  for (const part of reversed) await atMost(AFTER_DEADLINE_GRACE_MS, (async () => part.stop?.())());
  return lostRows;
}

/**
 * Starts the parts in order (false and undefined stand for parts the configuration turns off) and
 * returns their stop. When a part fails to start, those started before it are given up (abandoned and
 * stopped, in reverse) and the error is thrown.
 *
 * The stop drains every part in reverse order: no new requests, every buffered row flushed (which
 * also lets waiting requests finish) and every spooled row still on disk, then stops them all. After
 * `timeoutMs` the parts are abandoned instead (open connections are cut and the flusher gives up):
 * rows that were only in memory are lost and counted, spooled ones stay on disk for the next start,
 * and nothing waits for PostgreSQL any longer (a COPY stuck behind a lock must not hold the process).
 * Calling it again returns the same promise.
 */
export async function startParts(
  list: readonly (Part | false | undefined)[],
  options: ShutdownOptions,
): Promise<() => Promise<ShutdownOutcome>> {
  const parts = list.filter((part) => part !== false && part !== undefined);
  const started: Part[] = [];
  try {
    for (const part of parts) {
      await part.start?.();
      started.push(part);
    }
  } catch (error) {
    await giveUp(started);
    throw error;
  }

  async function stop(): Promise<ShutdownOutcome> {
    const { logger, timeoutMs } = options;
    logger.info({ bufferedRows: options.bufferedRows() }, 'shutting down: no new requests; flushing the buffer');
    const reversed = [...parts].reverse();
    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      deadlineTimer = setTimeout(() => resolve('deadline'), timeoutMs);
    });
    const orderly = (async () => {
      for (const part of reversed) await part.drain?.();
      return 'done' as const;
    })();
    const outcome = await Promise.race([orderly, deadline]);
    clearTimeout(deadlineTimer);
    const flushed = outcome === 'done';
    let lostRows = 0;
    if (flushed) for (const part of reversed) await part.stop?.();
    else lostRows = await giveUp(parts);
    const result = { flushed, lostRows, spooledRows: options.spooledRows() };
    if (flushed) logger.info(result, 'stopped');
    else
      logger.error(
        { ...result, timeoutMs },
        'stopped at the shutdown deadline: spooled rows are kept for the next start',
      );
    return result;
  }

  let stopping: Promise<ShutdownOutcome> | undefined;
  return () => (stopping ??= stop());
}
