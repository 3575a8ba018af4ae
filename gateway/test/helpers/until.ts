import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `condition` every 20 ms until it holds; fails, naming `what`, past `boundMs`. */
export async function until(
  condition: () => Promise<boolean> | boolean,
  what: string,
  boundMs = 15_000,
): Promise<void> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > boundMs) throw new Error(`not within ${boundMs} ms: ${what}`);
    await sleep(20);
  }
}
