/**
 * The delay before retry number `attempt` (0 for the first) of a write that failed for a transient
 * reason: a ceiling that doubles from `baseMs` up to `maxMs`, and a random point in its upper half, so
 * that batches (and gateways) retrying after the same outage do not reach PostgreSQL in step.
 */
export function retryDelayMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  // The exponent is capped so that a long outage cannot overflow it to Infinity.
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}
