/**
 * The narrow seam between the shared SQL store (`sql-store.ts`) and a database client. Each backend supplies
 * transactions, a dialect and its error classification; all queries are written once, with `?` placeholders.
 */
import { errorFactory, isSvidscopeError, type SvidscopeError } from '../../../common/errors/catalog.js';

export const fail = errorFactory('datastore');

export type Param = string | number | bigint | boolean | Buffer | null;
export type Row = Record<string, unknown>;

/** Statements inside one transaction. Integers may come back as number, bigint or string: convert with Number()/BigInt(). */
export interface Executor {
  all(sql: string, params?: readonly Param[]): Promise<Row[]>;
  /** Runs a statement without result rows; returns the number of rows it changed. */
  run(sql: string, params?: readonly Param[]): Promise<number>;
}

export interface Dialect {
  readonly name: 'sqlite' | 'postgres';
  /** Column type for opaque bytes. */
  readonly bytes: string;
  /** Row lock clause for read-then-write; SQLite has none because its writers are already serialized. */
  readonly forUpdate: string;
}

export type TxMode = 'read' | 'write';

export interface SqlDriver {
  readonly dialect: Dialect;
  /**
   * Runs `fn` in one transaction, committed when it resolves and rolled back when it throws. `read` gives a
   * consistent snapshot; `write` takes the write lock up front (SQLite BEGIN IMMEDIATE) so it never fails late.
   */
  transaction<T>(mode: TxMode, fn: (tx: Executor) => Promise<T>): Promise<T>;
  isUniqueViolation(err: unknown): boolean;
  /** Maps a client error that is no SvidscopeError to one (unavailable, io-error or internal). */
  classify(err: unknown): SvidscopeError;
  close(): Promise<void>;
}

/** Passes SvidscopeErrors through and classifies everything else, so callers only ever see catalogue codes. */
export function toStoreError(driver: SqlDriver, err: unknown): SvidscopeError {
  return isSvidscopeError(err) ? err : driver.classify(err);
}

/** Serializes async work: SQLite runs every transaction on one connection, which must not interleave. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** Placeholders `(?, ?), (?, ?)` for a row-value list, with the flattened parameters. */
export function pairList(pairs: readonly { type: string; value: string }[]): { sql: string; params: Param[] } {
  return {
    sql: pairs.map(() => '(?, ?)').join(', '),
    params: pairs.flatMap((p) => [p.type, p.value]),
  };
}
