import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseDurationSeconds } from '../duration.js';
import { SvidscopeError } from '../errors/catalog.js';

/** Reads a YAML config file into a plain object; a missing or malformed file fails with its path. */
export function readYamlConfig(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SvidscopeError('config-invalid', `config: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new SvidscopeError('config-invalid', `config: ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new SvidscopeError('config-invalid', `config: ${file} must hold a mapping at the top level`);
  return doc as Record<string, unknown>;
}

/**
 * Typed readers over an untyped config object. Each names the key path in its error, so a bad
 * config fails at start with "server.ca.ttl: expected …". Unknown keys are reported too, because a
 * misspelt key silently falling back to its default is the worst kind of config bug.
 */
export class ConfigReader {
  private readonly seen = new Set<string>();
  constructor(
    private readonly doc: Record<string, unknown>,
    private readonly prefix = '',
  ) {}

  private path(key: string): string {
    return this.prefix ? `${this.prefix}.${key}` : key;
  }
  private get(key: string): unknown {
    this.seen.add(key);
    return this.doc[key];
  }
  fail(key: string, reason: string): never {
    throw new SvidscopeError('config-invalid', `config: ${this.path(key)}: ${reason}`);
  }
  string(key: string, fallback: string): string {
    const v = this.get(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string' && typeof v !== 'number') this.fail(key, 'expected a string');
    return String(v);
  }
  optionalString(key: string): string | undefined {
    const v = this.get(key);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') this.fail(key, 'expected a string');
    return v;
  }
  /** A string with no default: missing or empty fails, with `hint` saying what to set. */
  requiredString(key: string, hint: string): string {
    return this.optionalString(key) ?? this.fail(key, `required: ${hint}`);
  }
  /** `parse(text)` with its error reported at the key path. */
  parsed<T>(key: string, text: string, parse: (text: string) => T): T {
    try {
      return parse(text);
    } catch (err) {
      return this.fail(key, (err as Error).message);
    }
  }
  number(key: string, fallback: number, bounds: { min?: number; max?: number } = {}): number {
    const v = this.get(key);
    if (v === undefined || v === null) return fallback;
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n)) this.fail(key, 'expected a number');
    if (bounds.min !== undefined && n < bounds.min) this.fail(key, `must be at least ${bounds.min}`);
    if (bounds.max !== undefined && n > bounds.max) this.fail(key, `must be at most ${bounds.max}`);
    return n;
  }
  boolean(key: string, fallback: boolean): boolean {
    const v = this.get(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.fail(key, 'expected true or false');
    return v;
  }
  /** One of `allowed`; a flag's `override`, when given, wins over the file and is checked the same way. */
  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T, override?: string): T {
    const fromFile = this.string(key, fallback); // read even when overridden, so the key is not "unknown"
    const v = override ?? fromFile;
    if (!allowed.includes(v as T)) this.fail(key, `must be one of ${allowed.join(', ')}`);
    return v as T;
  }
  /** A duration in seconds (the grammar of common/duration.ts); the fallback in the same grammar. */
  duration(key: string, fallback: number | string): number {
    const v = this.get(key);
    return parseDurationSeconds(v ?? fallback, `config: ${this.path(key)}`);
  }
  /** Raw access for values with their own parser; the parser names the key path. */
  raw(key: string): { value: unknown; path: string } {
    return { value: this.get(key), path: this.path(key) };
  }
  section(key: string): ConfigReader {
    const v = this.get(key);
    if (v === undefined || v === null) return new ConfigReader({}, this.path(key));
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(key, 'expected a mapping');
    return new ConfigReader(v as Record<string, unknown>, this.path(key));
  }
  /** Fails on keys nobody read: call after reading a section. */
  rejectUnknown(): void {
    for (const key of Object.keys(this.doc)) {
      if (!this.seen.has(key)) this.fail(key, 'unknown key (check the spelling against the README)');
    }
  }
}
