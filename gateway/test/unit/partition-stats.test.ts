import type { PartitionOverview } from '../../src/db/partitions';
import { PartitionStats } from '../../src/telemetry/partition-stats';

const overview = (count: number): PartitionOverview => ({
  partitions: Array.from({ length: count }, (_, i) => ({
    name: `p${i}`,
    from: null,
    to: null,
    isDefault: false,
    bytes: 8192,
  })),
  oldest: null,
});

describe('PartitionStats', () => {
  it('reads at most once per maxAgeMs, however often it is asked, and keeps the last reading when one fails', async () => {
    let clock = 0;
    let reads = 0;
    let fail = false;
    const stats = new PartitionStats(
      async () => {
        reads++;
        if (fail) throw new Error('PostgreSQL does not answer');
        return overview(reads);
      },
      10_000,
      () => clock,
    );
    const [a, b] = await Promise.all([stats.current(), stats.current()]);
    expect(reads).toBe(1);
    expect(a).toBe(b);
    clock = 9_999;
    expect((await stats.current())?.partitions).toHaveLength(1);
    clock = 10_000;
    expect((await stats.current())?.partitions).toHaveLength(2);
    fail = true;
    clock = 30_000;
    expect((await stats.current())?.partitions).toHaveLength(2);
    expect(reads).toBe(3);
  });

  it('gives undefined while PostgreSQL has never answered', async () => {
    const stats = new PartitionStats(() => Promise.reject(new Error('down')));
    expect(await stats.current()).toBeUndefined();
  });
});
