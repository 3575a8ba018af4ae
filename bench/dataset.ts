// The rows every contender loads, generated once: NDJSON (whole and in parts) and the same rows as COPY text.

import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { COPY_COLUMNS } from '../gateway/src/db/copy-row';
import { encodeMetricRow } from '../gateway/src/ingest/copy-encode';
import { checkMetric } from '../gateway/src/ingest/schema';
import { uuidv7 } from 'metrics-gateway-client';
import { generateMetrics, type GeneratedMetric } from '../seed/generate-metrics';

/** One file of the rows, or of a part of them. */
export interface DataFile {
  readonly file: string;
  readonly rows: number;
  readonly bytes: number;
}

export interface Dataset {
  readonly rows: number;
  readonly seed: number;
  readonly startMs: number;
  readonly withEventIds: boolean;
  readonly ndjsonFile: string;
  readonly ndjsonBytes: number;
  /** The same lines split into consecutive parts, one per client of the parallel bulk run. */
  readonly parts: readonly DataFile[];
  readonly copyFile: string;
  readonly copyBytes: number;
  /** The COPY text of the same parts, one per psql of the parallel COPY run. */
  readonly copyParts: readonly DataFile[];
  readonly copyColumns: readonly string[];
  /** JSON bodies for single POSTs: the first rows of the same data. */
  readonly singleBodies: readonly string[];
  /**
   * The same lines, each with a UUIDv7 event_id (in place of any other), as the client library sends
   * them: the bulk upload that the client step is compared with. Written only when asked for.
   */
  readonly v7File?: { readonly file: string; readonly bytes: number };
}

export interface DatasetOptions {
  readonly dir: string;
  readonly rows: number;
  readonly seed: number;
  /** Latest time_recorded; fixed, so that the same seed gives the same bytes on every run. */
  readonly startMs: number;
  readonly parts: number;
  readonly singleBodies: number;
  readonly withEventIds: boolean;
  /** received_at of the COPY rows (the gateway stamps its own). */
  readonly receivedAt: string;
  /** Also write the lines with UUIDv7 event_ids (v7File). */
  readonly withV7File?: boolean;
}

/** Latest time_recorded of the generated rows: a fixed instant in the past, so the bytes never change. */
export const DATASET_START_MS = Date.UTC(2026, 0, 1);

const FLUSH_CHARS = 1 << 20;

/** Appends text to a file in large writes. */
class BufferedFile {
  private pending: string[] = [];
  private pendingChars = 0;
  bytes = 0;

  private constructor(private readonly handle: FileHandle) {}

  static async create(file: string): Promise<BufferedFile> {
    return new BufferedFile(await open(file, 'w'));
  }

  async write(text: string): Promise<void> {
    this.pending.push(text);
    this.pendingChars += text.length;
    if (this.pendingChars >= FLUSH_CHARS) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const buffer = Buffer.from(this.pending.join(''), 'utf8');
    this.pending = [];
    this.pendingChars = 0;
    this.bytes += buffer.length;
    await this.handle.write(buffer);
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle.close();
  }
}

/** The row counts of `parts` consecutive parts of `rows` rows, as equal as can be. */
export function splitRows(rows: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, index) => Math.floor((rows * (index + 1)) / parts) - Math.floor((rows * index) / parts),
  );
}

export async function writeDataset(options: DatasetOptions): Promise<Dataset> {
  const { dir, rows } = options;
  const partRows = splitRows(rows, options.parts);
  const ndjson = await BufferedFile.create(path.join(dir, 'metrics.ndjson'));
  const copy = await BufferedFile.create(path.join(dir, 'metrics.copy'));
  const partFile = (index: number, extension: string): string =>
    path.join(dir, `metrics.part${index + 1}.${extension}`);
  const parts = await Promise.all(partRows.map((_, index) => BufferedFile.create(partFile(index, 'ndjson'))));
  const copyParts = await Promise.all(partRows.map((_, index) => BufferedFile.create(partFile(index, 'copy'))));
  const v7 = options.withV7File ? await BufferedFile.create(path.join(dir, 'metrics.v7.ndjson')) : undefined;
  const singleBodies: string[] = [];
  const nowMs = Date.now();
  try {
    let part = 0;
    let partEnd = partRows[0] ?? rows;
    let index = 0;
    for (const metric of generateMetrics({
      count: rows,
      seed: options.seed,
      startMs: options.startMs,
      withEventIds: options.withEventIds,
    })) {
      const json = JSON.stringify(metric);
      const check = checkMetric(JSON.parse(json), nowMs);
      if (!check.ok) throw new Error(`generated row ${index + 1} is invalid: ${JSON.stringify(check.details)}`);
      await ndjson.write(`${json}\n`);
      while (index >= partEnd) partEnd += partRows[++part] ?? 0;
      await (parts[part] as BufferedFile).write(`${json}\n`);
      const copyRow = encodeMetricRow(check.metric, check.timeRecorded, options.receivedAt);
      await copy.write(copyRow);
      await (copyParts[part] as BufferedFile).write(copyRow);
      if (singleBodies.length < options.singleBodies) singleBodies.push(json);
      if (v7 !== undefined) await v7.write(`${JSON.stringify({ ...metric, event_id: uuidv7() })}\n`);
      index++;
    }
  } finally {
    await Promise.all(
      [ndjson, copy, ...parts, ...copyParts, ...(v7 === undefined ? [] : [v7])].map((file) => file.close()),
    );
  }
  return {
    rows,
    seed: options.seed,
    startMs: options.startMs,
    withEventIds: options.withEventIds,
    ndjsonFile: path.join(dir, 'metrics.ndjson'),
    ndjsonBytes: ndjson.bytes,
    parts: parts.map((file, index) => ({
      file: partFile(index, 'ndjson'),
      rows: partRows[index] as number,
      bytes: file.bytes,
    })),
    copyFile: path.join(dir, 'metrics.copy'),
    copyBytes: copy.bytes,
    copyParts: copyParts.map((file, index) => ({
      file: partFile(index, 'copy'),
      rows: partRows[index] as number,
      bytes: file.bytes,
    })),
    copyColumns: COPY_COLUMNS,
    singleBodies,
    ...(v7 === undefined ? {} : { v7File: { file: path.join(dir, 'metrics.v7.ndjson'), bytes: v7.bytes } }),
  };
}

/**
 * The first `count` rows of `dataset` (all if it has fewer) as objects, without event_id: generated
 * again from its seed, which gives the same rows as its files (event ids come from a stream of their own).
 */
export function datasetMetrics(dataset: Dataset, count: number): GeneratedMetric[] {
  return [...generateMetrics({ count: Math.min(count, dataset.rows), seed: dataset.seed, startMs: dataset.startMs })];
}
