// A strict reader of the Prometheus text exposition format (version 0.0.4), for tests: it throws on
// any line that the format does not allow, so that "the output parses" means something.

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL_NAME = '[a-zA-Z_][a-zA-Z0-9_]*';
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const LABEL_PAIR = new RegExp(`^(${LABEL_NAME})="((?:[^"\\\\\\n]|\\\\["\\\\n])*)"(,|$)`);
// As Prometheus reads values (Go's ParseFloat): Inf and NaN in any case; prom-client writes "Nan".
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?|[+-]?inf(?:inity)?|nan)$/i;

/** The families a sample name may belong to: itself, or a histogram's or summary's series. */
function familyNames(sample: string): string[] {
  const names = [sample];
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (sample.endsWith(suffix)) names.push(sample.slice(0, -suffix.length));
  }
  return names;
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest !== '') {
    const match = LABEL_PAIR.exec(rest);
    if (match === null) throw new Error(`line ${line}: bad labels {${text}}`);
    const [whole, name, raw] = match as unknown as [string, string, string];
    if (name in labels) throw new Error(`line ${line}: label ${name} twice`);
    labels[name] = raw.replace(/\\(["\\n])/g, (_m, ch: string) => (ch === 'n' ? '\n' : ch));
    rest = rest.slice(whole.length);
  }
  return labels;
}

function parseValue(text: string, line: number): number {
  if (!VALUE.test(text)) throw new Error(`line ${line}: bad value ${text}`);
  if (/inf/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  return /nan/i.test(text) ? NaN : Number(text);
}

/** Checks what the format promises of a histogram: cumulative buckets, +Inf equal to _count. */
function checkHistogram(family: MetricFamily): void {
  const groups = new Map<string, Sample[]>();
  for (const sample of family.samples) {
    if (sample.name !== `${family.name}_bucket`) continue;
    const { le, ...rest } = sample.labels;
    if (le === undefined) throw new Error(`${family.name}: a bucket without le`);
    const key = JSON.stringify(rest);
    groups.set(key, [...(groups.get(key) ?? []), sample]);
  }
  for (const [key, buckets] of groups) {
    const bounds = buckets.map((b) => parseValue(b.labels.le as string, 0));
    for (let i = 1; i < buckets.length; i++) {
      if (!((bounds[i] as number) > (bounds[i - 1] as number))) throw new Error(`${family.name}: le not increasing`);
      if ((buckets[i] as Sample).value < (buckets[i - 1] as Sample).value) {
        throw new Error(`${family.name}${key}: bucket counts not cumulative`);
      }
    }
    if (bounds[bounds.length - 1] !== Infinity) throw new Error(`${family.name}: no +Inf bucket`);
    const count = family.samples.find(
      (s) => s.name === `${family.name}_count` && JSON.stringify(s.labels) === key,
    )?.value;
    if (count !== (buckets[buckets.length - 1] as Sample).value) throw new Error(`${family.name}: +Inf != _count`);
  }
}

/** Parses the whole text; every sample must belong to a family declared with # TYPE before it. */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (!text.endsWith('\n')) throw new Error('the text must end with a newline');
  const families = new Map<string, MetricFamily>();
  const helps = new Map<string, string>();
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((content, index) => {
    const line = index + 1;
    if (content === '') return;
    let match: RegExpExecArray | null;
    if ((match = HELP_LINE.exec(content)) !== null) {
      helps.set(match[1] as string, match[2] as string);
    } else if ((match = TYPE_LINE.exec(content)) !== null) {
      const name = match[1] as string;
      if (families.has(name)) throw new Error(`line ${line}: # TYPE ${name} twice`);
      families.set(name, { name, type: match[2] as MetricType, help: helps.get(name) ?? '', samples: [] });
    } else if (content.startsWith('#')) {
      throw new Error(`line ${line}: unknown comment ${content}`);
    } else if ((match = SAMPLE_LINE.exec(content)) !== null) {
      const name = match[1] as string;
      const family = familyNames(name)
        .map((n) => families.get(n))
        .find((f) => f !== undefined && (f.name === name || f.type === 'histogram' || f.type === 'summary'));
      if (family === undefined) throw new Error(`line ${line}: ${name} has no # TYPE before it`);
      family.samples.push({
        name,
        labels: parseLabels(match[2] ?? '', line),
        value: parseValue(match[3] as string, line),
      });
    } else {
      throw new Error(`line ${line}: not a sample: ${content}`);
    }
  });
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

/** The value of one sample: `name` with exactly `labels`; undefined when there is none. */
export function sampleValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const family of familyNames(name).map((n) => families.get(n))) {
    const sample = family?.samples.find(
      (s) =>
        s.name === name &&
        Object.keys(s.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
    if (sample !== undefined) return sample.value;
  }
  return undefined;
}
