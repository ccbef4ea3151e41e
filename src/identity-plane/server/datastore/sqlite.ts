/**
 * SQLite backend: the embedded default. One better-sqlite3 connection per store handle; every transaction on it
 * runs under a mutex because the async Datastore API must not interleave two transactions on one connection.
 * Other handles or processes on the same file are coordinated by SQLite's file locks and the async retry below.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { fail, Mutex, toStoreError, type Dialect, type Executor, type Param, type Row, type SqlDriver, type TxMode } from './driver.js';
import { migrate } from './migrations.js';
import { SqlDatastore } from './sql-store.js';
import type { Datastore } from './types.js';

const dialect: Dialect = { name: 'sqlite', bytes: 'BLOB', forUpdate: '' };
/** How long a transaction keeps retrying while another connection holds the lock, before `unavailable`. */
const BUSY_BUDGET_MS = 5_000;
const isBusy = (err: unknown) => String((err as { code?: unknown })?.code ?? '').startsWith('SQLITE_BUSY');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface SqliteConfig {
  /** Database file; its directory is created if missing. */
  readonly path: string;
}

// better-sqlite3 binds no booleans; everything else maps directly.
const bind = (params: readonly Param[]) => params.map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p));

class SqliteDriver implements SqlDriver {
  readonly dialect = dialect;
  private readonly mutex = new Mutex();
  private readonly statements = new Map<string, Database.Statement>();
  private readonly executor: Executor;

  constructor(private readonly db: Database.Database) {
    this.executor = {
      all: async (sql, params = []) => this.prepare(sql).all(...bind(params)) as Row[],
      run: async (sql, params = []) => this.prepare(sql).run(...bind(params)).changes,
    };
  }

  private prepare(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      // 64-bit integers come back as bigint so bundle sequences above 2^53 survive; the store converts.
      stmt = this.db.prepare(sql);
      if (stmt.reader) stmt.safeIntegers(true);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  transaction<T>(mode: TxMode, fn: (tx: Executor) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      // SQLite's own busy handler sleeps synchronously, which would freeze the event loop, and with it the
      // very holder of the lock when that is another handle in this process. So the connection waits 0 ms and
      // a busy transaction is rolled back and retried here, yielding to the event loop between attempts.
      for (let waited = 0, delay = 2; ; waited += delay, delay = Math.min(delay * 2, 100)) {
        try {
          return await this.attempt(mode, fn);
        } catch (err) {
          if (!isBusy(err) || waited >= BUSY_BUDGET_MS) throw err;
        }
        await sleep(delay);
      }
    });
  }

  private async attempt<T>(mode: TxMode, fn: (tx: Executor) => Promise<T>): Promise<T> {
    // IMMEDIATE takes the write lock at BEGIN, so a write transaction is busy up front or not at all.
    this.db.exec(mode === 'write' ? 'BEGIN IMMEDIATE' : 'BEGIN');
    try {
      const result = await fn(this.executor);
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  isUniqueViolation(err: unknown): boolean {
    const code = (err as { code?: unknown })?.code;
    return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
  }

  classify(err: unknown) {
    const code = String((err as { code?: unknown })?.code ?? '');
    const detail = err instanceof Error ? err.message : String(err);
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      return fail('unavailable', `sqlite database is locked by another writer: ${detail}`, err);
    }
    if (/^SQLITE_(IOERR|FULL|CANTOPEN|READONLY|CORRUPT|NOTADB)/.test(code)) {
      return fail('io-error', `sqlite database cannot be read or written: ${detail}`, err);
    }
    return fail('internal', `sqlite query failed: ${detail}`, err);
  }

  close(): Promise<void> {
    return this.mutex.run(async () => {
      this.db.close();
    });
  }
}

export async function openSqliteDatastore(config: SqliteConfig): Promise<Datastore> {
  if (!config.path) throw fail('config-invalid', 'sqlite path must not be empty');
  let db: Database.Database;
  try {
    mkdirSync(dirname(config.path), { recursive: true, mode: 0o700 });
    // The database holds join tokens, which are credentials: create it owner-only (SQLite gives
    // its -wal and -shm files the main file's permissions).
    closeSync(openSync(config.path, 'a', 0o600));
    db = new Database(config.path, { timeout: 0 });
  } catch (err) {
    throw fail('io-error', `cannot open sqlite database "${config.path}": ${(err as Error).message}`, err);
  }
  const driver = new SqliteDriver(db);
  try {
    // WAL: readers never block the writer, and a commit is a single append to the log, so a process killed
    // mid-write (kill -9) leaves the last commit either wholly in the log or absent, never half applied.
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw fail('io-error', `sqlite refused wal journal mode for "${config.path}" (got ${mode})`);
    // FULL fsyncs the WAL on every commit. kill -9 alone would be survived with NORMAL (the OS still holds the
    // written pages), but NORMAL can lose the last commits on power loss or a kernel crash; we promise that a
    // create that returned is durable, so we pay one fsync per transaction.
    db.pragma('synchronous = FULL');
    // Entry selectors cascade with their entry; SQLite enforces foreign keys only when asked, per connection.
    db.pragma('foreign_keys = ON');
    await driver.transaction('write', (tx) => migrate(tx, dialect));
  } catch (err) {
    db.close();
    throw toStoreError(driver, err);
  }
  return new SqlDatastore(driver);
}
