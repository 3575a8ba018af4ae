/**
 * A valid metric of user 1 (the wire fields of POST /v1/metrics), changed by `overrides`: any field,
 * including ones the gateway refuses (`talk_time`, a negative `talked_time`), so that each test states
 * only what it is about. Tests that number their rows use numberedMetric(s) (numbered-metrics.ts).
 */
export function metric(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    user_id: 1,
    talked_time: 1,
    microphone_used: true,
    speaker_used: false,
    time_recorded: 1_700_000_000_000,
    ...overrides,
  };
}
