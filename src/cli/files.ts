import { readFileSync } from 'node:fs';
import { SvidscopeError } from '../common/errors/catalog.js';

/** Reads a file named on the command line; a missing or unreadable file is an io-error naming it. */
export function readInput(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new SvidscopeError('io-error', `cannot read ${what} ${file}: ${reason}`, { cause: err });
  }
}

/** Parses an RFC 3339 instant from --at; defaults to now. */
export function parseAt(value: string | undefined): Date {
  if (value === undefined) return new Date();
  const ms = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(ms)) throw new SvidscopeError('usage', `--at must be an RFC 3339 time such as 2030-01-01T00:00:00Z, got "${value}"`);
  return new Date(ms);
}
