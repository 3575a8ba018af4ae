/**
 * Makes metrics whose talked_time numbers them (1, 2, 3, ...), so that each row can be found in
 * user_metrics and counted.
 */
export function numberedMetrics(): (userId: number, deviceId?: string | null) => Record<string, unknown> {
  let next = 1;
  return (userId, deviceId = null) => ({
    user_id: userId,
    device_id: deviceId,
    talked_time: next++,
    microphone_used: true,
    speaker_used: false,
    time_recorded: 1_700_000_000_000,
  });
}
