const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatCount(value: number): string {
  return integer.format(value);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** 0:07, 12:30, 1:02:03. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

export interface ProgressState {
  /** Rows the gateway has answered for (accepted or refused). */
  readonly rows: number;
  /** Bytes of the file behind those rows. */
  readonly bytes: number;
}

export interface ProgressOptions {
  readonly write: (text: string) => void;
  /** On a terminal the line is redrawn in place; elsewhere a line is printed now and then. */
  readonly tty: boolean;
  readonly totalBytes: number;
  readonly now?: () => number;
}

/** The progress line on stderr: rows, bytes (of the file), rows/s and an ETA from the bytes left. */
export class Progress {
  private readonly now: () => number;
  private readonly startedAt: number;
  private lastDrawn = -Infinity;
  private lastLength = 0;

  constructor(private readonly options: ProgressOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
  }

  line({ rows, bytes }: ProgressState): string {
    const seconds = (this.now() - this.startedAt) / 1000;
    const { totalBytes } = this.options;
    const share = totalBytes > 0 ? Math.min(1, bytes / totalBytes) : 1;
    const rate = seconds > 0 ? rows / seconds : 0;
    const eta = bytes > 0 && share < 1 ? formatDuration((seconds * (totalBytes - bytes)) / bytes) : '–';
    return (
      `${formatCount(rows)} rows  ${formatBytes(bytes)} / ${formatBytes(totalBytes)} (${Math.floor(share * 100)}%)  ` +
      `${formatCount(rate)} rows/s  ETA ${share >= 1 ? '0:00' : eta}`
    );
  }

  /** Draws the state, at most every 0.2 s on a terminal and every 5 s elsewhere, unless `force`. */
  update(state: ProgressState, force = false): void {
    const now = this.now();
    if (!force && now - this.lastDrawn < (this.options.tty ? 200 : 5000)) return;
    this.lastDrawn = now;
    this.draw(this.line(state));
  }

  /** A message of its own line, above the progress line on a terminal. */
  note(message: string): void {
    if (this.options.tty && this.lastLength > 0) this.options.write('\r\x1b[K');
    this.lastLength = 0;
    this.options.write(`${message}\n`);
    this.lastDrawn = -Infinity;
  }

  /** Leaves the last progress line in place. */
  finish(state: ProgressState): void {
    this.update(state, true);
    if (this.options.tty) this.options.write('\n');
    this.lastLength = 0;
  }

  private draw(text: string): void {
    if (this.options.tty) {
      this.options.write(`\r${text}\x1b[K`);
      this.lastLength = text.length;
    } else {
      this.options.write(`${text}\n`);
    }
  }
}
