import type { PartitionOverview } from '../db/partitions';

/**
 * The partitions of user_metrics as the status page and /metrics show them, read at most once per
 * `maxAgeMs` however often they are asked (the page polls every second, Prometheus every scrape).
 * When PostgreSQL does not answer, the last reading is given, or undefined before the first.
 */
export class PartitionStats {
  private last: { readonly at: number; readonly overview: PartitionOverview } | undefined;
  private reading: Promise<PartitionOverview | undefined> | undefined;

  constructor(
    private readonly read: () => Promise<PartitionOverview>,
    private readonly maxAgeMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  current(): Promise<PartitionOverview | undefined> {
    if (this.last !== undefined && this.now() - this.last.at < this.maxAgeMs)
      return Promise.resolve(this.last.overview);
    this.reading ??= this.read()
      .then((overview) => {
        this.last = { at: this.now(), overview };
        return overview;
      })
      .catch(() => this.last?.overview)
      .finally(() => (this.reading = undefined));
    return this.reading;
  }
}
