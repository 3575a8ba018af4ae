import { metric } from './metric';

/**
 * Makes metrics whose talked_time numbers them (1, 2, 3, ...), so that each row can be found in
 * user_metrics and counted.
 */
export function numberedMetrics(): (userId: number, deviceId?: string | null) => Record<string, unknown> {
  let next = 1;
  return (userId, deviceId = null) => metric({ user_id: userId, device_id: deviceId, talked_time: next++ });
}

/**
 * Metric n of user `userId`, told apart by its talked_time: n itself, or n / `scale` when n runs past
 * the 86,400 s a talked_time may have (a float8 round-trips n / 1000 exactly).
 */
export function numberedMetric(n: number, { userId = 1, scale = 1 } = {}): Record<string, unknown> {
  return metric({ user_id: userId, talked_time: n / scale, time_recorded: 1_700_000_000_000 + n });
}
