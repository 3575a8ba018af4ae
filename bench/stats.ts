// Pure helpers for the benchmark: statistics over rounds and text formatting for the report.

/** The median of `values`; NaN for none. Does not reorder the input. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** numerator ÷ denominator, or undefined when either is missing, not finite or the denominator is not positive. */
export function ratio(numerator: number | undefined, denominator: number | undefined): number | undefined {
  if (numerator === undefined || denominator === undefined) return undefined;
  if (!Number.isFinite(numerator) || !Number.isFinite(denominator) || denominator <= 0) return undefined;
  return numerator / denominator;
}

/**
 * Units of work (rows, requests) per CPU-second of a process, from its CPU time (user + system) read just
 * before and just after the work: undefined without both readings or when not one clock tick passed.
 */
export function perCpuSecond(
  units: number | undefined,
  cpuSecondsBefore: number | undefined,
  cpuSecondsAfter: number | undefined,
): number | undefined {
  if (cpuSecondsBefore === undefined || cpuSecondsAfter === undefined) return undefined;
  return ratio(units, cpuSecondsAfter - cpuSecondsBefore);
}

/** CPU microseconds per unit of work, from units per CPU-second. */
export function cpuMicrosEach(unitsPerCpuSecond: number | undefined): number | undefined {
  return ratio(1_000_000, unitsPerCpuSecond);
}

/** 123456.7 -> "123,457"; undefined or NaN -> "n/a". */
export function formatCount(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  return Math.round(value).toLocaleString('en-US');
}

/** 0.8312 -> "0.83x". */
export function formatRatio(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  return `${value.toFixed(2)}x`;
}

/** Milliseconds with a precision that suits their size: 0.42, 7.3, 86. */
export function formatMs(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  if (value < 1) return value.toFixed(2);
  if (value < 10) return value.toFixed(1);
  return Math.round(value).toString();
}

/** Microseconds with two decimals below 10 (so 2.47 is not read as 2.5), fewer above: 2.47, 26.3, 262. */
export function formatMicros(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  if (value < 10) return value.toFixed(2);
  if (value < 100) return value.toFixed(1);
  return Math.round(value).toString();
}

/** Seconds with two decimals. */
export function formatSeconds(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  return value.toFixed(2);
}

/** Bytes in binary units: "187.3 MiB". */
export function formatBytes(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(scaled)} B` : `${scaled.toFixed(1)} ${units[unit]}`;
}

export type Align = 'left' | 'right';

/** A GitHub-flavoured Markdown table; `|` in cells is escaped, missing cells are empty. */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly Align[] = [],
): string {
  const cell = (text: string | undefined): string => (text ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const line = (cells: readonly (string | undefined)[]): string =>
    `| ${headers.map((_, i) => cell(cells[i])).join(' | ')} |`;
  const rule = `|${headers.map((_, i) => (align[i] === 'right' ? '---:' : '---')).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

/** A copy of `items` rotated left by `by` places: round k of a benchmark starts with a different contender. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  if (items.length === 0) return [];
  const shift = ((by % items.length) + items.length) % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}
