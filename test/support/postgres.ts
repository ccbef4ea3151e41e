import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { it } from 'vitest';

const MISSING = 'SVIDSCOPE_TEST_POSTGRES_URL is unset; run: export SVIDSCOPE_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)';

/**
 * The PostgreSQL URL for tests that need one (`npm test` starts PostgreSQL and sets it). Without
 * it, registers one test, "<what> needs SVIDSCOPE_TEST_POSTGRES_URL", that fails saying how to
 * provide it: never a silent pass. Returns undefined then.
 */
export function postgresUrl(what: string): string | undefined {
  const url = process.env.SVIDSCOPE_TEST_POSTGRES_URL;
  if (!url) {
    it(`${what} needs SVIDSCOPE_TEST_POSTGRES_URL`, () => {
      throw new Error(MISSING);
    });
  }
  return url;
}

/** A schema of its own for one test file's stores, so runs sharing a database stay apart. */
export function newSchemaName(prefix: string): string {
  return `svidscope_${prefix}_${randomBytes(5).toString('hex')}`;
}

/** Drops the schemas and everything in them. */
export async function dropSchemas(url: string, schemas: readonly string[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
