/**
 * Queries for attested agents, bundles and CA key records, shared by both dialects. Join tokens are simple
 * enough to live in sql-store.ts. Each function runs inside the caller's transaction.
 */
import type { AgentChanges, AgentFilter, AgentRecord, AttestedAgent, CaKeyKind, CaKeyPhase, CaKeyRecord, Selector, StoredBundle } from './types.js';
import { fail, type Dialect, type Executor, type Param, type Row } from './driver.js';

const MAX_SEQUENCE = 2n ** 63n - 1n;
const AGENT_COLUMNS = 'spiffe_id, serial_number, expires_at, banned, attestation_type, selectors, created_at, updated_at, previous_serial_number, previous_serial_valid_until, revision';
const CA_COLUMNS = 'id, kind, phase, certificate_der, public_key_der, private_key_pkcs8, not_after, created_at';

export async function deleteOne(tx: Executor, table: string, key: string, value: string, what: string): Promise<void> {
  const n = await tx.run(`DELETE FROM ${table} WHERE ${key} = ?`, [value]);
  if (n === 0) throw fail('not-found', `${what} does not exist`);
}

// ---- attested agents

export function validateAgent(a: AgentRecord): void {
  if (!a.spiffeId) throw fail('config-invalid', 'agent has no spiffe id');
  if (!a.attestationType) throw fail('config-invalid', `agent "${a.spiffeId}" has no attestation type`);
}

/** Bumps the agent revision; its row lock orders agent writers, as entry_revision does for entries. */
async function bumpAgentRevision(tx: Executor): Promise<number> {
  const rows = await tx.all(`UPDATE agent_revision SET value = value + 1 WHERE id = 1 RETURNING value`);
  return Number(rows[0].value);
}

export async function insertAgent(tx: Executor, a: AgentRecord, now: Date): Promise<AttestedAgent> {
  const revision = await bumpAgentRevision(tx);
  await tx.run(`INSERT INTO attested_agents (${AGENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
    a.spiffeId, a.serialNumber, a.expiresAt.getTime(), a.banned, a.attestationType, JSON.stringify(a.selectors), now.getTime(), now.getTime(),
    a.previousSerialNumber ?? '', a.previousSerialValidUntil?.getTime() ?? 0, revision,
  ]);
  // The same agent ID attesting again after an eviction is live again: its tombstone goes.
  await tx.run(`DELETE FROM agent_tombstones WHERE spiffe_id = ?`, [a.spiffeId]);
  return { ...a, previousSerialNumber: a.previousSerialNumber ?? '', previousSerialValidUntil: a.previousSerialValidUntil ?? new Date(0), createdAt: now, updatedAt: now, revision };
}

/** Evicts the agent and leaves a tombstone so every server's agent cache drops it. */
export async function removeAgent(tx: Executor, spiffeId: string): Promise<void> {
  const revision = await bumpAgentRevision(tx);
  await deleteOne(tx, 'attested_agents', 'spiffe_id', spiffeId, `agent "${spiffeId}"`);
  await tx.run(
    `INSERT INTO agent_tombstones (spiffe_id, revision) VALUES (?, ?)
     ON CONFLICT (spiffe_id) DO UPDATE SET revision = excluded.revision`,
    [spiffeId, revision],
  );
}

export async function agentsChangedSince(tx: Executor, since: number): Promise<AgentChanges> {
  const state = (await tx.all(`SELECT value, tombstones_pruned_through FROM agent_revision WHERE id = 1`))[0];
  const revision = Number(state.value);
  if (since < Number(state.tombstones_pruned_through) || since > revision || since < 0) {
    const all = await tx.all(`SELECT ${AGENT_COLUMNS} FROM attested_agents ORDER BY spiffe_id`);
    return { revision, changed: all.map(toAgent), deletedIds: [], fullResync: true };
  }
  // By revision, so the revision index serves both the range and the order (see selectEntries).
  const changed = await tx.all(`SELECT ${AGENT_COLUMNS} FROM attested_agents WHERE revision > ? ORDER BY revision, spiffe_id`, [since]);
  const gone = await tx.all(`SELECT spiffe_id FROM agent_tombstones WHERE revision > ? ORDER BY revision, spiffe_id`, [since]);
  return { revision, changed: changed.map(toAgent), deletedIds: gone.map((r) => String(r.spiffe_id)), fullResync: false };
}

export async function pruneAgentTombstones(tx: Executor, throughRevision: number): Promise<number> {
  const removed = await tx.run(`DELETE FROM agent_tombstones WHERE revision <= ?`, [throughRevision]);
  await tx.run(`UPDATE agent_revision SET tombstones_pruned_through = ? WHERE id = 1 AND tombstones_pruned_through < ?`, [throughRevision, throughRevision]);
  return removed;
}

export async function getAgent(tx: Executor, spiffeId: string): Promise<AttestedAgent> {
  const rows = await tx.all(`SELECT ${AGENT_COLUMNS} FROM attested_agents WHERE spiffe_id = ?`, [spiffeId]);
  if (rows.length === 0) throw fail('not-found', `agent "${spiffeId}" does not exist`);
  return toAgent(rows[0]);
}

export async function updateAgent(tx: Executor, a: AgentRecord, now: Date): Promise<AttestedAgent> {
  const revision = await bumpAgentRevision(tx);
  const rows = await tx.all(
    `UPDATE attested_agents SET serial_number = ?, expires_at = ?, banned = ?, attestation_type = ?, selectors = ?, updated_at = ?,
     previous_serial_number = ?, previous_serial_valid_until = ?, revision = ?
     WHERE spiffe_id = ? RETURNING ${AGENT_COLUMNS}`,
    [a.serialNumber, a.expiresAt.getTime(), a.banned, a.attestationType, JSON.stringify(a.selectors), now.getTime(),
      a.previousSerialNumber ?? '', a.previousSerialValidUntil?.getTime() ?? 0, revision, a.spiffeId],
  );
  if (rows.length === 0) throw fail('not-found', `agent "${a.spiffeId}" does not exist`);
  return toAgent(rows[0]);
}

export async function setAgentBanned(tx: Executor, spiffeId: string, banned: boolean, now: Date): Promise<AttestedAgent> {
  const revision = await bumpAgentRevision(tx);
  const rows = await tx.all(
    `UPDATE attested_agents SET banned = ?, updated_at = ?, revision = ? WHERE spiffe_id = ? RETURNING ${AGENT_COLUMNS}`,
    [banned, now.getTime(), revision, spiffeId],
  );
  if (rows.length === 0) throw fail('not-found', `agent "${spiffeId}" does not exist`);
  return toAgent(rows[0]);
}

export async function listAgents(tx: Executor, f: AgentFilter): Promise<AttestedAgent[]> {
  const clauses: string[] = [];
  const params: Param[] = [];
  const add = (clause: string, param: Param) => {
    clauses.push(clause);
    params.push(param);
  };
  if (f.banned !== undefined) add('banned = ?', f.banned);
  if (f.attestationType !== undefined) add('attestation_type = ?', f.attestationType);
  if (f.expiresBefore !== undefined) add('expires_at < ?', f.expiresBefore.getTime());
  const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
  const rows = await tx.all(`SELECT ${AGENT_COLUMNS} FROM attested_agents ${where} ORDER BY spiffe_id`, params);
  return rows.map(toAgent);
}

function toAgent(r: Row): AttestedAgent {
  return {
    spiffeId: String(r.spiffe_id),
    serialNumber: String(r.serial_number),
    expiresAt: new Date(Number(r.expires_at)),
    banned: Boolean(Number(r.banned)),
    attestationType: String(r.attestation_type),
    selectors: JSON.parse(String(r.selectors)) as Selector[],
    createdAt: new Date(Number(r.created_at)),
    updatedAt: new Date(Number(r.updated_at)),
    previousSerialNumber: String(r.previous_serial_number ?? ''),
    previousSerialValidUntil: new Date(Number(r.previous_serial_valid_until ?? 0)),
    revision: Number(r.revision ?? 0),
  };
}

// ---- bundles

export function validateBundle(b: StoredBundle): void {
  if (!b.trustDomain) throw fail('config-invalid', 'bundle has no trust domain');
  if (b.sequence < 0n || b.sequence > MAX_SEQUENCE) throw fail('config-invalid', `bundle sequence for "${b.trustDomain}" must be in 0..2^63-1`);
}

export async function setBundle(tx: Executor, b: StoredBundle): Promise<StoredBundle> {
  // One statement decides: the conditional upsert writes only when the stored sequence is not higher, so two
  // servers publishing at once can never move the sequence backwards.
  const rows = await tx.all(
    `INSERT INTO bundles (trust_domain, document, sequence, updated_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (trust_domain) DO UPDATE SET document = excluded.document, sequence = excluded.sequence, updated_at = excluded.updated_at
     WHERE bundles.sequence <= excluded.sequence RETURNING trust_domain`,
    [b.trustDomain, b.document, b.sequence, b.updatedAt.getTime()],
  );
  if (rows.length === 0) {
    const stored = await getBundle(tx, b.trustDomain);
    throw fail('bundle-sequence-regressed', `bundle for "${b.trustDomain}" has sequence ${b.sequence}, lower than the stored ${stored.sequence}`);
  }
  return { ...b, document: Buffer.from(b.document) };
}

export async function getBundle(tx: Executor, trustDomain: string): Promise<StoredBundle> {
  const rows = await tx.all(`SELECT trust_domain, document, sequence, updated_at FROM bundles WHERE trust_domain = ?`, [trustDomain]);
  if (rows.length === 0) throw fail('not-found', `bundle for "${trustDomain}" does not exist`);
  return toBundle(rows[0]);
}

export async function listBundles(tx: Executor): Promise<StoredBundle[]> {
  const rows = await tx.all(`SELECT trust_domain, document, sequence, updated_at FROM bundles ORDER BY trust_domain`);
  return rows.map(toBundle);
}

function toBundle(r: Row): StoredBundle {
  return {
    trustDomain: String(r.trust_domain),
    document: Buffer.from(r.document as Uint8Array),
    sequence: BigInt(r.sequence as string | number | bigint),
    updatedAt: new Date(Number(r.updated_at)),
  };
}

// ---- CA key records

export function validateCaKey(k: CaKeyRecord): void {
  if (!k.id) throw fail('config-invalid', 'ca key has no id');
  if (k.kind !== 'x509' && k.kind !== 'jwt') throw fail('config-invalid', `ca key "${k.id}" kind must be x509 or jwt`);
  if (!['prepared', 'active', 'old'].includes(k.phase)) throw fail('config-invalid', `ca key "${k.id}" phase must be prepared, active or old`);
}

export async function insertCaKey(tx: Executor, d: Dialect, k: CaKeyRecord): Promise<void> {
  if (k.phase === 'active') await demoteActive(tx, d, k.kind, k.id);
  await tx.run(`INSERT INTO ca_keys (${CA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, [
    k.id, k.kind, k.phase, k.certificateDer ?? null, k.publicKeyDer, k.privateKeyPkcs8, k.notAfter.getTime(), k.createdAt.getTime(),
  ]);
}

export async function listCaKeys(tx: Executor, kind?: CaKeyKind): Promise<CaKeyRecord[]> {
  const rows = kind
    ? await tx.all(`SELECT ${CA_COLUMNS} FROM ca_keys WHERE kind = ? ORDER BY created_at, id`, [kind])
    : await tx.all(`SELECT ${CA_COLUMNS} FROM ca_keys ORDER BY created_at, id`);
  return rows.map(toCaKey);
}

export async function setCaKeyPhase(tx: Executor, d: Dialect, id: string, phase: CaKeyPhase): Promise<CaKeyRecord> {
  if (!['prepared', 'active', 'old'].includes(phase)) throw fail('config-invalid', `ca key phase must be prepared, active or old`);
  const rows = await tx.all(`SELECT ${CA_COLUMNS} FROM ca_keys WHERE id = ? ${d.forUpdate}`, [id]);
  if (rows.length === 0) throw fail('not-found', `ca key "${id}" does not exist`);
  const current = toCaKey(rows[0]);
  // At most one active key per kind: activation and demotion commit together, so every server sees one.
  if (phase === 'active') await demoteActive(tx, d, current.kind, id);
  await tx.run(`UPDATE ca_keys SET phase = ? WHERE id = ?`, [phase, id]);
  return { ...current, phase };
}

async function demoteActive(tx: Executor, d: Dialect, kind: CaKeyKind, exceptId: string): Promise<void> {
  // Two servers activating keys at once would each see no other active row and both commit one; the store
  // revision row doubles as the lock that serializes activations (rare, so sharing it with entry writes is cheap).
  await tx.all(`SELECT id FROM entry_revision WHERE id = 1 ${d.forUpdate}`);
  await tx.run(`UPDATE ca_keys SET phase = 'old' WHERE kind = ? AND phase = 'active' AND id <> ?`, [kind, exceptId]);
}

function toCaKey(r: Row): CaKeyRecord {
  const record: CaKeyRecord = {
    id: String(r.id),
    kind: String(r.kind) as CaKeyKind,
    phase: String(r.phase) as CaKeyPhase,
    publicKeyDer: Buffer.from(r.public_key_der as Uint8Array),
    privateKeyPkcs8: Buffer.from(r.private_key_pkcs8 as Uint8Array),
    notAfter: new Date(Number(r.not_after)),
    createdAt: new Date(Number(r.created_at)),
  };
  return r.certificate_der == null ? record : { ...record, certificateDer: Buffer.from(r.certificate_der as Uint8Array) };
}
