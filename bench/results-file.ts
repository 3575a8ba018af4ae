// bench/RESULTS.md is written by parts: the rounds (`npm run bench`) and the sustained run (`--sustained`)
// each replace only their own part, between their marks, and keep everything else (sections added by hand).

export interface PartMarks {
  readonly start: string;
  readonly end: string;
}

export const ROUNDS_MARKS: PartMarks = {
  start: '<!-- rounds: start (npm run bench writes this part) -->',
  end: '<!-- rounds: end -->',
};

export const SUSTAINED_MARKS: PartMarks = {
  start: '<!-- sustained: start (npm run bench -- --sustained writes this part) -->',
  end: '<!-- sustained: end -->',
};

/**
 * Replaces the part of `report` between `marks` with `part`; without the marks, the part is put first
 * (`at: 'top'`) or last (`at: 'end'`), and the rest of the report is kept.
 */
export function splicePart(report: string, marks: PartMarks, part: string, at: 'top' | 'end'): string {
  const block = `${marks.start}\n${part.trimEnd()}\n${marks.end}\n`;
  const start = report.indexOf(marks.start);
  const end = report.indexOf(marks.end);
  if (start >= 0 && end > start) return report.slice(0, start) + block + report.slice(end + marks.end.length + 1);
  if (report.trim() === '') return block;
  return at === 'top' ? `${block}\n${report}` : `${report.trimEnd()}\n\n${block}`;
}
