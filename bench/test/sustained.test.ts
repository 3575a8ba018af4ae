// The pure parts of the sustained benchmark (bench/sustained.ts); the run itself is never made here.

import { createRandom } from '../../gateway/src/db/seeded-random';
import { checkMetric } from '../../gateway/src/ingest/schema';
import { FLEET_DEVICES, FLEET_USERS, LATE_MAX_MS, fleetBody } from '../fleet';
import { UsageError, parseBenchArgs } from '../options';
import { renderRateChart } from '../rate-chart';
import { ROUNDS_MARKS, SUSTAINED_MARKS, splicePart } from '../results-file';
import { sustainedStep } from '../sustained';

const HOUR = 3_600_000;

describe('the fleet of the sustained run', () => {
  const now = Date.now();
  const timeline = { startMs: now - 24 * HOUR, totalRows: 10_000, spanMs: 24 * HOUR };
  const metrics = fleetBody(createRandom(7), timeline, 0, 10_000)
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);

  it('sends metrics the gateway takes, each with its own v4 event_id', () => {
    for (const metric of metrics) expect(checkMetric(metric, now)).toMatchObject({ ok: true });
    const ids = new Set(metrics.map((m) => m.event_id));
    expect(ids.size).toBe(metrics.length);
    expect(
      [...ids].every((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(String(id))),
    ).toBe(true);
    expect(Math.max(...metrics.map((m) => m.user_id as number))).toBeLessThanOrEqual(FLEET_USERS);
    const devices = new Set(metrics.map((m) => m.device_id).filter((d) => typeof d === 'string'));
    expect(devices.size).toBeGreaterThan(FLEET_DEVICES / 2);
  });

  it('sends times in arrival order with jitter, and a few percent late', () => {
    const times = metrics.map((m) => Date.parse(m.time_recorded as string));
    const late = times.filter((t, i) => t < timeline.startMs + (i / timeline.totalRows) * timeline.spanMs - 60_000);
    expect(late.length / times.length).toBeGreaterThan(0.01);
    expect(late.length / times.length).toBeLessThan(0.06);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(timeline.startMs - LATE_MAX_MS - 60_000);
    expect(Math.max(...times)).toBeLessThanOrEqual(now + 60_000);
    // On time rows are in order up to the jitter.
    const onTime = times.filter((t) => !late.includes(t));
    expect(onTime.every((t, i) => i === 0 || t > (onTime[i - 1] as number) - 2 * 60_000)).toBe(true);
  });
});

describe('the sustained report', () => {
  it('has a point per million rows, or ten in a smaller run', () => {
    expect(sustainedStep(20_000_000)).toBe(1_000_000);
    expect(sustainedStep(200_000)).toBe(20_000);
  });

  it('replaces its own part of RESULTS.md and keeps the rest', () => {
    const first = splicePart('# Benchmark results\n\nrounds\n', SUSTAINED_MARKS, 'run 1', 'end');
    expect(first).toContain(`${SUSTAINED_MARKS.start}\nrun 1\n${SUSTAINED_MARKS.end}`);
    const second = splicePart(`${first}\nafter\n`, SUSTAINED_MARKS, 'run 2', 'end');
    expect(second).not.toContain('run 1');
    expect(second).toContain('rounds');
    expect(second).toContain('after');
  });

  it('the rounds replace their own part too: sections added by hand and the sustained part stay', () => {
    const handWritten = '## Added by hand: a figure\n\n42\n';
    const sustained = splicePart(handWritten, SUSTAINED_MARKS, 'sustained run', 'end');
    const first = splicePart(sustained, ROUNDS_MARKS, '# Benchmark results\n\nround 1', 'top');
    expect(first.indexOf('round 1')).toBeLessThan(first.indexOf('Added by hand'));
    const second = splicePart(first, ROUNDS_MARKS, '# Benchmark results\n\nround 2', 'top');
    expect(second).not.toContain('round 1');
    expect(second).toContain('round 2');
    expect(second).toContain('## Added by hand: a figure\n\n42');
    expect(second).toContain('sustained run');
    expect(splicePart('', ROUNDS_MARKS, 'only', 'top')).toBe(`${ROUNDS_MARKS.start}\nonly\n${ROUNDS_MARKS.end}\n`);
  });

  it('draws one line per layout', () => {
    const svg = renderRateChart('t', 's', [
      {
        label: 'a',
        color: '#000',
        points: [
          [1e6, 30_000],
          [2e6, 29_000],
        ],
      },
      {
        label: 'b',
        color: '#f00',
        points: [
          [1e6, 30_000],
          [2e6, 12_000],
        ],
      },
    ]);
    expect(svg.match(/class="series"/g)).toHaveLength(2);
  });

  it('is chosen with --sustained, 20 million rows unless --rows says otherwise', () => {
    expect(parseBenchArgs(['--sustained'], '/tmp/r.md')).toMatchObject({ sustained: true, rows: 20_000_000 });
    expect(parseBenchArgs(['--sustained', '--rows', '200000'], '/tmp/r.md')).toMatchObject({ rows: 200_000 });
    expect(parseBenchArgs([], '/tmp/r.md')).toMatchObject({ sustained: false, rows: 400_000 });
  });

  it('compares both layouts at 1d unless --layouts and --interval say otherwise', () => {
    expect(parseBenchArgs(['--sustained'], '/tmp/r.md')).toMatchObject({
      sustainedLayouts: ['partitioned', 'single'],
      sustainedInterval: '1d',
    });
    expect(
      parseBenchArgs(['--sustained', '--layouts', 'single, partitioned', '--interval', '6h'], '/tmp/r.md'),
    ).toMatchObject({ sustainedLayouts: ['partitioned', 'single'], sustainedInterval: '6h' });
    expect(parseBenchArgs(['--sustained', '--layouts', 'partitioned'], '/tmp/r.md')).toMatchObject({
      sustainedLayouts: ['partitioned'],
    });
    expect(() => parseBenchArgs(['--sustained', '--layouts', 'partitioned,hyper'], '/tmp/r.md')).toThrow(
      /--layouts takes partitioned, single/,
    );
  });

  it('takes --layouts and --interval only with --sustained, and --citus only without it', () => {
    expect(() => parseBenchArgs(['--layouts', 'single'], '/tmp/r.md')).toThrow(/--layouts.*--sustained/);
    expect(() => parseBenchArgs(['--interval', '6h'], '/tmp/r.md')).toThrow(/--interval.*--sustained/);
    expect(() => parseBenchArgs(['--sustained', '--citus', 'postgres://h/m'], '/tmp/r.md')).toThrow(UsageError);
  });

  it('refuses a bad --interval with a usage error before anything starts, and reads a good one once', () => {
    expect(parseBenchArgs(['--sustained', '--interval', '6h'], '/tmp/r.md')).toMatchObject({
      sustainedIntervalMs: 6 * HOUR,
    });
    for (const bad of ['nope', '30m', '0h', '']) {
      expect(() => parseBenchArgs(['--sustained', '--interval', bad], '/tmp/r.md')).toThrow(UsageError);
    }
    expect(() => parseBenchArgs(['--sustained', '--interval', 'nope'], '/tmp/r.md')).toThrow(/--interval/);
  });
});
