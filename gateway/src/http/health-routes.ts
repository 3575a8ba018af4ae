import { Router } from 'express';
import { AppError } from '../errors';

/** Whether the gateway can take work: PostgreSQL answers and every migration is applied. */
export type ReadinessCheck = () => Promise<{ ready: true } | { ready: false; reason: string }>;

export function healthRoutes(readiness: ReadinessCheck): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const state = await readiness();
    if (!state.ready) throw new AppError('unavailable', state.reason, [], 5);
    res.json({ status: 'ready' });
  });

  return router;
}
