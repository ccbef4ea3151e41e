import { SvidscopeError } from './errors/catalog.js';

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Parses a duration into seconds: a number (seconds) or a string such as "90s", "5m", "1h30m", "7d".
 * Config files and flags share this one form.
 */
export function parseDurationSeconds(value: unknown, keyPath: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new SvidscopeError('config-invalid', `${keyPath}: duration must be a non-negative number of seconds`);
    return value;
  }
  if (typeof value !== 'string' || value.trim() === '') {
    throw new SvidscopeError('config-invalid', `${keyPath}: expected a duration such as "30s", "5m" or "24h"`);
  }
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  let total = 0;
  let rest = text;
  const part = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/;
  while (rest.length > 0) {
    const m = part.exec(rest);
    if (!m) throw new SvidscopeError('config-invalid', `${keyPath}: "${value}" is not a duration (use e.g. "30s", "5m", "1h30m", "7d")`);
    total += Number(m[1]) * UNITS[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
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
