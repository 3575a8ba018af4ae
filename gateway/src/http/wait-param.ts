import type { Request } from 'express';
import { AppError } from '../contract/errors';

/** `?wait=` : true (the default) answers once committed, false once buffered. */
export function waitParam(req: Request): boolean {
  const raw = req.query.wait;
  if (raw === undefined || raw === 'true' || raw === '1' || raw === '') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new AppError('validation_failed', 'wait must be true or false', {
    details: [{ path: '/query/wait', message: 'must be true or false' }],
  });
}
