// The throughput cost of API keys: the same load against a gateway with AUTH_REQUIRED=false and one
// with AUTH_REQUIRED=true. Both run all along; the load alternates between them in short slices
// (off, on / on, off, ...), so that each pair of slices sees the same background load of a shared
// machine, and the cost is the median of the pairs' ratios. Both get the same Authorization header,
// so only the gateways' work differs. Last, the key check itself is timed in-process.
//
//   npm run build && node dist/bench/auth-cost.js [--pairs 8] [--duration 4] [--connections 50] [--rows 50000]
//
// The database is BENCH_DATABASE_URL's or DATABASE_URL's server (a fresh database, dropped at the
// end), else an embedded PostgreSQL in a temporary folder.

import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Request, Response } from 'express';
import pino from 'pino';
import { createApiKey } from '../gateway/src/auth/api-keys';
import { ApiKeyAuthenticator } from '../gateway/src/auth/authenticator';
import { accessControl } from '../gateway/src/http/access-control';
import { generateMetrics } from '../seed/generate-metrics';
import { createBenchDatabase, openBenchServer } from './bench-database';
import type { Service } from './child-processes';
import { startGateway } from './gateway-process';
import { loadTest } from './runs';
import { formatCount, formatMs, formatRatio, median } from './stats';

const MODES = ['auth off', 'auth on'] as const;
type Mode = (typeof MODES)[number];
const MEASURES = ['single wait=true', 'single wait=false', 'bulk wait=true'] as const;
type Measure = (typeof MEASURES)[number];

interface Sample {
  /** req/s for single POSTs, rows/s for bulk. */
  readonly rate: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
}

function options() {
  const { values } = parseArgs({
    options: {
      pairs: { type: 'string', default: '8' },
      duration: { type: 'string', default: '4' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '50' },
      rows: { type: 'string', default: '50000' },
    },
  });
  const number = (name: keyof typeof values): number => {
    const value = Number(values[name]);
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be an integer >= 0`);
    return value;
  };
  return {
    pairs: Math.max(1, number('pairs')),
    duration: number('duration'),
    warmup: number('warmup'),
    connections: number('connections'),
    rows: number('rows'),
  };
}

/** loadTest of `bodies` (cycled) to `url` + `requestPath`; fails on any answer but 2xx. */
async function singleLoad(
  url: string,
  requestPath: string,
  bodies: readonly string[],
  headers: Record<string, string>,
  connections: number,
  seconds: number,
): Promise<Sample> {
  const result = await loadTest(url, requestPath, bodies, connections, seconds, headers);
  if (result.problems.length > 0) throw new Error(`${url}: ${result.problems.join('; ')}`);
  return { rate: result.rps, p50Ms: result.p50Ms, p99Ms: result.p99Ms };
}

/** One bulk upload of `body` (wait=true); rows per second from the first byte sent to the answer. */
function bulkUpload(url: string, body: Buffer, rows: number, headers: Record<string, string>): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request(
      `${url}/v1/metrics/bulk`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/x-ndjson', 'content-length': String(body.length), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          const seconds = (performance.now() - started) / 1000;
          const answer = JSON.parse(text) as { accepted?: number };
          if (res.statusCode !== 200 || answer.accepted !== rows) {
            reject(new Error(`bulk upload: ${res.statusCode} ${text.slice(0, 300)}`));
          } else {
            resolve({ rate: rows / seconds });
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function startModeGateway(databaseUrl: string, mode: Mode, workDir: string, label: string): Promise<Service> {
  return startGateway({
    name: `gateway (${mode})`,
    databaseUrl,
    logLevel: 'warn',
    workDir,
    label,
    env: { AUTH_REQUIRED: mode === 'auth on' ? 'true' : 'false' },
  });
}

/** Microseconds per request of the key check alone (cached key, ingest route), in this process. */
async function middlewareMicroseconds(key: string, iterations: number): Promise<number> {
  const principal = { id: 1, name: 'bench', scope: 'ingest' as const };
  const check = accessControl({
    authenticator: new ApiKeyAuthenticator({
      lookup: async () => principal,
      ttlMs: 3_600_000,
      logger: pino({ level: 'silent' }),
    }),
  })('ingest');
  const req = {
    method: 'POST',
    path: '/v1/metrics',
    headers: { authorization: `Bearer ${key}` },
    log: { setBindings: () => undefined },
  } as unknown as Request;
  // A fresh answer each time: a request's key is checked once (res.locals).
  const res = () => ({ setHeader: () => undefined, locals: {} }) as unknown as Response;
  const next = () => undefined;
  for (let i = 0; i < 1000; i++) await check(req, res(), next);
  const started = performance.now();
  for (let i = 0; i < iterations; i++) await check(req, res(), next);
  return ((performance.now() - started) * 1000) / iterations;
}

async function main(): Promise<void> {
  const opts = options();
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'mg-auth-cost-'));
  const server = await openBenchServer(process.env, logger);
  const db = await createBenchDatabase(server, logger).catch(async (error: unknown) => {
    await server.stop();
    throw error;
  });
  const gateways: Partial<Record<Mode, Service>> = {};
  try {
    const { key } = await createApiKey(db.pool, 'bench', 'ingest');
    const authorization = { authorization: `Bearer ${key}` };
    const singleBodies = [...generateMetrics({ count: 256 })].map((metric) => JSON.stringify(metric));
    const bulkBody = Buffer.from(
      `${[...generateMetrics({ count: opts.rows, seed: 2 })].map((metric) => JSON.stringify(metric)).join('\n')}\n`,
    );
    for (const mode of MODES) gateways[mode] = await startModeGateway(db.url, mode, workDir, mode.replace(' ', '-'));
    const urlOf = (mode: Mode): string => (gateways[mode] as Service).url;

    const runs: Record<Measure, (mode: Mode, seconds: number) => Promise<Sample>> = {
      'single wait=true': (mode, seconds) =>
        singleLoad(urlOf(mode), '/v1/metrics?wait=true', singleBodies, authorization, opts.connections, seconds),
      'single wait=false': (mode, seconds) =>
        singleLoad(urlOf(mode), '/v1/metrics?wait=false', singleBodies, authorization, opts.connections, seconds),
      'bulk wait=true': (mode) => bulkUpload(urlOf(mode), bulkBody, opts.rows, authorization),
    };
    const lines = [
      '',
      `auth cost: ${opts.pairs} pairs of ${opts.duration} s autocannon slices with ${opts.connections} connections, ` +
        `bulk uploads of ${formatCount(opts.rows)} rows`,
      '',
      '| load | auth off (median) | auth on (median) | on/off, median of pairs (min-max) | p99 off / on (ms) |',
      '|---|---:|---:|---:|---:|',
    ];
    for (const measure of MEASURES) {
      if (opts.warmup > 0) for (const mode of MODES) await runs[measure](mode, opts.warmup);
      const off: Sample[] = [];
      const on: Sample[] = [];
      const ratios: number[] = [];
      for (let pair = 1; pair <= opts.pairs; pair++) {
        const order = pair % 2 === 1 ? MODES : [...MODES].reverse();
        const taken: Partial<Record<Mode, Sample>> = {};
        for (const mode of order) taken[mode] = await runs[measure](mode, opts.duration);
        const [a, b] = [taken['auth off'] as Sample, taken['auth on'] as Sample];
        off.push(a);
        on.push(b);
        ratios.push(b.rate / a.rate);
        process.stderr.write(
          `${measure.padEnd(17)} pair ${pair}: off ${formatCount(a.rate)}, on ${formatCount(b.rate)}, ` +
            `${formatRatio(b.rate / a.rate)}\n`,
        );
      }
      const unit = measure.startsWith('bulk') ? 'rows/s' : 'req/s';
      const p99 = measure.startsWith('bulk')
        ? '-'
        : `${formatMs(median(off.map((s) => s.p99Ms ?? NaN)))} / ${formatMs(median(on.map((s) => s.p99Ms ?? NaN)))}`;
      lines.push(
        `| ${measure} (${unit}) | ${formatCount(median(off.map((s) => s.rate)))} | ` +
          `${formatCount(median(on.map((s) => s.rate)))} | ${formatRatio(median(ratios))} ` +
          `(${formatRatio(Math.min(...ratios))}-${formatRatio(Math.max(...ratios))}) | ${p99} |`,
      );
    }
    const micros = await middlewareMicroseconds(key, 200_000);
    lines.push('', `key check alone (cached key, in-process): ${micros.toFixed(2)} µs per request`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    for (const gateway of Object.values(gateways)) await gateway.stop();
    await db.drop();
    await server.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`auth-cost failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
