/**
 * A strict OpenMetrics 1.0 text parser for tests: the ABNF of the specification plus the rules of
 * its metric types that a scrape can break (counter families declared without `_total` and sampled
 * with it, histogram buckets, `# EOF` last, exemplars only where the format allows them). Returns
 * the problems found, one line each; an empty list means the exposition is valid. The text format
 * has its own judge, `promtool check metrics` (support/metrics.ts).
 */
import { promtoolCheck } from './metrics.js';

const TYPES = ['counter', 'gauge', 'histogram', 'gaugehistogram', 'stateset', 'info', 'summary', 'unknown'] as const;
type FamilyType = (typeof TYPES)[number];

/** The sample name suffixes each type allows after its family name. */
const SUFFIXES: Record<FamilyType, readonly string[]> = {
  counter: ['_total', '_created'],
  gauge: [''],
  histogram: ['_bucket', '_count', '_sum', '_created'],
  gaugehistogram: ['_bucket', '_gcount', '_gsum'],
  stateset: [''],
  info: ['_info'],
  summary: ['', '_count', '_sum', '_created'],
  unknown: [''],
};

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const REAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function parseNumber(s: string): number | undefined {
  if (REAL.test(s)) return Number(s);
  if (/^[+-]?inf(inity)?$/i.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/^nan$/i.test(s)) return NaN;
  return undefined;
}

/** Whether `s` is an escaped-string: no bare `"`, every backslash starts an escape. */
function isEscapedString(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '"') return false;
    if (s[i] === '\\') {
      if (i + 1 >= s.length) return false;
      i++;
    }
  }
  return true;
}

/** Reads `{name="value",…}` at `pos`; returns the labels and the position after `}`, or an error. */
function readLabels(line: string, pos: number): { labels: Map<string, string>; end: number } | string {
  const labels = new Map<string, string>();
  let i = pos + 1;
  if (line[i] === '}') return { labels, end: i + 1 };
  for (;;) {
    const eq = line.indexOf('=', i);
    if (eq < 0) return 'label without =';
    const name = line.slice(i, eq);
    if (!LABEL_NAME.test(name)) return `bad label name ${JSON.stringify(name)}`;
    if (line[eq + 1] !== '"') return `label ${name}: value not quoted`;
    let j = eq + 2;
    let value = '';
    for (; j < line.length && line[j] !== '"'; j++) {
      if (line[j] === '\\') {
        const next = line[++j];
        if (next === undefined) return `label ${name}: dangling backslash`;
        value += next === 'n' ? '\n' : next;
      } else value += line[j];
    }
    if (j >= line.length) return `label ${name}: unterminated value`;
    if (labels.has(name)) return `label ${name} twice`;
    labels.set(name, value);
    i = j + 1;
    if (line[i] === '}') return { labels, end: i + 1 };
    if (line[i] !== ',') return `expected , or } after label ${name}`;
    i++;
  }
}

interface Sample {
  name: string;
  labels: Map<string, string>;
  value: number;
  exemplar: boolean;
}

interface Family {
  name: string;
  type: FamilyType;
  typed: boolean;
  meta: Set<string>;
  samples: Sample[];
}

const key = (labels: Map<string, string>, without?: string) => [...labels].filter(([k]) => k !== without).sort().map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',');

/** Per-type rules that need a whole family: histogram buckets, counter totals, no interleaving. */
function checkFamily(f: Family, problems: string[]): void {
  const seen = new Set<string>();
  const points: string[] = [];
  for (const s of f.samples) {
    const id = `${s.name}{${key(s.labels)}}`;
    if (seen.has(id)) problems.push(`${f.name}: sample ${id} twice`);
    seen.add(id);
    const point = key(s.labels, f.type === 'histogram' || f.type === 'gaugehistogram' ? 'le' : f.type === 'summary' ? 'quantile' : undefined);
    if (points.length && points[points.length - 1] !== point && points.includes(point)) problems.push(`${f.name}: metric {${point}} interleaved with another`);
    if (points[points.length - 1] !== point) points.push(point);
    if (f.type === 'counter' && s.name.endsWith('_total') && (Number.isNaN(s.value) || s.value < 0)) problems.push(`${s.name}: counter total ${s.value}`);
  }
  if (f.type !== 'histogram' && f.type !== 'gaugehistogram') return;
  const count = f.type === 'histogram' ? '_count' : '_gcount';
  const sum = f.type === 'histogram' ? '_sum' : '_gsum';
  for (const point of points) {
    const of = (suffix: string) => f.samples.filter((s) => s.name === f.name + suffix && key(s.labels, 'le') === point);
    const buckets = of('_bucket');
    if (buckets.length === 0) {
      problems.push(`${f.name}{${point}}: no buckets`);
      continue;
    }
    let lastLe = -Infinity;
    let lastValue = 0;
    for (const b of buckets) {
      const le = parseNumber(b.labels.get('le') ?? '');
      if (le === undefined || Number.isNaN(le)) problems.push(`${f.name}{${point}}: bucket le ${JSON.stringify(b.labels.get('le'))}`);
      else if (le <= lastLe) problems.push(`${f.name}{${point}}: buckets not in increasing le order`);
      else lastLe = le;
      if (!Number.isInteger(b.value) || b.value < 0) problems.push(`${f.name}{${point}}: bucket value ${b.value}`);
      if (b.value < lastValue) problems.push(`${f.name}{${point}}: buckets not cumulative`);
      lastValue = b.value;
    }
    if (lastLe !== Infinity) problems.push(`${f.name}{${point}}: no +Inf bucket`);
    const counts = of(count);
    const sums = of(sum);
    if (counts.length !== sums.length) problems.push(`${f.name}{${point}}: ${count} without ${sum} or the reverse`);
    if (counts[0] && counts[0].value !== lastValue) problems.push(`${f.name}{${point}}: ${count} ${counts[0].value} differs from the +Inf bucket ${lastValue}`);
    if (f.type === 'histogram' && sums[0]) {
      if (Number.isNaN(sums[0].value)) problems.push(`${f.name}{${point}}: sum is NaN`);
      const negativeBuckets = buckets.some((b) => Number(b.labels.get('le')) < 0);
      if (negativeBuckets) problems.push(`${f.name}{${point}}: a sum with negative buckets`);
      else if (sums[0].value < 0) problems.push(`${f.name}{${point}}: negative sum ${sums[0].value}`);
    }
  }
}

/** Problems of an OpenMetrics 1.0 text exposition; empty when it is valid. */
export function openMetricsProblems(body: string): string[] {
  const problems: string[] = [];
  if (body.includes('\r')) problems.push('carriage return in the exposition');
  const lines = body.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines[lines.length - 1] !== '# EOF') problems.push(`last line is ${JSON.stringify(lines[lines.length - 1] ?? '')}, not # EOF`);
  else lines.pop();
  const families = new Map<string, Family>();
  let current: Family | undefined;
  const open = (name: string, lineNo: number): Family => {
    if (current?.name === name) return current;
    if (current) checkFamily(current, problems);
    if (families.has(name)) problems.push(`line ${lineNo}: family ${name} appears twice (families must not be interleaved)`);
    current = { name, type: 'unknown', typed: false, meta: new Set(), samples: [] };
    families.set(name, current);
    return current;
  };
  lines.forEach((line, idx) => {
    const n = idx + 1;
    const bad = (why: string): void => {
      problems.push(`line ${n}: ${why}: ${line}`);
    };
    if (line === '') return bad('empty line');
    if (line.startsWith('#')) {
      const m = /^# (TYPE|HELP|UNIT) ([^ ]+)(?: (.*))?$/.exec(line);
      if (!m) return bad(line === '# EOF' ? '# EOF before the end' : 'not a TYPE, HELP or UNIT line');
      const [, kind, name, rest = ''] = m;
      if (!METRIC_NAME.test(name)) return bad('bad metric name');
      if (line.endsWith(name) && line.length === `# ${kind} ${name}`.length) return bad('metadata without a value');
      const f = open(name, n);
      if (f.samples.length) bad(`${kind} after samples of ${name}`);
      if (f.meta.has(kind)) bad(`second ${kind} for ${name}`);
      f.meta.add(kind);
      if (kind === 'TYPE') {
        if (!(TYPES as readonly string[]).includes(rest)) return bad(`unknown type ${rest}`);
        f.type = rest as FamilyType;
        f.typed = true;
        if (f.type === 'counter' && name.endsWith('_total')) bad('counter family named with _total (its samples carry the suffix)');
      } else if (kind === 'HELP') {
        if (!isEscapedString(rest)) bad('HELP is not an escaped string (bare " or dangling backslash)');
      } else if (rest !== '' && (!/^[a-zA-Z0-9_:]+$/.test(rest) || !name.endsWith(`_${rest}`))) bad(`UNIT ${rest} is not the suffix of ${name}`);
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) return bad('no metric name');
    const name = nameMatch[0];
    let pos = name.length;
    let labels = new Map<string, string>();
    if (line[pos] === '{') {
      const r = readLabels(line, pos);
      if (typeof r === 'string') return bad(r);
      ({ labels } = r);
      pos = r.end;
    }
    const rest = line.slice(pos);
    const hash = rest.indexOf(' # ');
    const main = hash < 0 ? rest : rest.slice(0, hash);
    const exemplar = hash < 0 ? undefined : rest.slice(hash + 3);
    const parts = main.split(' ');
    if (parts[0] !== '' || parts.length < 2 || parts.length > 3) return bad('expected " value [timestamp]"');
    const value = parseNumber(parts[1]);
    if (value === undefined) return bad(`bad value ${parts[1]}`);
    if (parts[2] !== undefined && !REAL.test(parts[2])) return bad(`bad timestamp ${parts[2]}`);
    // The family: the current one if the name is one of its samples, else a new family without TYPE.
    let f = current;
    const fits = (fam: Family | undefined) => fam && SUFFIXES[fam.type].some((s) => name === fam.name + s);
    if (!fits(f)) {
      const earlier = [...families.values()].find((fam) => fam !== current && fits(fam));
      if (earlier) return bad(`sample of family ${earlier.name} after another family began (families must not be interleaved)`);
      f = open(name, n);
      if (!fits(f)) return bad(`sample name does not belong to family ${f.name}`);
    }
    const suffix = name.slice(f!.name.length);
    if (suffix === '_bucket' && !labels.has('le')) bad('bucket without le');
    if (suffix !== '_bucket' && labels.has('le') && (f!.type === 'histogram' || f!.type === 'gaugehistogram')) bad('le label outside a bucket');
    if (exemplar !== undefined) {
      const ok = (f!.type === 'counter' && suffix === '_total') || ((f!.type === 'histogram' || f!.type === 'gaugehistogram') && suffix === '_bucket');
      if (!ok) bad('exemplar on a sample that cannot have one');
      if (!exemplar.startsWith('{')) return bad('exemplar without a label set');
      const r = readLabels(exemplar, 0);
      if (typeof r === 'string') return bad(`exemplar: ${r}`);
      const chars = [...r.labels].reduce((a, [k, v]) => a + [...k].length + [...v].length, 0);
      if (chars > 128) bad(`exemplar label set of ${chars} characters (at most 128)`);
      const tail = exemplar.slice(r.end).split(' ');
      if (tail[0] !== '' || tail.length < 2 || tail.length > 3 || parseNumber(tail[1]) === undefined || (tail[2] !== undefined && !REAL.test(tail[2]))) bad('exemplar: expected " value [timestamp]" after the labels');
      const le = parseNumber(labels.get('le') ?? '');
      if (suffix === '_bucket' && le !== undefined && Number(tail[1]) > le) bad('exemplar value above its bucket');
    }
    f!.samples.push({ name, labels, value, exemplar: exemplar !== undefined });
  });
  if (current) checkFamily(current, problems);
  return problems;
}

export type ScrapeFormat = 'text' | 'openmetrics';

/** What Prometheus 2.42 sends when it prefers OpenMetrics, and what a text-only scraper (curl, promtool users) sends. */
export const ACCEPT: Record<ScrapeFormat, string> = {
  openmetrics: 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1',
  text: 'text/plain',
};

export const CONTENT_TYPE: Record<ScrapeFormat, string> = {
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
  text: 'text/plain; version=0.0.4; charset=utf-8',
};

/**
 * Judges one answer by the format its Content-Type announces: OpenMetrics by the parser above,
 * text by promtool (which also rejects exemplars, OpenMetrics-only syntax). Empty when valid.
 */
export async function expositionProblems(contentType: string | null, body: string): Promise<string> {
  if (contentType === CONTENT_TYPE.openmetrics) return openMetricsProblems(body).join('\n');
  if (contentType === CONTENT_TYPE.text) return promtoolCheck(body);
  return `unexpected content-type ${contentType}`;
}

/** One scrape asking for `format` the way its scrapers do; the answer's Content-Type and body. */
export async function scrapeAs(url: string, format: ScrapeFormat): Promise<{ contentType: string | null; body: string }> {
  const res = await fetch(url, { headers: { accept: ACCEPT[format] }, signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`scrape ${url}: ${res.status}`);
  return { contentType: res.headers.get('content-type'), body: await res.text() };
}
