import { numberedMetric } from '../../../gateway/test/helpers/numbered-metrics';
import { parseUploadArgs, runUpload, type UploadIo } from '../command';

/** A valid metric for user 1 whose talked_time is its line number, so that stored rows name their lines. */
export const metricLine = (line: number, deviceId: string | null = null): string =>
  JSON.stringify({ ...numberedMetric(line), device_id: deviceId, speaker_used: line % 3 === 0 });

/**
 * Runs `npm run upload -- ...argv` in this process, capturing what it prints. Waits between retries
 * are recorded and handed to `onWait` (nothing by default) instead of being slept; `realWaits` sleeps them.
 */
export async function uploadCapturing(
  argv: string[],
  {
    env = {},
    onWait,
    realWaits = false,
  }: { env?: Record<string, string>; onWait?: (ms: number) => Promise<void>; realWaits?: boolean } = {},
) {
  let out = '';
  let err = '';
  const waits: number[] = [];
  const io: UploadIo = {
    out: (text) => (out += text),
    err: (text) => (err += text),
    errIsTty: false,
    ...(realWaits
      ? {}
      : {
          wait: async (ms: number) => {
            waits.push(ms);
            await onWait?.(ms);
          },
        }),
  };
  const options = parseUploadArgs(argv, env);
  if (options === undefined) throw new Error('no options');
  const { exitCode, summary } = await runUpload(options, io);
  return { exitCode, summary, out, err, waits };
}
