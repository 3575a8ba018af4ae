import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { maintainPartitions, type MaintenanceOutcome, type MaintenanceSettings } from '../db/partitions';
import type { Part } from './parts';

export interface PartitionMaintenanceOptions {
  readonly pool: Pool;
  readonly settings: MaintenanceSettings;
  readonly everyMs: number;
  readonly logger: Logger;
  /** Tests set the clock. */
  readonly now?: () => number;
}

/**
 * Runs partition maintenance (db/partitions.ts) at start-up and then every `everyMs`, one run at a
 * time. A failed run is logged and tried again at the next tick: rows never wait for it, since the
 * default partition takes any row that no partition covers.
 */
export class PartitionMaintenance {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<MaintenanceOutcome | undefined> | undefined;
  private stopped = false;

  constructor(private readonly options: PartitionMaintenanceOptions) {}

  /** One run now (or the one under way); undefined when it failed. */
  run(): Promise<MaintenanceOutcome | undefined> {
    this.running ??= this.runOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  /** The part for lifecycle/parts.ts: the first run is awaited, so partitions exist before the server listens. */
  part(): Part {
    return {
      name: 'partition maintenance',
      start: async () => {
        await this.run();
        if (this.stopped) return;
        this.timer = setInterval(() => void this.run(), this.options.everyMs);
        this.timer.unref();
      },
      stop: async () => {
        this.stopped = true;
        clearInterval(this.timer);
        await this.running;
      },
    };
  }

  private async runOnce(): Promise<MaintenanceOutcome | undefined> {
    const { pool, settings, logger } = this.options;
    try {
      const outcome = await maintainPartitions(pool, settings, (this.options.now ?? Date.now)());
      if (outcome.created.length > 0 || outcome.dropped.length > 0) logger.info(outcome, 'partitions maintained');
      return outcome;
    } catch (error) {
      logger.warn({ err: error }, 'partition maintenance failed; it runs again at the next interval');
      return undefined;
    }
  }
}
