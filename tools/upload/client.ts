import { sendBulk, type RejectRecord, type SendOptions, type SendOutcome } from 'metrics-gateway-client';
import type { UploadChunk } from './chunks';

// The upload tool's use of the client library's transport (one implementation of retries): a chunk
// of the file is a part numbered in file lines; lines too long to send are reported beside the answers.

/**
 * Sends one chunk (see sendBulk) and adds its lines that were too long to be sent, so that the
 * outcome lists every refused file line once, in order.
 */
export async function sendChunk(chunk: UploadChunk, options: SendOptions): Promise<SendOutcome> {
  const outcome = await sendBulk(chunk, { userAgent: 'metrics-gateway-upload', ...options });
  if (chunk.oversized.length === 0) return outcome;
  const oversized: RejectRecord[] = chunk.oversized.map((line) => ({
    line,
    error: 'payload_too_large',
    details: [{ message: 'the line is too long to be sent; it was skipped' }],
  }));
  return {
    ...outcome,
    rejects: [...oversized, ...outcome.rejects].sort((a, b) => a.line - b.line),
    rejectedRows: outcome.rejectedRows + oversized.length,
  };
}
