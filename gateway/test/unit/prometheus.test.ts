import type { Pool } from 'pg';
import { createPrometheusTelemetry } from '../../src/telemetry/prometheus';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus-text';

const fakePool = { totalCount: 4, idleCount: 3, waitingCount: 1 } as unknown as Pool;

async function scrape(telemetry: ReturnType<typeof createPrometheusTelemetry>) {
  return parsePrometheusText(await telemetry.registry.metrics());
}

describe('createPrometheusTelemetry', () => {
  it('counts what the hooks report, exactly', async () => {
    const telemetry = createPrometheusTelemetry(fakePool);
    telemetry.trackBuffer({ depth: 17, capacity: 1000 });
    const now = Date.UTC(2026, 0, 1);
    telemetry.rowsAccepted('bulk', now, [now - 2000, now - 4000, now + 60_000]);
    telemetry.rowsAccepted('single', now, [now - 7_200_000]);
    telemetry.rowsRefused(3, 'validation_failed', 'bulk');
    telemetry.rowsRefused(1, 'invalid_json', 'single');
    telemetry.batcherObserver.flushed(3, 0.004);
    telemetry.batcherObserver.flushed(1, 0.2);
    telemetry.batcherObserver.refused(1, 'unknown_reference');
    telemetry.batcherObserver.flushFailed(new Error('connection lost'));

    const m = await scrape(telemetry);
    expect(sampleValue(m, 'metrics_gateway_rows_accepted_total', { endpoint: 'bulk' })).toBe(3);
    expect(sampleValue(m, 'metrics_gateway_rows_accepted_total', { endpoint: 'single' })).toBe(1);
    expect(
      sampleValue(m, 'metrics_gateway_rows_rejected_total', { endpoint: 'bulk', reason: 'validation_failed' }),
    ).toBe(3);
    expect(sampleValue(m, 'metrics_gateway_rows_rejected_total', { endpoint: 'single', reason: 'invalid_json' })).toBe(
      1,
    );
    // Series exist at 0 before anything happens.
    expect(sampleValue(m, 'metrics_gateway_rows_rejected_total', { endpoint: 'single', reason: 'overloaded' })).toBe(0);
    expect(sampleValue(m, 'metrics_gateway_rows_rejected_at_flush_total', { reason: 'unknown_reference' })).toBe(1);
    expect(sampleValue(m, 'metrics_gateway_rows_flushed_total')).toBe(4);
    expect(sampleValue(m, 'metrics_gateway_flush_failures_total')).toBe(1);
    expect(sampleValue(m, 'metrics_gateway_batch_size_rows_count')).toBe(2);
    expect(sampleValue(m, 'metrics_gateway_batch_size_rows_sum')).toBe(4);
    expect(sampleValue(m, 'metrics_gateway_batch_size_rows_bucket', { le: '1' })).toBe(1);
    expect(sampleValue(m, 'metrics_gateway_flush_duration_seconds_count')).toBe(2);
    expect(sampleValue(m, 'metrics_gateway_flush_duration_seconds_bucket', { le: '0.005' })).toBe(1);
    // 2 s, 4 s, a time in the future (0) and 2 h.
    expect(sampleValue(m, 'metrics_gateway_ingest_lag_seconds_count')).toBe(4);
    expect(sampleValue(m, 'metrics_gateway_ingest_lag_seconds_sum')).toBe(2 + 4 + 7200);
    expect(sampleValue(m, 'metrics_gateway_ingest_lag_seconds_bucket', { le: '0.1' })).toBe(1);
    expect(sampleValue(m, 'metrics_gateway_ingest_lag_seconds_bucket', { le: '5' })).toBe(3);
    expect(sampleValue(m, 'metrics_gateway_buffer_depth_rows')).toBe(17);
    expect(sampleValue(m, 'metrics_gateway_buffer_capacity_rows')).toBe(1000);
    expect(sampleValue(m, 'metrics_gateway_db_pool_connections')).toBe(4);
    expect(sampleValue(m, 'metrics_gateway_db_pool_idle_connections')).toBe(3);
    expect(sampleValue(m, 'metrics_gateway_db_pool_waiting_requests')).toBe(1);
  });

  it('keeps a registry per instance, with the default process metrics in each', async () => {
    const first = createPrometheusTelemetry(fakePool);
    const second = createPrometheusTelemetry(fakePool);
    first.rowsRefused(5, 'overloaded', 'single');
    const a = await scrape(first);
    const b = await scrape(second);
    expect(sampleValue(a, 'metrics_gateway_rows_rejected_total', { endpoint: 'single', reason: 'overloaded' })).toBe(5);
    expect(sampleValue(b, 'metrics_gateway_rows_rejected_total', { endpoint: 'single', reason: 'overloaded' })).toBe(0);
    for (const families of [a, b]) {
      expect(families.get('process_cpu_user_seconds_total')?.type).toBe('counter');
      expect(families.get('nodejs_heap_size_used_bytes')?.type).toBe('gauge');
    }
  });

  it('names counters with _total and durations with _seconds', async () => {
    const families = await scrape(createPrometheusTelemetry(fakePool));
    const ours = [...families.values()].filter((f) => f.name.startsWith('metrics_gateway_'));
    expect(ours.length).toBeGreaterThan(10);
    for (const family of ours) {
      expect(family.help).not.toBe('');
      if (family.type === 'counter') expect(family.name).toMatch(/_total$/);
      else expect(family.name).not.toMatch(/_total$/);
      if (family.type === 'histogram') expect(family.name).toMatch(/_(seconds|rows)$/);
    }
  });
});

describe('parsePrometheusText', () => {
  it('refuses what the format does not allow', () => {
    expect(() => parsePrometheusText('garbage here {\n')).toThrow(/not a sample|no # TYPE/);
    expect(() => parsePrometheusText('a_total 1\n')).toThrow(/no # TYPE/);
    expect(() => parsePrometheusText('# TYPE a counter\na{x="1} 1\n')).toThrow(/bad labels/);
    expect(() => parsePrometheusText('# TYPE a counter\na one\n')).toThrow(/bad value/);
    expect(() => parsePrometheusText('# TYPE a counter\na 1')).toThrow(/newline/);
    const histogram = '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n';
    expect(() => parsePrometheusText(histogram)).toThrow(/cumulative/);
  });

  it('reads labels with escapes', () => {
    const families = parsePrometheusText(
      '# HELP a_total help\n# TYPE a_total counter\na_total{x="q\\"\\\\",y="2"} 3\n',
    );
    expect(sampleValue(families, 'a_total', { x: 'q"\\', y: '2' })).toBe(3);
  });
});
