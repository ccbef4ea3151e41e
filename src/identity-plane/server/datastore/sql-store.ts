/**
 * The one Datastore implementation over any SqlDriver: SQLite and PostgreSQL differ only in their driver, so
 * the shared suite proves the same semantics for both. Each public method is exactly one transaction.
 */
import { randomUUID } from 'node:crypto';
import type {
  AgentChanges, AgentFilter, AgentRecord, AttestedAgent, CaKeyKind, CaKeyPhase, CaKeyRecord, Datastore, DatastoreHealth, EntryChanges, EntryCreateResult,
  EntryFilter, EntryUpdate, JoinToken, JoinTokenAttestation, JoinTokenConsumption, NewEntry, RegistrationEntry, StoredBundle,
} from './types.js';
import { isSvidscopeError } from '../../../common/errors/catalog.js';
import { fail, toStoreError, type Executor, type SqlDriver, type TxMode } from './driver.js';
import { schemaVersion } from './migrations.js';
import * as entries from './sql-entries.js';
import * as records from './sql-records.js';

export class SqlDatastore implements Datastore {
  readonly backend: 'sqlite' | 'postgres';
  private closed = false;

  constructor(private readonly driver: SqlDriver) {
    this.backend = driver.dialect.name;
  }

  private async tx<T>(mode: TxMode, fn: (tx: Executor) => Promise<T>): Promise<T> {
    if (this.closed) throw fail('unavailable', 'store is closed');
    try {
      return await this.driver.transaction(mode, fn);
    } catch (err) {
      throw toStoreError(this.driver, err);
    }
  }

  private async loadEntry(tx: Executor, id: string, lock = false): Promise<RegistrationEntry> {
    const [entry] = await entries.selectEntries(tx, this.driver.dialect, 'e.id = ?', [id], { lock });
    if (!entry) throw fail('not-found', `entry "${id}" does not exist`);
    return entry;
  }

  // ---- registration entries

  async createEntry(input: NewEntry, now: Date): Promise<RegistrationEntry> {
    entries.validateEntry(input);
    return this.tx('write', async (tx) => this.insertNewEntry(tx, input, await entries.bumpRevision(tx), now));
  }

  async createEntries(inputs: readonly NewEntry[], now: Date): Promise<EntryCreateResult[]> {
    const results: (EntryCreateResult | undefined)[] = inputs.map((input) => {
      try {
        entries.validateEntry(input);
        return undefined;
      } catch (err) {
        return { error: toStoreError(this.driver, err) };
      }
    });
    if (results.every((r) => r !== undefined)) return results as EntryCreateResult[];
    return this.tx('write', async (tx) => {
      // The first bump takes the revision row lock, so the checks below cannot race another writer;
      // each stored entry then gets a revision of its own, exactly as single creates would.
      let revision = await entries.bumpRevision(tx);
      let used = false;
      for (const [i, input] of inputs.entries()) {
        if (results[i]) continue;
        if (used) revision = await entries.bumpRevision(tx);
        try {
          results[i] = { entry: await this.insertNewEntry(tx, input, revision, now) };
          used = true;
        } catch (err) {
          // Refusals are found by queries before any write fails, so the transaction is still usable.
          // A failed statement (a unique violation despite the checks, the database itself failing)
          // may have aborted it (PostgreSQL), so that fails the whole batch.
          const refused = isSvidscopeError(err) && err.code === 'already-exists' && !this.driver.isUniqueViolation(err.cause);
          if (refused) results[i] = { error: err };
          else throw err;
        }
      }
      return results as EntryCreateResult[];
    });
  }

  /** The checks and insert of one new entry inside a write transaction that already bumped `revision`. */
  private async insertNewEntry(tx: Executor, input: NewEntry, revision: number, now: Date): Promise<RegistrationEntry> {
    const entry: RegistrationEntry = { ...input, id: input.id ?? randomUUID(), createdAtMs: now.getTime(), revision };
    const existing = await entries.selectEntries(tx, this.driver.dialect, 'e.id = ?', [entry.id]);
    if (existing.length > 0) throw fail('already-exists', `entry "${entry.id}" already exists`);
    await entries.assertNoSimilarEntry(tx, this.driver.dialect, entry);
    await this.unique(() => entries.insertEntry(tx, entry), `entry "${entry.id}" already exists`);
    return entry;
  }

  getEntry(id: string): Promise<RegistrationEntry> {
    return this.tx('read', (tx) => this.loadEntry(tx, id));
  }

  async updateEntry(input: EntryUpdate, options: { expectedRevision?: number } = {}): Promise<RegistrationEntry> {
    entries.validateEntry(input);
    return this.tx('write', async (tx) => {
      const revision = await entries.bumpRevision(tx);
      const stored = await this.loadEntry(tx, input.id, true);
      if (options.expectedRevision !== undefined && stored.revision !== options.expectedRevision) {
        throw fail('entry-revision-conflict', `entry "${input.id}" is at revision ${stored.revision}, not ${options.expectedRevision}`);
      }
      await entries.assertNoSimilarEntry(tx, this.driver.dialect, input, input.id);
      await entries.rewriteEntry(tx, input, revision);
      return { ...input, createdAtMs: stored.createdAtMs, revision };
    });
  }

  deleteEntry(id: string): Promise<RegistrationEntry> {
    return this.tx('write', async (tx) => {
      const revision = await entries.bumpRevision(tx);
      const stored = await this.loadEntry(tx, id, true);
      await entries.removeEntry(tx, id, revision);
      return stored;
    });
  }

  listEntries(filter: EntryFilter = {}): Promise<RegistrationEntry[]> {
    const { where, params } = entries.entryWhere(filter);
    return this.tx('read', (tx) => entries.selectEntries(tx, this.driver.dialect, where, params));
  }

  listEntriesChangedSince(since: number): Promise<EntryChanges> {
    return this.tx('read', async (tx) => {
      const { revision, prunedThrough } = await entries.readRevisionState(tx);
      // A caller ahead of the store saw another (or a restored) database; one behind the pruned tombstones
      // could miss deletions. Both must start over from the full set.
      if (since < prunedThrough || since > revision || since < 0) {
        const all = await entries.selectEntries(tx, this.driver.dialect, '1 = 1', []);
        return { revision, changed: all, deletedIds: [], fullResync: true };
      }
      const changed = await entries.selectEntries(tx, this.driver.dialect, 'e.revision > ?', [since], { order: 'revision' });
      const gone = await tx.all(`SELECT entry_id FROM entry_tombstones WHERE revision > ? ORDER BY revision, entry_id`, [since]);
      return { revision, changed, deletedIds: gone.map((r) => String(r.entry_id)), fullResync: false };
    });
  }

  pruneEntries(now: Date): Promise<string[]> {
    return this.tx('write', async (tx) => {
      const expired = await tx.all(`SELECT id FROM registered_entries WHERE expires_at IS NOT NULL AND expires_at < ? ORDER BY id`, [now.getTime()]);
      if (expired.length === 0) return [];
      const revision = await entries.bumpRevision(tx);
      for (const r of expired) await entries.removeEntry(tx, String(r.id), revision);
      return expired.map((r) => String(r.id));
    });
  }

  pruneEntryTombstones(throughRevision: number): Promise<number> {
    return this.tx('write', async (tx) => {
      const removed = await tx.run(`DELETE FROM entry_tombstones WHERE revision <= ?`, [throughRevision]);
      await tx.run(
        `UPDATE entry_revision SET tombstones_pruned_through = ? WHERE id = 1 AND tombstones_pruned_through < ?`,
        [throughRevision, throughRevision],
      );
      return removed;
    });
  }

  // ---- agents, join tokens, bundles, CA keys (queries in sql-records.ts)

  async createAgent(agent: AgentRecord, now: Date): Promise<AttestedAgent> {
    records.validateAgent(agent);
    return this.tx('write', (tx) => this.unique(() => records.insertAgent(tx, agent, now), `agent "${agent.spiffeId}" already exists`));
  }
  getAgent(spiffeId: string): Promise<AttestedAgent> {
    return this.tx('read', (tx) => records.getAgent(tx, spiffeId));
  }
  async updateAgent(agent: AgentRecord, now: Date): Promise<AttestedAgent> {
    records.validateAgent(agent);
    return this.tx('write', (tx) => records.updateAgent(tx, agent, now));
  }
  deleteAgent(spiffeId: string): Promise<void> {
    return this.tx('write', (tx) => records.removeAgent(tx, spiffeId));
  }
  setAgentBanned(spiffeId: string, banned: boolean, now: Date): Promise<AttestedAgent> {
    return this.tx('write', (tx) => records.setAgentBanned(tx, spiffeId, banned, now));
  }
  listAgents(filter: AgentFilter = {}): Promise<AttestedAgent[]> {
    return this.tx('read', (tx) => records.listAgents(tx, filter));
  }
  listAgentsChangedSince(since: number): Promise<AgentChanges> {
    return this.tx('read', (tx) => records.agentsChangedSince(tx, since));
  }
  pruneAgentTombstones(throughRevision: number): Promise<number> {
    return this.tx('write', (tx) => records.pruneAgentTombstones(tx, throughRevision));
  }

  async createJoinToken(token: JoinToken): Promise<void> {
    if (!token.token) throw fail('config-invalid', 'join token must not be empty');
    return this.tx('write', (tx) =>
      this.unique(async () => {
        await tx.run(`INSERT INTO join_tokens (token, expires_at) VALUES (?, ?)`, [token.token, token.expiresAt.getTime()]);
      }, 'join token already exists'),
    );
  }
  consumeJoinToken(token: string, now: Date): Promise<JoinTokenConsumption> {
    return this.tx('write', (tx) => this.spendJoinToken(tx, token, now));
  }
  consumeJoinTokenForAgent(token: string, agentId: string, now: Date, admit: (existing: AttestedAgent | undefined) => AgentRecord | undefined): Promise<JoinTokenAttestation> {
    return this.tx('write', async (tx) => {
      const consumption = await this.spendJoinToken(tx, token, now);
      if (consumption.outcome !== 'consumed') return { consumption };
      const existing = await records.getAgent(tx, agentId).catch((err: unknown) => {
        if (isSvidscopeError(err) && err.code === 'not-found') return undefined;
        throw err;
      });
      const record = admit(existing);
      if (!record) return { consumption, existing };
      records.validateAgent(record);
      const stored = existing ? await records.updateAgent(tx, record, now) : await this.unique(() => records.insertAgent(tx, record, now), `agent "${record.spiffeId}" already exists`);
      return { consumption, existing, stored };
    });
  }
  /** DELETE … RETURNING is the claim: of two servers racing, only one sees the row come back. */
  private async spendJoinToken(tx: Executor, token: string, now: Date): Promise<JoinTokenConsumption> {
    const rows = await tx.all(`DELETE FROM join_tokens WHERE token = ? RETURNING token, expires_at`, [token]);
    if (rows.length === 0) return { outcome: 'unknown' };
    const found: JoinToken = { token: String(rows[0].token), expiresAt: new Date(Number(rows[0].expires_at)) };
    return found.expiresAt.getTime() > now.getTime() ? { outcome: 'consumed', token: found } : { outcome: 'expired', token: found };
  }
  pruneJoinTokens(now: Date): Promise<number> {
    return this.tx('write', (tx) => tx.run(`DELETE FROM join_tokens WHERE expires_at <= ?`, [now.getTime()]));
  }

  getBundle(trustDomain: string): Promise<StoredBundle> {
    return this.tx('read', (tx) => records.getBundle(tx, trustDomain));
  }
  async setBundle(bundle: StoredBundle): Promise<StoredBundle> {
    records.validateBundle(bundle);
    return this.tx('write', (tx) => records.setBundle(tx, bundle));
  }
  listBundles(): Promise<StoredBundle[]> {
    return this.tx('read', (tx) => records.listBundles(tx));
  }
  deleteBundle(trustDomain: string): Promise<void> {
    return this.tx('write', (tx) => records.deleteOne(tx, 'bundles', 'trust_domain', trustDomain, `bundle for "${trustDomain}"`));
  }

  async putCaKey(record: CaKeyRecord): Promise<void> {
    records.validateCaKey(record);
    return this.tx('write', (tx) => this.unique(() => records.insertCaKey(tx, this.driver.dialect, record), `ca key "${record.id}" already exists`));
  }
  listCaKeys(kind?: CaKeyKind): Promise<CaKeyRecord[]> {
    return this.tx('read', (tx) => records.listCaKeys(tx, kind));
  }
  setCaKeyPhase(id: string, phase: CaKeyPhase): Promise<CaKeyRecord> {
    return this.tx('write', (tx) => records.setCaKeyPhase(tx, this.driver.dialect, id, phase));
  }
  deleteCaKey(id: string): Promise<void> {
    return this.tx('write', (tx) => records.deleteOne(tx, 'ca_keys', 'id', id, `ca key "${id}"`));
  }

  // ---- lifecycle

  async health(): Promise<DatastoreHealth> {
    try {
      const version = await this.tx('read', (tx) => schemaVersion(tx));
      return { ok: true, backend: this.backend, schemaVersion: version };
    } catch (err) {
      return { ok: false, backend: this.backend, error: err instanceof Error ? err.message : String(err) };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.driver.close();
  }

  /** Turns a unique-key violation of `fn` into `already-exists` (the race-proof half of an existence check). */
  private async unique<T>(fn: () => Promise<T>, message: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (this.driver.isUniqueViolation(err)) throw fail('already-exists', message, err);
      throw err;
    }
  }
}
