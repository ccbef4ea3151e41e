import { execa } from 'execa';

/** One sample of a Prometheus text exposition. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One text-format scrape of a /metrics URL: the body, its samples and the answer's Content-Type. */
export async function scrape(url: string): Promise<{ text: string; samples: Sample[]; contentType: string | null }> {
  const res = await fetch(url, { headers: { accept: 'text/plain' }, signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`scrape ${url}: ${res.status}`);
  const text = await res.text();
  return { text, samples: parseSamples(text), contentType: res.headers.get('content-type') };
}

/** The value of one series of a scrape of `url`, named as exposed (see seriesValue). */
export async function scrapeSeries(url: string, series: string): Promise<number | undefined> {
  return seriesValue((await scrape(url)).text, series);
}

/** The value of one series, named as exposed (`name`, or `name{a="b",…}` in exposition order); undefined when absent. */
export function seriesValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1).split(' ')[0]);
}

export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

/** Sum of a family's samples whose labels include `match` (histograms: pass the `_count`/`_sum` name). */
export function total(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

/** Like total, but undefined when no sample matches: an absent series is not a zero. */
export function valueOf(samples: Sample[], name: string, match: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  return hits.length === 0 ? undefined : hits.reduce((a, s) => a + s.value, 0);
}

/** Whether a family is exposed: declared with its TYPE (a labelled counter has no series until its first event). */
export function hasFamily(text: string, name: string): boolean {
  return text.split('\n').some((l) => l.startsWith(`# TYPE ${name} `));
}

/** Runs the real `promtool check metrics` on a text exposition: its exit code and all it printed (nothing when clean). */
export async function promtoolRun(text: string): Promise<{ code: number; output: string }> {
  const r = await execa('promtool', ['check', 'metrics'], { input: text, reject: false });
  return { code: r.exitCode ?? -1, output: `${r.stdout}${r.stderr}` };
}

/** promtoolRun as one string: its complaints, empty when clean. */
export async function promtoolCheck(text: string): Promise<string> {
  const r = await promtoolRun(text);
  return r.output.trim() + (r.code === 0 ? '' : `\n(exit ${r.code})`);
}
