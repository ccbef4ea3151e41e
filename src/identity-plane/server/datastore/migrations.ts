/**
 * Ordered schema steps shared by SQLite and PostgreSQL, recorded in `schema_version`. Steps are append-only:
 * never edit a released step, add a new one. A database whose version is newer than the last step here was
 * written by a newer svidscope; opening it could silently drop columns that build relies on, so it is refused.
 */
import { fail, type Dialect, type Executor } from './driver.js';

interface Step {
  readonly version: number;
  readonly description: string;
  readonly statements: (d: Dialect) => string[];
}

const steps: readonly Step[] = [
  {
    version: 1,
    description: 'entries, selectors, tombstones, agents, join tokens, bundles, ca keys',
    statements: (d) => [
      // One row: the store revision. Writers bump it first, so its row lock orders every entry change;
      // see postgres.ts for why a plain sequence is not enough.
      `CREATE TABLE entry_revision (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value BIGINT NOT NULL,
        tombstones_pruned_through BIGINT NOT NULL
      )`,
      `INSERT INTO entry_revision (id, value, tombstones_pruned_through) VALUES (1, 0, 0)`,
      `CREATE TABLE registered_entries (
        id TEXT PRIMARY KEY,
        spiffe_id TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        x509_svid_ttl INTEGER NOT NULL,
        jwt_svid_ttl INTEGER NOT NULL,
        dns_names TEXT NOT NULL,
        federates_with TEXT NOT NULL,
        admin BOOLEAN NOT NULL,
        downstream BOOLEAN NOT NULL,
        expires_at BIGINT,
        hint TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revision BIGINT NOT NULL
      )`,
      `CREATE INDEX registered_entries_spiffe_id ON registered_entries (spiffe_id)`,
      `CREATE INDEX registered_entries_parent_id ON registered_entries (parent_id)`,
      `CREATE INDEX registered_entries_revision ON registered_entries (revision)`,
      `CREATE INDEX registered_entries_expires_at ON registered_entries (expires_at)`,
      `CREATE TABLE entry_selectors (
        entry_id TEXT NOT NULL REFERENCES registered_entries (id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (entry_id, type, value)
      )`,
      `CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value)`,
      `CREATE TABLE entry_tombstones (entry_id TEXT PRIMARY KEY, revision BIGINT NOT NULL)`,
      `CREATE INDEX entry_tombstones_revision ON entry_tombstones (revision)`,
      `CREATE TABLE attested_agents (
        spiffe_id TEXT PRIMARY KEY,
        serial_number TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        banned BOOLEAN NOT NULL,
        attestation_type TEXT NOT NULL,
        selectors TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE TABLE join_tokens (token TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)`,
      `CREATE TABLE bundles (
        trust_domain TEXT PRIMARY KEY,
        document ${d.bytes} NOT NULL,
        sequence BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE TABLE ca_keys (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('x509', 'jwt')),
        phase TEXT NOT NULL CHECK (phase IN ('prepared', 'active', 'old')),
        certificate_der ${d.bytes},
        public_key_der ${d.bytes} NOT NULL,
        private_key_pkcs8 ${d.bytes} NOT NULL,
        not_after BIGINT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    description: 'agents: the serial a renewal replaced and until when it is accepted; agent change feed (revisions, tombstones)',
    statements: () => [
      `ALTER TABLE attested_agents ADD COLUMN previous_serial_number TEXT NOT NULL DEFAULT ''`,
      `ALTER TABLE attested_agents ADD COLUMN previous_serial_valid_until BIGINT NOT NULL DEFAULT 0`,
      // Agents get their own revision row (same technique as entry_revision): agent writes, frequent with
      // renewals, then never contend with entry writers for one row lock.
      `CREATE TABLE agent_revision (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value BIGINT NOT NULL,
        tombstones_pruned_through BIGINT NOT NULL
      )`,
      `INSERT INTO agent_revision (id, value, tombstones_pruned_through) VALUES (1, 0, 0)`,
      `ALTER TABLE attested_agents ADD COLUMN revision BIGINT NOT NULL DEFAULT 0`,
      `CREATE INDEX attested_agents_revision ON attested_agents (revision)`,
      `CREATE TABLE agent_tombstones (spiffe_id TEXT PRIMARY KEY, revision BIGINT NOT NULL)`,
      `CREATE INDEX agent_tombstones_revision ON agent_tombstones (revision)`,
    ],
  },
];

export const latestSchemaVersion = steps[steps.length - 1].version;

/** Applies the missing steps inside the caller's (write) transaction; returns the resulting version. */
export async function migrate(tx: Executor, dialect: Dialect): Promise<number> {
  await tx.run(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL)`);
  const rows = await tx.all(`SELECT MAX(version) AS version FROM schema_version`);
  const current = rows[0]?.version == null ? 0 : Number(rows[0].version);
  if (current > latestSchemaVersion) {
    throw fail(
      'config-invalid',
      `database schema version ${current} is newer than this build supports (${latestSchemaVersion}); upgrade svidscope or use another database`,
    );
  }
  for (const step of steps) {
    if (step.version <= current) continue;
    for (const sql of step.statements(dialect)) await tx.run(sql);
    await tx.run(`INSERT INTO schema_version (version, description) VALUES (?, ?)`, [step.version, step.description]);
  }
  return latestSchemaVersion;
}

export async function schemaVersion(tx: Executor): Promise<number> {
  const rows = await tx.all(`SELECT MAX(version) AS version FROM schema_version`);
  return Number(rows[0]?.version ?? 0);
}
