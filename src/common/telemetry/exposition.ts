/**
 * The one place that turns metrics into a scrape answer: negotiates the format from the Accept
 * header and renders prom-client registries (and hand-written families) in it.
 *
 * prom-client keeps the format as registry state (`setContentType`) and, when it renders
 * OpenMetrics, renames counter objects for good (`x_total` becomes `x`), so a registry shared by
 * two scrapers answered the second in the first one's dialect. Here the format is a value of each
 * scrape: registries are only read (`metric.get()`), never switched or renamed, and nothing is
 * carried from one scrape to the next.
 */
import type { Registry } from 'prom-client';
import { SvidscopeError } from '../errors/catalog.js';

export type ExpositionFormat = 'text' | 'openmetrics';

export interface Exposition {
  readonly format: ExpositionFormat;
  /** The Content-Type header of the answer. */
  readonly contentType: string;
}

export const TEXT_EXPOSITION: Exposition = { format: 'text', contentType: 'text/plain; version=0.0.4; charset=utf-8' };
export const OPENMETRICS_EXPOSITION: Exposition = { format: 'openmetrics', contentType: 'application/openmetrics-text; version=1.0.0; charset=utf-8' };
/** Scrapers may ask for the draft version 0.0.1 only; what svidscope exposes reads the same in both. */
const OPENMETRICS_0_0_1: Exposition = { format: 'openmetrics', contentType: 'application/openmetrics-text; version=0.0.1; charset=utf-8' };

interface MediaRange {
  type: string;
  subtype: string;
  params: Map<string, string>;
  q: number;
  order: number;
}

function parseAccept(accept: string): MediaRange[] {
  const out: MediaRange[] = [];
  accept.split(',').forEach((part, order) => {
    const [range, ...rawParams] = part.split(';').map((s) => s.trim());
    const m = /^([a-z0-9!#$%&'*+.^_`|~-]+)\/([a-z0-9!#$%&'*+.^_`|~-]+)$/i.exec(range ?? '');
    if (!m) return;
    const params = new Map<string, string>();
    let q = 1;
    for (const p of rawParams) {
      const eq = p.indexOf('=');
      if (eq <= 0) continue;
      const key = p.slice(0, eq).trim().toLowerCase();
      const value = p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
      if (key === 'q') {
        // RFC 9110: a weight is 0 to 1 with at most three decimals; anything else is unusable.
        q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value) ? Number(value) : 0;
      } else params.set(key, value);
    }
    out.push({ type: m[1].toLowerCase(), subtype: m[2].toLowerCase(), params, q, order });
  });
  return out;
}

/** Concrete types before `type/*` before `*\/*`, then the ranges with more parameters (Prometheus' goautoneg order). */
function specificity(r: MediaRange): number {
  return (r.type === '*' ? 0 : r.subtype === '*' ? 1 : 2) * 100 + r.params.size;
}

/**
 * The format of one scrape, by Prometheus' rules (client_golang's NegotiateIncludingOpenMetrics):
 * the acceptable ranges by weight, the first that names `text/plain` (version 0.0.4 or none) or
 * `application/openmetrics-text` (version 1.0.0, 0.0.1 or none) wins; anything else, no header or
 * a header we cannot use, gets the text format. Unlike goautoneg, a range with `q=0` is refused,
 * as HTTP says. `openMetrics: false` is for endpoints that only have text to offer.
 */
export function negotiateExposition(accept: string | undefined, opts: { openMetrics?: boolean } = {}): Exposition {
  if (!accept) return TEXT_EXPOSITION;
  const ranges = parseAccept(accept)
    .filter((r) => r.q > 0)
    .sort((a, b) => b.q - a.q || specificity(b) - specificity(a) || a.order - b.order);
  for (const r of ranges) {
    const version = r.params.get('version');
    if (r.type === 'text' && r.subtype === 'plain' && (version === undefined || version === '0.0.4')) return TEXT_EXPOSITION;
    if (opts.openMetrics !== false && r.type === 'application' && r.subtype === 'openmetrics-text') {
      if (version === undefined || version === '1.0.0') return OPENMETRICS_EXPOSITION;
      if (version === '0.0.1') return OPENMETRICS_0_0_1;
    }
  }
  return TEXT_EXPOSITION;
}

/** HELP text: both formats escape backslash and newline; OpenMetrics' grammar also forbids a bare `"`. */
export function escapeHelp(help: string, format: ExpositionFormat): string {
  const s = help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  return format === 'openmetrics' ? s.replace(/"/g, '\\"') : s;
}

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export function formatSampleValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * `{k="v",…}`, or nothing for no labels. Numeric values (`le`) are written as the text format
 * writes them (`1`, not OpenMetrics' canonical `1.0`, which parsers must accept either way):
 * Prometheus 2.42 keeps label values verbatim, so a canonical form would make a bucket's series
 * depend on the format it was scraped in and miss rules that match `le="1"`.
 */
export function formatLabels(labels: Readonly<Record<string, string | number>> | undefined): string {
  let out = '';
  for (const k in labels) out += `${out ? ',' : ''}${k}="${escapeLabelValue(String(labels[k]))}"`;
  return out ? `{${out}}` : '';
}

/** One family's metadata lines; a counter is declared without `_total` in OpenMetrics. */
export function familyHeader(name: string, type: string, help: string, format: ExpositionFormat): string {
  const family = format === 'openmetrics' && type === 'counter' ? name.replace(/_total$/, '') : name;
  return `# HELP ${family} ${escapeHelp(help, format)}\n# TYPE ${family} ${type}\n`;
}

/** The samples prom-client hands out (`metric.get()`), as far as rendering needs them. */
interface MetricSnapshot {
  name: string;
  help: string;
  type: string;
  values: {
    value: number;
    labels?: Record<string, string | number>;
    metricName?: string;
    exemplar?: { labelSet: Record<string, string | number>; value: number; timestamp?: number } | null;
  }[];
}

function renderFamily(m: MetricSnapshot, format: ExpositionFormat): string {
  const om = format === 'openmetrics';
  const counter = m.type === 'counter';
  const base = counter ? m.name.replace(/_total$/, '') : m.name;
  let out = familyHeader(m.name, m.type, m.help, format);
  for (const v of m.values) {
    // OpenMetrics wants `_total` on every counter sample; the text format names the sample as declared.
    const name = om && counter ? `${base}_total` : (v.metricName ?? m.name);
    out += `${name}${formatLabels(v.labels)} ${formatSampleValue(v.value)}`;
    // Exemplars exist only in OpenMetrics (the text format has no syntax for them), on counters and buckets.
    if (om && v.exemplar && (counter || name.endsWith('_bucket'))) {
      const e = v.exemplar;
      out += ` # ${formatLabels(e.labelSet) || '{}'} ${formatSampleValue(e.value)}${e.timestamp === undefined ? '' : ` ${e.timestamp}`}`;
    }
    out += '\n';
  }
  return out;
}

/**
 * The families of one or more registries in `format`, each line ending in a newline and no
 * terminator (callers may append hand-written families, then call `endExposition`). A family name
 * present in two registries is a programming error and fails the scrape rather than hide one.
 */
export async function renderFamilies(registries: Registry | readonly Registry[], format: ExpositionFormat): Promise<string> {
  const list = Array.isArray(registries) ? registries : [registries as Registry];
  const metrics = list.flatMap((r) => r.getMetricsAsArray()) as unknown as { name: string; get(): Promise<MetricSnapshot> }[];
  const seen = new Set<string>();
  for (const m of metrics) {
    if (seen.has(m.name)) throw new SvidscopeError('internal', `metric family ${m.name} is registered twice`);
    seen.add(m.name);
  }
  const families = await Promise.all(metrics.map((m) => m.get()));
  return families.map((f) => renderFamily(f, format)).join('');
}

/** Closes an exposition: OpenMetrics ends with `# EOF`; the text format just ends. */
export function endExposition(body: string, format: ExpositionFormat): string {
  return format === 'openmetrics' ? `${body}# EOF\n` : body;
}

/** A complete answer for a scrape: registries rendered in the negotiated format. */
export async function renderExposition(registries: Registry | readonly Registry[], exposition: Exposition): Promise<string> {
  return endExposition(await renderFamilies(registries, exposition.format), exposition.format);
}
