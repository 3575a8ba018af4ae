import type { Pool } from 'pg';
import { readMetricsPage, summarizeMetrics } from '../db/metrics-reads';
import { AppError } from '../contract/errors';
import type { RouteHandlers } from './routes';
import { userIdParam } from './users-devices-routes';
import { encodePageCursor } from './page-cursor';
import { userMetricsQuery, userSummaryQuery } from './read-params';

export interface ReadRoutesOptions {
  readonly pool: Pool;
}

/** What landed: a user's metrics page by page (newest first), and a summary of them. */
export function readRoutes({ pool }: ReadRoutesOptions) {
  return {
    listUserMetrics: async (req, res) => {
      const userId = userIdParam(req);
      const query = userMetricsQuery(req);
      // One row more than asked says whether another page follows.
      const { rows, userExists } = await readMetricsPage(pool, { userId, ...query, limit: query.limit + 1 });
      if (!userExists) throw new AppError('not_found', `no user with id ${userId}`);
      const items = rows.slice(0, query.limit);
      const last = items[items.length - 1];
      const more = rows.length > query.limit && last !== undefined;
      res.json({
        items,
        next_cursor: more ? encodePageCursor({ timeRecorded: last.time_recorded, id: last.id }) : null,
      });
    },
    summarizeUserMetrics: async (req, res) => {
      const userId = userIdParam(req);
      const summary = await summarizeMetrics(pool, { userId, ...userSummaryQuery(req) });
      if (summary === undefined) throw new AppError('not_found', `no user with id ${userId}`);
      res.json(summary);
    },
  } satisfies RouteHandlers;
}
