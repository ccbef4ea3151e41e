/** Parsed exposition: value of each series line, by the line's name+labels text. */
export function parseExposition(body: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of the series of `name` whose labels include every `match` pair. */
export function sample(series: Map<string, number>, name: string, match: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const [key, value] of series) {
    const brace = key.indexOf('{');
    const n = brace < 0 ? key : key.slice(0, brace);
    if (n !== name) continue;
    const labels = brace < 0 ? '' : key.slice(brace);
    if (Object.entries(match).every(([k, v]) => labels.includes(`${k}="${v}"`))) total = (total ?? 0) + value;
  }
  return total;
}

/** `promtool check metrics` on a body: its exit code and whatever it printed. */
export { promtoolRun as promtoolCheck } from '../support/metrics.js';
