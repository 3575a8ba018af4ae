import type { RequestHandler } from 'express';
import { AppError } from '../contract/errors';

/**
 * At most `maxConcurrent` bulk uploads in progress at once (0: no limit); the next is answered 429
 * before a byte of its body is read. Each upload holds at most a line and the socket's buffers in
 * memory, so this also bounds the body bytes in flight. An upload's slot is free again when its
 * answer is sent or its connection closes.
 */
export function bulkUploadLimit(maxConcurrent: number): RequestHandler {
  let inProgress = 0;
  return (req, res, next) => {
    if (maxConcurrent === 0) return next();
    if (inProgress >= maxConcurrent) {
      throw new AppError(
        'overloaded',
        `${maxConcurrent} bulk uploads are in progress (BULK_MAX_CONCURRENT); retry later`,
      );
    }
    inProgress++;
    res.once('close', () => inProgress--);
    next();
  };
}
