import { UPLOAD_USAGE, UsageError, parseUploadArgs, runUpload } from './command';

/**
 * `npm run upload -- FILE.ndjson[.gz] [--url URL] [--key KEY] [--chunk-lines N]`: streams a file to
 * POST /v1/metrics/bulk. Progress goes to stderr, the summary to stdout. Ctrl-C stops after the
 * request in flight and says where to resume; a second Ctrl-C stops at once.
 */
async function main(): Promise<number> {
  const options = parseUploadArgs(process.argv.slice(2));
  if (options === undefined) {
    process.stdout.write(`${UPLOAD_USAGE}\n`);
    return 0;
  }
  const interrupt = new AbortController();
  process.on('SIGINT', () => {
    if (interrupt.signal.aborted) process.exit(130);
    process.stderr.write('\nstopping after the request in flight (Ctrl-C again to stop at once)\n');
    interrupt.abort();
  });
  const { exitCode } = await runUpload(options, {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    errIsTty: process.stderr.isTTY === true,
    signal: interrupt.signal,
  });
  return exitCode;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n\n${UPLOAD_USAGE}\n`);
      process.exitCode = 2;
      return;
    }
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'EISDIR') {
      process.stderr.write(`upload: ${(error as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`upload failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  },
);
