import { shown } from './config/shown.js';
import { SvidscopeError } from './errors/catalog.js';

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const PART = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/;

/** The grammar below, scaled by `units` (the size of each unit in the result's unit). */
function parse(value: unknown, units: Record<string, number>): number | undefined {
  const perSecond = units.s;
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * perSecond : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * perSecond;
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const m = PART.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * units[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
}

/**
 * The one duration grammar of config files, flags, experiments and Prometheus settings, in
 * milliseconds: a non-negative number (seconds), a numeric string (seconds), or one or more
 * `<number><unit>` parts with units ms, s, m, h, d, w — "500ms", "30s", "5m", "1h30m", "7d", "2w".
 * Returns undefined for anything else, for callers that collect problems instead of throwing.
 */
export function tryParseDurationMs(value: unknown): number | undefined {
  return parse(value, UNIT_MS);
}

/** The same grammar in seconds, undefined for anything else. */
export function tryParseDurationSeconds(value: unknown): number | undefined {
  return parse(value, UNIT_SECONDS);
}

/** `tryParseDurationMs`, failing with config-invalid naming the key path (or flag). */
export function parseDurationMs(value: unknown, keyPath: string): number {
  return parsed(parse(value, UNIT_MS), value, keyPath);
}

/** The same grammar in seconds, the unit of most settings. */
export function parseDurationSeconds(value: unknown, keyPath: string): number {
  return parsed(parse(value, UNIT_SECONDS), value, keyPath);
}

/** The one wording of a value outside the grammar, for flags and config readers alike. */
export function durationProblem(value: unknown): string {
  const got = value === undefined ? '' : ` (got ${shown(value)})`;
  return `expected a duration such as 500ms, 30s, 1h30m or 7d${got}`;
}

function parsed(result: number | undefined, value: unknown, keyPath: string): number {
  if (result !== undefined) return result;
  throw new SvidscopeError('config-invalid', `${keyPath}: ${durationProblem(value)}`);
}

/** Formats seconds compactly for logs and CLI output: 86400 -> "24h", 90 -> "1m30s". */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  let rest = Math.round(seconds);
  const out: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      out.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return out.join('') || `${seconds}s`;
}
