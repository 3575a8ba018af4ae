import type { RequestHandler } from 'express';
import { AppError } from '../contract/errors';

/** Whether the gateway can take work: PostgreSQL answers and every migration is applied. */
export type ReadinessCheck = () => Promise<{ ready: true } | { ready: false; reason: string }>;

export function healthRoutes(readiness: ReadinessCheck): Record<'health' | 'ready', RequestHandler> {
  return {
    health: (_req, res) => {
      res.json({ status: 'ok' });
    },
    ready: async (_req, res) => {
      const state = await readiness();
      if (!state.ready) throw new AppError('unavailable', state.reason);
      res.json({ status: 'ready' });
    },
  };
}
