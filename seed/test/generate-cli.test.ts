import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { CLI_USAGE, generateMetrics, makeBadLine, runGenerateCli } from '../generate-metrics';

const NOW_MS = Date.parse('2024-06-01T12:00:00Z');

/** A writable that keeps everything written to it. */
function collector(): Writable & { text(): string; buffer(): Buffer } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      callback();
    },
  });
  return Object.assign(stream, {
    text: () => Buffer.concat(chunks).toString('utf8'),
    buffer: () => Buffer.concat(chunks),
  });
}

async function run(argv: string[]) {
  const stdout = collector();
  const stderr = collector();
  const code = await runGenerateCli(argv, { stdout, stderr, now: () => NOW_MS });
  return { code, stdout, stderr };
}

function lines(text: string): string[] {
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'generate-metrics-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('runGenerateCli', () => {
  it('writes NDJSON to stdout and nothing to stderr', async () => {
    const { code, stdout, stderr } = await run(['--count', '250', '--seed', '3']);
    expect(code).toBe(0);
    expect(stderr.text()).toBe('');
    const expected = [...generateMetrics({ count: 250, seed: 3, startMs: NOW_MS })];
    expect(lines(stdout.text()).map((line) => JSON.parse(line))).toEqual(expected);
  });

  it('writes a gzipped file when --out ends in .gz, reports on stderr, same lines as stdout', async () => {
    const file = path.join(dir, 'metrics.ndjson.gz');
    const { code, stdout, stderr } = await run(['--count', '20000', '--out', file, '--event-ids', '--seed', '5']);
    expect(code).toBe(0);
    expect(stdout.text()).toBe('');
    expect(stderr.text()).toContain(`wrote 20000 lines to ${file}`);
    const text = gunzipSync(await readFile(file)).toString('utf8');
    const plain = await run(['--count', '20000', '--event-ids', '--seed', '5']);
    expect(text).toBe(plain.stdout.text());
    const parsed = lines(text).map((line) => JSON.parse(line) as { event_id?: string });
    expect(parsed).toHaveLength(20000);
    expect(parsed.every((metric) => typeof metric.event_id === 'string')).toBe(true);
  });

  it('gzips to stdout with --gzip, and a plain file without it', async () => {
    const zipped = await run(['-n', '100', '--gzip']);
    expect(zipped.code).toBe(0);
    expect(lines(gunzipSync(zipped.stdout.buffer()).toString('utf8'))).toHaveLength(100);

    const file = path.join(dir, 'plain.ndjson');
    expect((await run(['-n', '100', '-o', file])).code).toBe(0);
    expect(lines(await readFile(file, 'utf8'))).toHaveLength(100);
  });

  it('uses --start as the latest time and accepts epoch ms for it', async () => {
    const a = await run(['-n', '50', '--start', '2024-01-10T00:00:00Z']);
    const b = await run(['-n', '50', '--start', String(Date.parse('2024-01-10T00:00:00Z'))]);
    expect(a.stdout.text()).toBe(b.stdout.text());
    for (const line of lines(a.stdout.text())) {
      const time = (JSON.parse(line) as { time_recorded: string | number }).time_recorded;
      const ms = typeof time === 'number' ? time : Date.parse(time);
      expect(ms).toBeLessThanOrEqual(Date.parse('2024-01-10T00:00:00Z'));
    }
  });

  it('makes every Nth line bad with --bad-every', async () => {
    const { code, stdout } = await run(['-n', '40', '--bad-every', '4']);
    expect(code).toBe(0);
    const good = [...generateMetrics({ count: 40, startMs: NOW_MS })];
    lines(stdout.text()).forEach((line, i) => {
      if ((i + 1) % 4 === 0) expect(line).toBe(makeBadLine((i + 1) / 4 - 1, good[i]));
      else expect(JSON.parse(line)).toEqual(good[i]);
    });
  });

  it('writes nothing for --count 0', async () => {
    const { code, stdout } = await run(['--count', '0']);
    expect(code).toBe(0);
    expect(stdout.text()).toBe('');
  });

  it('prints the usage for --help', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    expect(stdout.text()).toBe(CLI_USAGE);
  });

  it.each([
    [['--count', 'ten'], '--count'],
    [['--count', '-1'], '--count'],
    [['--count', '1e7'], '--count'],
    [[], '--count'],
    [['--count'], '--count'],
    [['--count', '1', '--bad-every', '0'], '--bad-every'],
    [['--count', '1', '--seed', 'abc'], '--seed'],
    [['--count', '1', '--start', '2024-02-30T10:00:00Z'], '--start'],
    [['--count', '1', '--start', '2024-06-02T12:00:00Z'], '--start'],
    [['--count', '1', '--out', ''], '--out'],
    [['--count', '1', '--colour'], '--colour'],
    [['--count', '1', 'extra'], 'extra'],
  ])('refuses %j with exit code 2, naming %s', async (argv, name) => {
    const { code, stdout, stderr } = await run(argv);
    expect(code).toBe(2);
    expect(stdout.text()).toBe('');
    expect(stderr.text()).toContain(name);
    expect(stderr.text()).toContain('Usage:');
  });

  it('fails with exit code 1 when the file cannot be written', async () => {
    const { code, stderr } = await run(['-n', '10', '--out', path.join(dir, 'missing', 'x.ndjson')]);
    expect(code).toBe(1);
    expect(stderr.text()).toContain('cannot write');
  });

  // A consumer that stops reading must stop the generator, not let lines pile up in memory.
  it('waits for a slow reader: nothing more is pulled while the reader is stalled', async () => {
    const received: Buffer[] = [];
    let release: (() => void) | undefined;
    const stalled = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, callback) {
        received.push(chunk);
        if (received.length === 1)
          release = callback; // hold the first write
        else callback();
      },
    });
    const stderr = collector();
    const done = runGenerateCli(['--count', '200000'], { stdout: stalled, stderr, now: () => NOW_MS });
    // The first write may take a while on a loaded machine; after it, the generator has time to
    // (wrongly) push more.
    const deadline = Date.now() + 10_000;
    while (received.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(received).toHaveLength(1);
    expect(received[0]!.length).toBeLessThan(128 * 1024);
    let settled = false;
    void done.then(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);

    release?.();
    expect(await done).toBe(0);
    const text = Buffer.concat(received).toString('utf8');
    expect(text.split('\n')).toHaveLength(200001);
  });
});
