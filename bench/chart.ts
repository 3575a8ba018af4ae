// A horizontal bar chart of the ratios as a hand-written SVG: no browser, no network, no dependency.

export interface ChartBar {
  readonly label: string;
  /** The ratio, e.g. 0.83 for 0.83x. */
  readonly value: number;
  /** The ratio asked for; drawn as a dashed mark, and the bar is coloured by whether it is reached. */
  readonly target?: number;
}

export interface RatioChart {
  readonly title: string;
  readonly subtitle?: string;
  readonly bars: readonly ChartBar[];
}

const WIDTH = 1000;
const LABEL_WIDTH = 430;
const PLOT_LEFT = LABEL_WIDTH + 10;
const PLOT_RIGHT = WIDTH - 90;
const TOP = 72;
const ROW_HEIGHT = 40;
const BAR_HEIGHT = 22;
const AXIS_HEIGHT = 34;
const LEGEND_HEIGHT = 28;

const COLOR_MET = '#2e7d32';
const COLOR_MISSED = '#e65100';
const COLOR_PLAIN = '#1565c0';

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[ch]};`);
}

/** A tick step of 1, 2, 2.5 or 5 times a power of ten that gives at most `maxTicks` intervals up to `max`. */
export function niceStep(max: number, maxTicks = 8): number {
  const rough = max / maxTicks;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (factor * power >= rough) return factor * power;
  }
  return 10 * power;
}

/** The start of a chart: the <svg> element, a white background, the title and the subtitle. */
export function svgHead(width: number, height: number, title: string, subtitle?: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="28" font-size="18" font-weight="bold" fill="#212121">${escapeXml(title)}</text>`,
    ...(subtitle === undefined ? [] : [`<text x="16" y="50" fill="#616161">${escapeXml(subtitle)}</text>`]),
  ];
}

/** Numbers as the axis shows them: 0, 0.5, 1, 2.5, 10. */
function tickText(value: number): string {
  return `${Number(value.toFixed(3))}x`;
}

/** The chart as a standalone SVG document: one bar (`<rect class="bar">`) per entry of `chart.bars`. */
export function renderRatioChart(chart: RatioChart): string {
  const bars = chart.bars.filter((bar) => Number.isFinite(bar.value) && bar.value >= 0);
  const rowsHeight = Math.max(1, bars.length) * ROW_HEIGHT;
  const height = TOP + rowsHeight + AXIS_HEIGHT + LEGEND_HEIGHT;
  const largest = Math.max(1, ...bars.map((bar) => Math.max(bar.value, bar.target ?? 0)));
  const step = niceStep(largest * 1.08);
  const axisMax = Math.ceil((largest * 1.08) / step) * step;
  const x = (value: number): number => PLOT_LEFT + (value / axisMax) * (PLOT_RIGHT - PLOT_LEFT);
  const round = (value: number): string => value.toFixed(1);

  const parts = svgHead(WIDTH, height, chart.title, chart.subtitle);

  // Grid and axis labels first, so the bars are drawn over them.
  const plotBottom = TOP + rowsHeight;
  for (let tick = 0; tick <= axisMax + step / 1000; tick += step) {
    const tx = round(x(tick));
    const parity = Math.abs(tick - 1) < 1e-9;
    parts.push(
      `<line x1="${tx}" y1="${TOP - 6}" x2="${tx}" y2="${plotBottom}" stroke="${parity ? '#757575' : '#e0e0e0'}" ` +
        `stroke-width="${parity ? 1.5 : 1}"/>`,
      `<text x="${tx}" y="${plotBottom + 18}" text-anchor="middle" fill="#616161">${tickText(tick)}</text>`,
    );
  }

  if (bars.length === 0) {
    parts.push(`<text x="${PLOT_LEFT}" y="${TOP + 24}" fill="#616161">no ratio could be computed in this run</text>`);
  }
  bars.forEach((bar, index) => {
    const rowTop = TOP + index * ROW_HEIGHT;
    const barTop = rowTop + (ROW_HEIGHT - BAR_HEIGHT) / 2;
    const middle = rowTop + ROW_HEIGHT / 2 + 4.5;
    const color = bar.target === undefined ? COLOR_PLAIN : bar.value >= bar.target ? COLOR_MET : COLOR_MISSED;
    const end = x(bar.value);
    parts.push(
      `<text x="${LABEL_WIDTH}" y="${round(middle)}" text-anchor="end" fill="#212121">${escapeXml(bar.label)}</text>`,
      `<rect class="bar" x="${PLOT_LEFT}" y="${round(barTop)}" width="${round(Math.max(1, end - PLOT_LEFT))}" ` +
        `height="${BAR_HEIGHT}" fill="${color}"><title>${escapeXml(`${bar.label}: ${bar.value.toFixed(2)}x`)}</title></rect>`,
    );
    if (bar.target !== undefined) {
      const tx = round(x(bar.target));
      parts.push(
        `<line class="target" x1="${tx}" y1="${round(rowTop + 2)}" x2="${tx}" y2="${round(rowTop + ROW_HEIGHT - 2)}" ` +
          `stroke="#b71c1c" stroke-width="2" stroke-dasharray="4 3"/>`,
      );
    }
    // A white outline keeps the value readable where it crosses a grid or target line.
    parts.push(
      `<text x="${round(end + 6)}" y="${round(middle)}" font-weight="bold" fill="#212121" stroke="#ffffff" ` +
        `stroke-width="4" paint-order="stroke">${bar.value.toFixed(2)}x</text>`,
    );
  });

  const legendY = plotBottom + AXIS_HEIGHT + 12;
  parts.push(
    `<rect x="16" y="${legendY - 10}" width="12" height="12" fill="${COLOR_MET}"/>`,
    `<text x="34" y="${legendY}" fill="#424242">target reached</text>`,
    `<rect x="140" y="${legendY - 10}" width="12" height="12" fill="${COLOR_MISSED}"/>`,
    `<text x="158" y="${legendY}" fill="#424242">target missed</text>`,
    `<rect x="262" y="${legendY - 10}" width="12" height="12" fill="${COLOR_PLAIN}"/>`,
    `<text x="280" y="${legendY}" fill="#424242">no target</text>`,
    `<line x1="370" y1="${legendY - 11}" x2="370" y2="${legendY + 2}" stroke="#b71c1c" stroke-width="2" stroke-dasharray="4 3"/>`,
    `<text x="378" y="${legendY}" fill="#424242">target of issue 3; grey line: 1x (parity)</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}
