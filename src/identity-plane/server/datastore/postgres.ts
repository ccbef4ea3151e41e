/**
 * PostgreSQL backend: several servers of one trust domain share it. Atomicity comes from the database, not the
 * process: `DELETE … RETURNING` claims join tokens, conditional upserts guard bundle sequences, and every
 * entry write bumps one counter row whose lock orders entry writers across servers.
 *
 * Why a counter row and not a SEQUENCE: nextval() is handed out at call time but becomes visible at commit, so
 * revision 6 can commit before revision 5. An agent that synced at 6 would then never see 5. With the row lock,
 * the transaction holding revision N commits before anyone can take N+1, so "changed since N" is exact.
 */
import pg from 'pg';
import { fail, toStoreError, type Dialect, type Executor, type Param, type Row, type SqlDriver, type TxMode } from './driver.js';
import { migrate } from './migrations.js';
import { SqlDatastore } from './sql-store.js';
import type { Datastore } from './types.js';

const dialect: Dialect = { name: 'postgres', bytes: 'BYTEA', forUpdate: 'FOR UPDATE' };
/** Any constant works; it only has to be the same for every svidscope process migrating this database. */
const MIGRATION_LOCK_KEY = 0x5f1d5c09;
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export interface PostgresConfig {
  readonly connectionString: string;
  /** Tables live in this schema (created if missing) instead of the role's default search path. */
  readonly schema?: string;
  /** Pool size; defaults to 10. */
  readonly maxConnections?: number;
}

/** Queries are written with `?`; PostgreSQL wants `$1, $2, …`. No statement here has `?` inside a literal. */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

// pg sends bigint via toString, which is what BIGINT columns expect; Buffers go as bytea.
const bind = (params: readonly Param[]) => params.map((p) => (typeof p === 'bigint' ? p.toString() : p));

class PostgresDriver implements SqlDriver {
  readonly dialect = dialect;

  constructor(private readonly pool: pg.Pool) {}

  async transaction<T>(mode: TxMode, fn: (tx: Executor) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    const tx: Executor = {
      all: async (sql, params = []) => (await client.query(numbered(sql), bind(params))).rows as Row[],
      run: async (sql, params = []) => (await client.query(numbered(sql), bind(params))).rowCount ?? 0,
    };
    let broken = false;
    try {
      // Reads take one snapshot so entries, selectors and the store revision agree; writes stay READ COMMITTED
      // and rely on row locks, which re-check rows after waiting instead of failing with serialization errors.
      await client.query(mode === 'read' ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
      const result = await fn(tx);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true; // the connection is gone; do not hand it back to the pool
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }

  isUniqueViolation(err: unknown): boolean {
    return (err as { code?: unknown })?.code === '23505';
  }

  classify(err: unknown) {
    const code = String((err as { code?: unknown })?.code ?? '');
    const detail = err instanceof Error ? err.message : String(err);
    // Class 08 = connection exception, 57P = operator intervention (shutdown), 53 = insufficient resources,
    // 40 = transaction rollback (deadlock): all worth a retry. Socket errors carry Node codes.
    if (/^(08|57P|53|40)/.test(code) || /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EPIPE)$/.test(code)) {
      return fail('unavailable', `postgres is unavailable: ${detail}`, err);
    }
    if (/connection terminated|timeout exceeded when trying to connect/i.test(detail)) {
      return fail('unavailable', `postgres is unavailable: ${detail}`, err);
    }
    return fail('internal', `postgres query failed: ${detail}`, err);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export async function openPostgresDatastore(config: PostgresConfig): Promise<Datastore> {
  if (!config.connectionString) throw fail('config-invalid', 'postgres connection string must not be empty');
  if (config.schema !== undefined && !SCHEMA_NAME.test(config.schema)) {
    throw fail('config-invalid', `postgres schema "${config.schema}" must match ${SCHEMA_NAME.source}`);
  }
  const pool = new pg.Pool({
    connectionString: config.connectionString,
    max: config.maxConnections ?? 10,
    connectionTimeoutMillis: 10_000,
    ...(config.schema ? { options: `-c search_path=${config.schema}` } : {}),
  });
  // An idle client losing its server emits on the pool; without a listener that would crash the process.
  // The next query on that client fails and is reported as `unavailable`.
  pool.on('error', () => undefined);
  const driver = new PostgresDriver(pool);
  try {
    await driver.transaction('write', async (tx) => {
      // Servers starting together would race to create the same tables; the lock makes the second wait and
      // then find the schema current. It is released at commit.
      await tx.all(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
      if (config.schema) await tx.run(`CREATE SCHEMA IF NOT EXISTS ${config.schema}`);
      return migrate(tx, dialect);
    });
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw toStoreError(driver, err);
  }
  return new SqlDatastore(driver);
}
