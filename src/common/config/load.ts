import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { durationProblem, tryParseDurationMs, tryParseDurationSeconds } from '../duration.js';
import { SvidscopeError } from '../errors/catalog.js';
import { shown } from './shown.js';

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
 * What a reader does with a problem: `first` throws config-invalid at once (a binary's config: the
 * process must not start), `collect` records it and reading goes on, so one report lists every
 * problem (chaos experiments, validated in full before anything runs); `done()` throws it.
 */
export type ConfigPolicy = 'first' | 'collect';

/** Shared by a reader and every reader it hands out for a section or list item. */
interface ProblemSink {
  readonly policy: ConfigPolicy;
  readonly problems: string[];
  /** The error a collecting reader throws with every problem found. */
  readonly toError: (problems: readonly string[]) => Error;
}

type Doc = Record<string, unknown>;

const isMapping = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);
const isMissing = (v: unknown): v is undefined | null => v === undefined || v === null;

/** Bounds in the duration grammar ("10ms", "1s"), quoted as written in the problem. */
export interface DurationBounds {
  min?: string;
  max?: string;
  /** Why the bound exists, appended to the problem. */
  why?: string;
}

/**
 * Typed readers over an untyped config object: the one config vocabulary of the project. Each
 * problem names its key path (`server.ca.ttl`, `method[2].agent`) and uses one wording per kind
 * of problem: "expected a string (got 5)", "must be one of a, b (got \"x\")", "is required",
 * "unknown key". Unknown keys are reported too, because a misspelt key silently falling back to its
 * default is the worst kind of config bug. With the `collect` policy a failed read returns its
 * fallback (or an empty value) and the problem waits for `done()`.
 */
export class ConfigReader {
  private readonly seen = new Set<string>();
  private readonly doc: Doc;

  constructor(doc: Doc, private readonly prefix = '', private readonly sink: ProblemSink = firstProblem()) {
    this.doc = doc;
  }

  /**
   * A reader that collects every problem; `done()` throws `toError(problems)` when there is one.
   * A document that is not a mapping is itself a problem, read as an empty one.
   */
  static collecting(doc: unknown, toError: (problems: readonly string[]) => Error): ConfigReader {
    const reader = new ConfigReader(isMapping(doc) ? doc : {}, '', { policy: 'collect', problems: [], toError });
    if (!isMapping(doc)) reader.report('', `expected a mapping at the top level (got ${shown(doc)})`);
    return reader;
  }

  /** Every problem collected so far (always empty under the `first` policy). */
  get problems(): readonly string[] {
    return this.sink.problems;
  }

  /** The key path of `key` under this reader; `''` is the reader's own path. */
  path(key: string): string {
    if (key === '') return this.prefix;
    if (key.startsWith('[')) return `${this.prefix}${key}`;
    return this.prefix ? `${this.prefix}.${key}` : key;
  }
  private get(key: string): unknown {
    this.seen.add(key);
    return this.doc[key];
  }

  /** Records a problem at `key` and goes on (throws at once under the `first` policy). */
  report(key: string, reason: string): void {
    const where = this.path(key);
    const problem = where ? `${where}: ${reason}` : reason;
    if (this.sink.policy === 'first') throw new SvidscopeError('config-invalid', `config: ${problem}`);
    this.sink.problems.push(problem);
  }
  /** A problem after which reading cannot go on: throws, with every problem collected so far. */
  fail(key: string, reason: string): never {
    this.report(key, reason);
    throw this.sink.toError(this.sink.problems);
  }
  /** Ends a collecting read: throws every problem at once, if there is one. */
  done(): void {
    if (this.sink.problems.length > 0) throw this.sink.toError(this.sink.problems);
  }

  string(key: string, fallback: string): string {
    const v = this.get(key);
    if (isMissing(v)) return fallback;
    if (typeof v !== 'string' && typeof v !== 'number') {
      this.report(key, `expected a string (got ${shown(v)})`);
      return fallback;
    }
    return String(v);
  }
  /** A string, or undefined when missing or empty. */
  optionalString(key: string): string | undefined {
    const v = this.get(key);
    if (isMissing(v) || v === '') return undefined;
    if (typeof v !== 'string') {
      this.report(key, `expected a string (got ${shown(v)})`);
      return undefined;
    }
    return v;
  }
  /** A string with no default: missing or empty is a problem, with `hint` saying what to set ('' when collecting). */
  requiredString(key: string, hint?: string): string {
    const v = this.optionalString(key);
    if (v !== undefined) return v;
    if (!this.problemAt(key)) this.report(key, required(hint));
    return '';
  }
  /** `parse(text)` with its error reported at the key path; a parse that fails stops the read. */
  parsed<T>(key: string, text: string, parse: (text: string) => T): T {
    try {
      return parse(text);
    } catch (err) {
      return this.fail(key, (err as Error).message);
    }
  }
  /** A number (a numeric string counts), optionally a whole one, within bounds; `unit` is named in the bounds problem. */
  number(key: string, fallback: number, bounds: { min?: number; max?: number; integer?: boolean; unit?: string } = {}): number {
    const v = this.get(key);
    if (isMissing(v)) return fallback;
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n)) {
      this.report(key, `expected a number (got ${shown(v)})`);
      return fallback;
    }
    if (bounds.integer && !Number.isInteger(n)) {
      this.report(key, `expected a whole number (got ${shown(v)})`);
      return fallback;
    }
    const { min, max } = bounds;
    if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
      const unit = bounds.unit ? ` ${bounds.unit}` : '';
      const range = min !== undefined && max !== undefined ? `from ${min} to ${max}` : min !== undefined ? `at least ${min}` : `at most ${max}`;
      this.report(key, `must be ${range}${unit} (got ${shown(v)})`);
      return fallback;
    }
    return n;
  }
  boolean(key: string, fallback: boolean): boolean {
    const v = this.get(key);
    if (isMissing(v)) return fallback;
    if (typeof v !== 'boolean') {
      this.report(key, `expected true or false (got ${shown(v)})`);
      return fallback;
    }
    return v;
  }
  /** One of `allowed`; a flag's `override`, when given, wins over the file and is checked the same way. */
  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T, override?: string): T {
    const fromFile = this.get(key); // read even when overridden, so the key is not "unknown"
    const v = override ?? (isMissing(fromFile) ? fallback : fromFile);
    if (allowed.includes(v as T)) return v as T;
    this.report(key, `must be one of ${allowed.join(', ')} (got ${shown(v)})`);
    return fallback;
  }
  /** One of `allowed`, with no default: undefined (after a problem) when missing or not allowed. */
  requiredOneOf<T extends string>(key: string, allowed: readonly T[]): T | undefined {
    const v = this.get(key);
    if (isMissing(v)) {
      this.report(key, required(`one of ${allowed.join(', ')}`));
      return undefined;
    }
    if (allowed.includes(v as T)) return v as T;
    this.report(key, `must be one of ${allowed.join(', ')} (got ${shown(v)})`);
    return undefined;
  }
  /** A duration in seconds (the grammar of common/duration.ts); the fallback in seconds or in the grammar. */
  duration(key: string, fallback: number | string, bounds: DurationBounds = {}): number {
    return this.durationIn(key, fallback, tryParseDurationSeconds, bounds);
  }
  /** A duration in milliseconds, the fallback in milliseconds or in the grammar; with none, a missing one is a problem (and reads as 0). */
  durationMs(key: string, fallback?: number | string, bounds: DurationBounds = {}): number {
    if (fallback === undefined && isMissing(this.doc[key])) {
      this.get(key);
      this.report(key, required('a duration such as 30s'));
      return 0;
    }
    return this.durationIn(key, fallback ?? 0, tryParseDurationMs, bounds);
  }
  private durationIn(key: string, fallback: number | string, parse: (v: unknown) => number | undefined, bounds: DurationBounds): number {
    const v = this.get(key);
    const dflt = typeof fallback === 'number' ? fallback : (parse(fallback) ?? 0);
    if (isMissing(v)) return dflt;
    const value = parse(v);
    if (value === undefined) {
      this.report(key, durationProblem(v));
      return dflt;
    }
    const min = bounds.min === undefined ? undefined : parse(bounds.min);
    const max = bounds.max === undefined ? undefined : parse(bounds.max);
    if ((min !== undefined && value < min) || (max !== undefined && value > max)) {
      const range = min !== undefined && max !== undefined ? `from ${bounds.min} to ${bounds.max}` : min !== undefined ? `at least ${bounds.min}` : `at most ${bounds.max}`;
      this.report(key, `must be ${range}${bounds.why ? `, ${bounds.why}` : ''} (got ${shown(v)})`);
      return dflt;
    }
    return value;
  }
  /** The keys of this mapping, for sections whose keys are names (modules, labels). */
  keys(): string[] {
    return Object.keys(this.doc);
  }
  /** Raw access for values with their own parser; the parser names the key path. */
  raw(key: string): { value: unknown; path: string } {
    return { value: this.get(key), path: this.path(key) };
  }
  /** The raw items of a list (empty when missing); `required` makes a missing list a problem. */
  list(key: string, opts: { required?: string } = {}): unknown[] {
    const v = this.get(key);
    if (isMissing(v)) {
      if (opts.required !== undefined) this.report(key, required(opts.required || undefined));
      return [];
    }
    if (!Array.isArray(v)) {
      this.report(key, `expected a list (got ${shown(v)})`);
      return [];
    }
    return v;
  }
  /** A list of strings (empty when missing). */
  strings(key: string): string[] {
    const items = this.list(key);
    if (items.some((x) => typeof x !== 'string')) this.report(key, `expected a list of strings (got ${shown(items)})`);
    return items.filter((x): x is string => typeof x === 'string');
  }
  /** One reader per item of a list of mappings, at `key[i]`; an item that is not a mapping is a problem and is skipped. */
  items(key: string, opts: { required?: string } = {}): ConfigReader[] {
    const out: ConfigReader[] = [];
    this.list(key, opts).forEach((item, i) => {
      if (isMapping(item)) out.push(new ConfigReader(item, this.path(`${key}[${i}]`), this.sink));
      else this.report(`${key}[${i}]`, `expected a mapping (got ${shown(item)})`);
    });
    return out;
  }
  /** The mapping under `key` (an empty one when missing, or after a problem). */
  section(key: string): ConfigReader {
    const v = this.get(key);
    if (isMissing(v)) return new ConfigReader({}, this.path(key), this.sink);
    if (!isMapping(v)) {
      this.report(key, `expected a mapping (got ${shown(v)})`);
      return new ConfigReader({}, this.path(key), this.sink);
    }
    return new ConfigReader(v, this.path(key), this.sink);
  }
  /** Reports the keys nobody read: call after reading a section. */
  rejectUnknown(): void {
    const known = [...this.seen].sort().join(', ');
    for (const key of Object.keys(this.doc)) {
      if (!this.seen.has(key)) this.report(key, `unknown key (known here: ${known || 'none'})`);
    }
  }

  private problemAt(key: string): boolean {
    const where = `${this.path(key)}: `;
    return this.sink.problems.some((p) => p.startsWith(where));
  }
}

function required(hint: string | undefined): string {
  return hint ? `is required (${hint})` : 'is required';
}

function firstProblem(): ProblemSink {
  return { policy: 'first', problems: [], toError: (problems) => new SvidscopeError('config-invalid', `config: ${problems.join('; ')}`) };
}
