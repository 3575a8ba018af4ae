// Smoke tests of the benchmark's pure parts; the benchmark itself is run with `npm run bench`, never here.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { escapeXml, niceStep, renderRatioChart } from '../chart';
import { RATIO_SPECS, RUN_IDS, selectedRuns } from '../contenders';
import { datasetMetrics, splitRows, writeDataset, type Dataset, type DatasetOptions } from '../dataset';
import { gatewayEnvironment } from '../gateway-process';
import { UsageError, defaultChartPath, parseBenchArgs, parseRowsArgument } from '../options';
import { chartBars, computeRatios, renderReport, summarize, type ReportMeta, type RunResult } from '../report';
import {
  cpuMicrosEach,
  formatBytes,
  formatCount,
  formatMicros,
  formatRatio,
  markdownTable,
  median,
  perCpuSecond,
  ratio,
  rotate,
} from '../stats';

describe('stats', () => {
  it('takes the median of odd and even counts without reordering the input', () => {
    const values = [5, 1, 3];
    expect(median(values)).toBe(3);
    expect(values).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('computes ratios only from two usable numbers', () => {
    expect(ratio(80, 100)).toBeCloseTo(0.8);
    expect(ratio(1, 0)).toBeUndefined();
    expect(ratio(undefined, 3)).toBeUndefined();
    expect(ratio(NaN, 3)).toBeUndefined();
  });

  it('counts rows per CPU-second from the CPU time read before and after the work, and µs per row from that', () => {
    expect(perCpuSecond(400_000, 12.34, 13.34)).toBeCloseTo(400_000);
    expect(cpuMicrosEach(perCpuSecond(400_000, 12.34, 13.34))).toBeCloseTo(2.5);
    expect(perCpuSecond(20_000, 3.5, 3.75)).toBeCloseTo(80_000);
    // No tick between the readings, a reading missing (the process gone): nothing to divide by.
    expect(perCpuSecond(1000, 2.5, 2.5)).toBeUndefined();
    expect(perCpuSecond(1000, undefined, 2.5)).toBeUndefined();
    expect(perCpuSecond(1000, 2.5, undefined)).toBeUndefined();
    expect(perCpuSecond(undefined, 1, 2)).toBeUndefined();
    expect(cpuMicrosEach(undefined)).toBeUndefined();
  });

  it('formats numbers for the report', () => {
    expect(formatCount(123456.7)).toBe('123,457');
    expect(formatCount(undefined)).toBe('n/a');
    expect(formatRatio(0.8312)).toBe('0.83x');
    expect(formatBytes(300 * 1024 * 1024)).toBe('300.0 MiB');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatMicros(2.4666)).toBe('2.47');
    expect(formatMicros(26.34)).toBe('26.3');
    expect(formatMicros(262.4)).toBe('262');
    expect(formatMicros(undefined)).toBe('n/a');
  });

  it('writes a Markdown table with escaped pipes and right-aligned columns', () => {
    const table = markdownTable(['run', 'rows/s'], [['a|b', '1,000']], ['left', 'right']);
    expect(table.split('\n')).toEqual(['| run | rows/s |', '|---|---:|', '| a\\|b | 1,000 |']);
  });

  it('rotates the order of contenders from round to round', () => {
    expect(rotate(['a', 'b', 'c'], 0)).toEqual(['a', 'b', 'c']);
    expect(rotate(['a', 'b', 'c'], 1)).toEqual(['b', 'c', 'a']);
    expect(rotate(['a', 'b', 'c'], 4)).toEqual(['b', 'c', 'a']);
    expect(rotate([], 2)).toEqual([]);
  });
});

/** A small dataset written in a temporary folder, handed to `use`, then removed. */
async function withDataset(
  options: Pick<DatasetOptions, 'rows' | 'parts' | 'seed' | 'withEventIds'>,
  use: (dataset: Dataset) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-bench-test-'));
  try {
    await use(
      await writeDataset({
        ...options,
        dir,
        startMs: Date.UTC(2026, 0, 1),
        singleBodies: 1,
        receivedAt: new Date().toISOString(),
      }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('dataset parts', () => {
  it('splits rows into consecutive parts that add up', () => {
    expect(splitRows(10, 4)).toEqual([2, 3, 2, 3]);
    expect(splitRows(7, 1)).toEqual([7]);
    expect(splitRows(400_000, 4).reduce((a, b) => a + b, 0)).toBe(400_000);
  });

  it('writes the COPY text in the same parts as the NDJSON, for the parallel COPY run', async () => {
    await withDataset({ rows: 10, parts: 3, seed: 7, withEventIds: false }, async (dataset) => {
      const lines = async (file: string) => (await readFile(file, 'utf8')).trimEnd().split('\n');
      expect(dataset.copyParts.map((part) => part.rows)).toEqual([3, 3, 4]);
      expect(dataset.parts.map((part) => part.rows)).toEqual([3, 3, 4]);
      const copyParts = await Promise.all(dataset.copyParts.map((part) => lines(part.file)));
      expect(copyParts.flat()).toEqual(await lines(dataset.copyFile));
      expect(copyParts.map((part) => part.length)).toEqual([3, 3, 4]);
      expect(dataset.copyParts.reduce((sum, part) => sum + part.bytes, 0)).toBe(dataset.copyBytes);
      // Part k of the COPY text holds the rows of part k of the NDJSON: their user_id and talked_time.
      const ndjsonParts = await Promise.all(dataset.parts.map((part) => lines(part.file)));
      ndjsonParts.forEach((part, index) =>
        part.forEach((line, row) => {
          const metric = JSON.parse(line) as { user_id: number; talked_time: number };
          const copyRow = copyParts[index]?.[row] ?? '';
          expect(copyRow.split('\t')).toEqual(
            expect.arrayContaining([String(metric.user_id), String(metric.talked_time)]),
          );
        }),
      );
    });
  });
});

describe('dataset rows for the client step', () => {
  it('are the rows of the dataset file without their event_id, only as many as asked for', async () => {
    await withDataset({ rows: 40, parts: 2, seed: 5, withEventIds: true }, async (dataset) => {
      const fromFile = (await readFile(dataset.ndjsonFile, 'utf8'))
        .trimEnd()
        .split('\n')
        .map((line) => {
          const { event_id: _dropped, ...row } = JSON.parse(line) as Record<string, unknown>;
          return row;
        });
      expect(datasetMetrics(dataset, 30)).toEqual(fromFile.slice(0, 30));
      expect(datasetMetrics(dataset, 1000)).toEqual(fromFile);
    });
  });
});

describe('options', () => {
  const defaultOut = path.resolve('bench/RESULTS.md');

  it('has defaults that run every step but the big upload', () => {
    const options = parseBenchArgs([], defaultOut);
    if (options === 'help') throw new Error('unexpected help');
    expect([...options.steps].sort()).toEqual(['bulk', 'client', 'copy', 'naive', 'single']);
    expect(options.clientRows).toBe(1_000_000);
    expect(options.out).toBe(defaultOut);
    expect(options.chart).toBe(path.resolve('bench/results.svg'));
    expect(selectedRuns(options.steps)).toEqual(RUN_IDS.filter((id) => id !== 'bulk-citus'));
    expect(options.citusUrl).toBeUndefined();
    // Issue 15: as many parallel uploads, and parallel COPYs, as cores.
    expect(options.bulkClients).toBe(os.availableParallelism());
  });

  it('adds bulk through a Citus coordinator beside bulk-1 with --citus URL, and wants the URL for --only citus', () => {
    const url = 'postgres://postgres@127.0.0.1:9700/metrics';
    const options = parseBenchArgs(['--only', 'bulk', '--citus', url], defaultOut);
    if (options === 'help') throw new Error('unexpected help');
    expect(options.citusUrl).toBe(url);
    expect(selectedRuns(options.steps)).toEqual(['bulk-1', 'bulk-n', 'bulk-v7', 'bulk-citus']);
    const alone = parseBenchArgs(['--only', 'citus', '--citus', url], defaultOut);
    if (alone === 'help') throw new Error('unexpected help');
    expect(selectedRuns(alone.steps)).toEqual(['bulk-1', 'bulk-n', 'bulk-v7', 'bulk-citus']);
    expect(() => parseBenchArgs(['--only', 'citus'], defaultOut)).toThrow(/needs --citus/);
    expect(() => parseBenchArgs(['--citus', 'not a url'], defaultOut)).toThrow(UsageError);
    expect(() => parseBenchArgs(['--citus', 'http://127.0.0.1:9700/metrics'], defaultOut)).toThrow(/postgres:\/\//);
    expect(() => parseBenchArgs(['--citus', 'postgres://127.0.0.1:9700'], defaultOut)).toThrow(/database/);
    expect(parseBenchArgs(['--citus', 'postgresql://127.0.0.1/m'], defaultOut)).toMatchObject({
      citusUrl: 'postgresql://127.0.0.1/m',
    });
  });

  it('reads sizes, --only and --big', () => {
    const options = parseBenchArgs(['--rows', '50_000', '--rounds', '1', '--only', 'bulk,copy', '--big'], defaultOut);
    if (options === 'help') throw new Error('unexpected help');
    expect(options.rows).toBe(50_000);
    expect(options.rounds).toBe(1);
    expect([...options.steps].sort()).toEqual(['big', 'bulk', 'copy']);
    // Bulk with and without event_ids side by side, the parallel COPY beside the single one.
    expect(selectedRuns(options.steps)).toEqual(['bulk-1', 'bulk-n', 'bulk-v7', 'copy-nofk', 'copy-n', 'copy-fk']);
  });

  it('reads --client-rows and runs the client step alone with --only client', () => {
    const options = parseBenchArgs(['--client-rows', '20_000', '--only', 'client'], defaultOut);
    if (options === 'help') throw new Error('unexpected help');
    expect(options.clientRows).toBe(20_000);
    expect(selectedRuns(options.steps)).toEqual(['bulk-v7', 'client']);
    expect(() => parseBenchArgs(['--client-rows', '0'], defaultOut)).toThrow(UsageError);
  });

  it('refuses bad values with a usage error', () => {
    expect(() => parseBenchArgs(['--rows', '1e5'], defaultOut)).toThrow(UsageError);
    expect(() => parseBenchArgs(['--only', 'bulk,nope'], defaultOut)).toThrow(/unknown step/);
    expect(() => parseBenchArgs(['--bogus'], defaultOut)).toThrow(UsageError);
    expect(parseBenchArgs(['--help'], defaultOut)).toBe('help');
  });

  it('puts the chart of another report next to it', () => {
    expect(defaultChartPath('/tmp/big.md', defaultOut)).toBe('/tmp/big.svg');
  });
});

function result(id: RunResult['id'], round: number, value: number, extra: Partial<RunResult> = {}): RunResult {
  return { id, round, value, problems: [], ...extra };
}

/** The report of `results` as the bench writes it, with the summaries and ratios it is made of. */
function reportOf(results: readonly RunResult[], meta: Partial<ReportMeta> = {}) {
  const summaries = summarize(results, RUN_IDS);
  const bulkClients = meta.bulkClients ?? 4;
  const ratios = computeRatios(summaries, bulkClients);
  const text = renderReport(
    {
      date: new Date(),
      elapsedSeconds: 1,
      command: 'x',
      setup: [],
      rounds: 1,
      bulkClients,
      rowsWithEventIds: false,
      ...meta,
    },
    summaries,
    ratios,
    results,
    undefined,
  );
  return { summaries, ratios, text };
}

describe('report', () => {
  const results: RunResult[] = [
    result('bulk-1', 1, 100_000),
    result('bulk-1', 2, 120_000),
    result('bulk-1', 3, 110_000, { peakRssBytes: 150 * 1024 * 1024 }),
    result('copy-nofk', 1, 200_000),
    result('copy-fk', 1, 50_000),
    result('single-wait', 1, 9000, { p50Ms: 6, p99Ms: 40, unitsPerCpuSecond: 6000 }),
    result('naive', 1, 2000, { p50Ms: 30, p99Ms: 80, unitsPerCpuSecond: 2500, problems: ['3 non-2xx answers'] }),
  ];
  const { summaries, ratios } = reportOf(results);

  it('summarizes rounds by their median and the highest peak RSS', () => {
    const bulk = summaries.find((summary) => summary.id === 'bulk-1');
    expect(bulk?.value).toBe(110_000);
    expect(bulk?.min).toBe(100_000);
    expect(bulk?.peakRssBytes).toBe(150 * 1024 * 1024);
    expect(summaries.map((summary) => summary.id)).toEqual(['bulk-1', 'copy-nofk', 'copy-fk', 'single-wait', 'naive']);
  });

  it('computes the ratios whose two sides were measured', () => {
    expect(ratios.map((entry) => entry.spec.id)).toEqual(['bulk-1/copy-nofk', 'bulk-1/copy-fk', 'single-wait/naive']);
    expect(ratios[0]?.value).toBeCloseTo(0.55);
    expect(ratios[2]?.value).toBeCloseTo(4.5);
  });

  it('compares requests per server CPU-second where both sides measured it', () => {
    expect(ratios[2]?.perCpuSecond).toBeCloseTo(2.4);
    expect(ratios[0]?.perCpuSecond).toBeUndefined();
  });

  it('renders the report with the command, targets and problems', () => {
    const { text } = reportOf(results, {
      date: new Date('2026-01-02T03:04:05Z'),
      elapsedSeconds: 12.3,
      command: 'npm run bench -- --rows 1000',
      setup: [['machine', '2 CPUs']],
      rounds: 3,
      chartLink: 'results.svg',
    });
    expect(text).toContain('npm run bench -- --rows 1000');
    expect(text).toContain('| gateway bulk, 1 client ÷ psql \\copy, no FK ≥ 0.8x | 3 | 0.55x | **missed** |');
    expect(text).toContain('| single wait=true ÷ naive server ≥ 3x | 3 | 4.50x | reached |');
    expect(text).toContain('| single wait=true ÷ naive server | 4.50x | 2.40x |');
    expect(text).toMatch(/\| gateway single POST, wait=true \| 9,000 \|.*\| 6,000 \|/);
    expect(text).toContain('round 1: 3 non-2xx answers');
    expect(text).toContain('![ratios](results.svg)');
    expect(text).not.toContain('## Client library');
  });

  it('puts the client beside bulk: its rows/s, the time of track(), and client ÷ bulk with UUIDv7 against 0.8x', () => {
    const withClient = [
      ...results,
      result('bulk-v7', 1, 55_000),
      result('client', 1, 99_000, {
        trackP50Us: 0.8,
        trackP99Us: 3.25,
        count: 1_000_000,
        clientCpuSeconds: 4.5,
        cpuSeconds: 9,
      }),
    ];
    const { ratios: clientRatios, text } = reportOf(withClient);
    expect(clientRatios.find((entry) => entry.spec.id === 'client/bulk-v7')?.value).toBeCloseTo(1.8);
    expect(clientRatios.find((entry) => entry.spec.id === 'client/bulk-1')?.value).toBeCloseTo(0.9);
    expect(text).toContain('| client track() ÷ gateway bulk, UUIDv7 event_ids ≥ 0.8x | 10 | 1.80x | reached |');
    expect(text).toContain('## Client library (issue 10)');
    expect(text).toContain('| 1,000,000 | 99,000 | 0.8 | 3.3 | 4.50 | 9.00 | 1.80x | 0.90x |');
  });
});

/** The cells of the first table row of `text` whose first cell is `first`. */
function cellsOf(text: string, first: string): string[] {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`| ${first} |`));
  if (line === undefined) throw new Error(`no table row starts with ${first}`);
  return line
    .slice(2, -2)
    .split(' | ')
    .map((cell) => cell.trim());
}

describe('report of issue 15', () => {
  const CPU_TARGET = 'gateway CPU per bulk row ≤ 2.5 µs (≥ 400,000 rows per CPU-second)';
  const results: RunResult[] = [
    result('bulk-1', 1, 100_000, { unitsPerCpuSecond: 500_000 }),
    result('bulk-n', 1, 90_000, { unitsPerCpuSecond: 450_000 }),
    result('bulk-v7', 1, 80_000, { unitsPerCpuSecond: 250_000 }),
    result('copy-nofk', 1, 120_000),
    result('copy-n', 1, 150_000),
  ];

  it('checks the gateway CPU per bulk row against 2.5 µs, rows without and with event_id', () => {
    const { text } = reportOf(results);
    expect(text).toContain(
      `| ${CPU_TARGET}, rows without event_id (bulk-1) | 15 | 2.00 µs per row (500,000 per CPU-s) | reached |`,
    );
    expect(text).toContain(
      `| ${CPU_TARGET}, rows with event_id (bulk-v7) | 15 | 4.00 µs per row (250,000 per CPU-s) | **missed** |`,
    );
  });

  it('shows CPU µs per row and rows per CPU-second in the throughput table', () => {
    const { text } = reportOf(results);
    const header = cellsOf(text, 'run');
    const column = (name: string) => header.indexOf(name);
    const bulk = cellsOf(text, 'gateway bulk NDJSON, 4 clients, wait=true');
    expect(bulk[column('server CPU µs per row or req')]).toBe('2.22');
    expect(bulk[column('rows or req per server CPU-s')]).toBe('450,000');
    const copy = cellsOf(text, 'psql \\copy into user_metrics_nofk (no FK, no trigger)');
    expect(copy[column('server CPU µs per row or req')]).toBe('');
    expect(copy[column('server peak RSS')]).toBe('(psql)');
  });

  it('says the rows without event_id were not measured when --event-ids gave every row one', () => {
    const { text } = reportOf(results, { rowsWithEventIds: true });
    expect(text).toContain(
      `| ${CPU_TARGET}, rows without event_id (bulk-1) | 15 | not run (--event-ids) | not measured |`,
    );
    expect(text).toContain(`| ${CPU_TARGET}, rows with event_id (bulk-v7) | 15 | 4.00 µs`);
  });

  it('compares N gateway bulk clients with N parallel psql \\copy into the table with the same keys, against 0.8x', () => {
    const { ratios, text } = reportOf(results, { bulkClients: 2 });
    expect(ratios.find((entry) => entry.spec.id === 'bulk-n/copy-n')?.value).toBeCloseTo(0.6);
    expect(text).toContain(
      '| gateway bulk, 2 clients ÷ 2 parallel psql \\copy, same keys ≥ 0.8x | 15 | 0.60x | **missed** |',
    );
    expect(text).toContain('| gateway bulk, 2 clients ÷ 2 parallel psql \\copy, same keys | 0.60x |  |');
    expect(text).toContain(
      '| 2 parallel psql \\copy into user_metrics_nofk (same keys as user_metrics, no FK, no trigger), one part each | 150,000 |',
    );
  });

  it('leaves out the CPU targets of runs that were not selected', () => {
    const { text } = reportOf([result('copy-nofk', 1, 1)]);
    expect(text).not.toContain('gateway CPU per bulk row');
  });
});

describe('chart', () => {
  it('draws one bar per ratio in a standalone SVG', () => {
    const bars = chartBars(RATIO_SPECS.map((spec, index) => ({ spec, label: `${spec.id} <&>`, value: 0.5 + index })));
    const svg = renderRatioChart({ title: 'ratios & more', subtitle: 'test', bars });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<rect class="bar"/g)).toHaveLength(RATIO_SPECS.length);
    expect(svg.match(/<line class="target"/g)).toHaveLength(RATIO_SPECS.filter((spec) => spec.target).length);
    expect(svg).toContain('ratios &amp; more');
    expect(svg).not.toMatch(/<&>/);
    expect(svg).not.toMatch(/NaN|undefined/);
  });

  it('says so when there is no ratio', () => {
    const svg = renderRatioChart({ title: 'none', bars: [] });
    expect(svg).toContain('no ratio could be computed');
    expect(svg).not.toContain('class="bar"');
  });

  it('escapes XML and picks round axis steps', () => {
    expect(escapeXml(`a<b & "c" 'd'>`)).toBe('a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;');
    expect(niceStep(4.4)).toBe(1);
    expect(niceStep(1.08)).toBe(0.2);
    expect(niceStep(12)).toBe(2);
  });
});

describe('the gateway under test', () => {
  it('keeps its DATA_DIR and spool in the work folder, one per label, whatever our environment says', () => {
    const start = { databaseUrl: 'postgres://h/db', logLevel: 'warn', workDir: '/tmp/w', label: 'round1-bulk-1' };
    const env = gatewayEnvironment(
      { ...start, env: { PARTITION_INTERVAL: '6h', DATA_DIR: '/elsewhere' } },
      { BATCH_MAX_ROWS: '500', DATA_DIR: '/project/.data', SPOOL_DIR: '/project/.data/spool' },
    );
    expect(env).toMatchObject({
      BATCH_MAX_ROWS: '500',
      PARTITION_INTERVAL: '6h',
      DATABASE_URL: 'postgres://h/db',
      DATA_DIR: '/tmp/w/round1-bulk-1',
      SPOOL_DIR: '/tmp/w/round1-bulk-1/spool',
      MIGRATE_ON_START: 'false',
    });
  });
});

describe('the row count of partition-move and index-cost', () => {
  it('is 1 or more, the fallback without one, and anything else is refused', () => {
    expect(parseRowsArgument([], 100_000)).toBe(100_000);
    expect(parseRowsArgument(['2_000'], 100_000)).toBe(2000);
    for (const bad of ['abc', '0', '1e5', '-3', '']) expect(() => parseRowsArgument([bad], 1)).toThrow(UsageError);
    expect(() => parseRowsArgument(['1', '2'], 1)).toThrow(UsageError);
  });
});
