// A line chart of rows/s against rows stored, one line per layout, as a hand-written SVG.

import { escapeXml, niceStep, svgHead } from './chart';

export interface RateSeries {
  readonly label: string;
  readonly color: string;
  /** [rows stored at the end of the step, rows/s over the step]. */
  readonly points: readonly (readonly [number, number])[];
}

const WIDTH = 1000;
const HEIGHT = 520;
const LEFT = 90;
const RIGHT = 30;
const TOP = 70;
const BOTTOM = 90;

export function renderRateChart(title: string, subtitle: string, series: readonly RateSeries[]): string {
  const all = series.flatMap((s) => s.points);
  const maxRows = Math.max(1, ...all.map(([rows]) => rows));
  const maxRate = Math.max(1, ...all.map(([, rate]) => rate)) * 1.08;
  const xStep = niceStep(maxRows, 10);
  const yStep = niceStep(maxRate, 8);
  const xMax = Math.ceil(maxRows / xStep) * xStep;
  const yMax = Math.ceil(maxRate / yStep) * yStep;
  const plotW = WIDTH - LEFT - RIGHT;
  const plotH = HEIGHT - TOP - BOTTOM;
  const x = (rows: number): string => (LEFT + (rows / xMax) * plotW).toFixed(1);
  const y = (rate: number): string => (TOP + plotH - (rate / yMax) * plotH).toFixed(1);
  const count = (value: number): string =>
    value >= 1e6
      ? `${Number((value / 1e6).toFixed(2))}M`
      : value >= 1e3
        ? `${Number((value / 1e3).toFixed(1))}k`
        : `${value}`;

  const parts = svgHead(WIDTH, HEIGHT, title, subtitle);
  for (let v = 0; v <= yMax + yStep / 1000; v += yStep) {
    parts.push(
      `<line x1="${LEFT}" y1="${y(v)}" x2="${WIDTH - RIGHT}" y2="${y(v)}" stroke="#e0e0e0"/>`,
      `<text x="${LEFT - 8}" y="${Number(y(v)) + 4}" text-anchor="end" fill="#616161">${count(v)}</text>`,
    );
  }
  for (let v = 0; v <= xMax + xStep / 1000; v += xStep) {
    parts.push(
      `<line x1="${x(v)}" y1="${TOP}" x2="${x(v)}" y2="${TOP + plotH}" stroke="#eeeeee"/>`,
      `<text x="${x(v)}" y="${TOP + plotH + 18}" text-anchor="middle" fill="#616161">${count(v)}</text>`,
    );
  }
  parts.push(
    `<text x="${LEFT + plotW / 2}" y="${TOP + plotH + 42}" text-anchor="middle" fill="#424242">rows stored</text>`,
    `<text x="20" y="${TOP + plotH / 2}" fill="#424242" transform="rotate(-90 20 ${TOP + plotH / 2})" ` +
      `text-anchor="middle">rows/s over each step</text>`,
  );
  series.forEach((s, index) => {
    if (s.points.length > 0) {
      const path = s.points.map(([rows, rate]) => `${x(rows)},${y(rate)}`).join(' ');
      parts.push(`<polyline class="series" fill="none" stroke="${s.color}" stroke-width="2.5" points="${path}"/>`);
      for (const [rows, rate] of s.points) {
        parts.push(`<circle cx="${x(rows)}" cy="${y(rate)}" r="3.5" fill="${s.color}"/>`);
      }
    }
    const ly = HEIGHT - 22;
    const lx = LEFT + index * 300;
    parts.push(
      `<rect x="${lx}" y="${ly - 10}" width="14" height="14" fill="${s.color}"/>`,
      `<text x="${lx + 20}" y="${ly + 2}" fill="#424242">${escapeXml(s.label)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
