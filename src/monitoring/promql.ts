/** Small PromQL builders shared by rules and dashboards: selectors from the config, durations. */
import type { MonitoringConfig } from './config.js';

export type Component = keyof MonitoringConfig['selectors'];

/** `{<component selector>,<extra selector>,<matchers>}` */
export function sel(c: MonitoringConfig, component: Component, ...matchers: string[]): string {
  return `{${[c.selectors[component], c.extraSelector, ...matchers].filter((m) => m !== '').join(', ')}}`;
}

/** `metric{…}` for a component. */
export function m(c: MonitoringConfig, component: Component, metric: string, ...matchers: string[]): string {
  return `${metric}${sel(c, component, ...matchers)}`;
}

/** `cluster, trust_domain[, extra…]` for `by (…)` clauses. */
export function by(c: MonitoringConfig, ...extra: string[]): string {
  return [c.clusterLabel, c.trustDomainLabel, ...extra].join(', ');
}

/** Prints a number the way a rule file should (no float noise: 14.4 * 0.001 = 0.0144). */
export function num(v: number): string {
  return String(Number(v.toPrecision(12)));
}

/** "5m" → "5 minutes", for human text in summaries and runbooks. */
export function humanDuration(seconds: number): string {
  if (seconds % 86400 === 0) return plural(seconds / 86400, 'day');
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour');
  if (seconds % 60 === 0) return plural(seconds / 60, 'minute');
  return plural(seconds, 'second');
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}
