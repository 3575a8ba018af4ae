// The `client` step: one process (this one) calls MetricsClient.track() once per event, as an
// application would, and the library batches, compresses and sends them; end to end from the first
// track() to close() resolving (every row committed). Reports rows/s and the time of track() itself.

import { setImmediate as yieldToEvents, setTimeout as sleep } from 'node:timers/promises';
import { MetricsClient, type Metric } from 'metrics-gateway-client';
import { MAX_QUEUE_ROWS, YIELD_EVERY } from './contenders';
import { datasetMetrics } from './dataset';
import { METRICS_TABLE, countRows } from './bench-database';
import type { RunResult } from './report';
import { readProcessUsage } from './child-processes';
import { startGatewayProcess } from './gateway-process';
import { perCpuSecond } from './stats';
import type { RunContext } from './runs';

/** The q-th quantile of durations (sorted in place), in microseconds. */
function quantileUs(nanoseconds: Float64Array, q: number): number {
  if (nanoseconds.length === 0) return NaN;
  return (nanoseconds[Math.min(nanoseconds.length - 1, Math.floor(q * nanoseconds.length))] as number) / 1000;
}

export async function runClient(context: RunContext, round: number): Promise<RunResult> {
  const { options, dataset, progress } = context;
  const events = options.clientRows;
  // The client adds a UUIDv7 event_id to each row it tracks.
  const rows = datasetMetrics(dataset, events);
  const problems: string[] = [];
  const trackNs = new Float64Array(events);
  let seconds: number | undefined;
  let retries = 0;
  /** CPU time of this process (the application and the library) over the run. */
  let clientCpuSeconds: number | undefined;
  /** The gateway's CPU time just before the first track() and just after close(). */
  let gatewayCpuBefore: number | undefined;
  let gatewayCpuAfter: number | undefined;
  const gateway = await startGatewayProcess(context, `round${round}-client`);
  try {
    const client = new MetricsClient({ url: gateway.url, maxQueueRows: MAX_QUEUE_ROWS });
    client.on('retry', () => (retries += 1));
    client.on('refused', (refused) => problems.push(`${refused.length} rows refused: ${refused[0]?.error}`));
    client.on('dropped', (dropped, reason, message) =>
      problems.push(`${dropped.length} rows dropped (${reason}): ${message}`),
    );
    gatewayCpuBefore = readProcessUsage(gateway.pid).cpuSeconds;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    for (let n = 0; n < events; n++) {
      while (client.pendingRows >= MAX_QUEUE_ROWS) await sleep(1);
      const metric = rows[n % rows.length] as Metric;
      const before = process.hrtime.bigint();
      client.track(metric);
      trackNs[n] = Number(process.hrtime.bigint() - before);
      if (n % YIELD_EVERY === YIELD_EVERY - 1) await yieldToEvents();
    }
    const totals = await client.close({ deadlineMs: 600_000 });
    seconds = (performance.now() - started) / 1000;
    gatewayCpuAfter = readProcessUsage(gateway.pid).cpuSeconds;
    const cpu = process.cpuUsage(cpuBefore);
    clientCpuSeconds = (cpu.user + cpu.system) / 1e6;
    if (totals.stored !== events) problems.push(`stored ${totals.stored} of ${events} events`);
  } catch (error) {
    problems.push(`client run failed: ${(error as Error).message}`);
  } finally {
    const stopped = await gateway.stop();
    if (stopped.exitCode !== 0) problems.push(`gateway exited with ${stopped.exitCode}; log: ${gateway.logFile}`);
  }
  const count = await countRows(context.db.pool, METRICS_TABLE);
  if (count !== events) problems.push(`${METRICS_TABLE} holds ${count} rows, expected ${events}`);
  trackNs.sort();
  const usage = gateway.usage();
  if (retries > 0) progress(`client: ${retries} requests sent again (429/503/network)`);
  return {
    id: 'client',
    round,
    value: seconds === undefined ? undefined : events / seconds,
    seconds,
    count,
    trackP50Us: quantileUs(trackNs, 0.5),
    trackP99Us: quantileUs(trackNs, 0.99),
    ...(clientCpuSeconds === undefined ? {} : { clientCpuSeconds }),
    peakRssBytes: usage.peakRssBytes,
    cpuSeconds: usage.cpuSeconds,
    unitsPerCpuSecond: perCpuSecond(count, gatewayCpuBefore, gatewayCpuAfter),
    problems,
  };
}
