/**
 * The datastore's domain records and the one `Datastore` interface that both backends (SQLite, PostgreSQL)
 * implement and one shared suite (`test/datastore/suite.ts`) checks. Times are `Date`s here (but for an
 * entry's `createdAtMs`, see there) and epoch milliseconds in storage; the store never reads a clock itself, so callers pass `now` where time matters.
 */
import type { SvidscopeError } from '../../../common/errors/catalog.js';

/** A `type:value` pair, e.g. `{ type: 'unix', value: 'uid:1000' }`. */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

export interface RegistrationEntry {
  readonly id: string;
  readonly spiffeId: string;
  /** Agent ID, `spiffe://<td>/spire/server` (node alias) or another entry's SPIFFE ID. */
  readonly parentId: string;
  /** Never empty; stored in their own table so selector queries use an index. */
  readonly selectors: readonly Selector[];
  /** Seconds; 0 means the server default. */
  readonly x509SvidTtl: number;
  readonly jwtSvidTtl: number;
  readonly dnsNames: readonly string[];
  readonly federatesWith: readonly string[];
  readonly admin: boolean;
  readonly downstream: boolean;
  readonly expiresAt: Date | null;
  readonly hint: string;
  /**
   * Epoch ms, a number rather than a Date: every server holds every entry in memory, and a Date
   * costs ≈ 112 B of heap where a number field costs at most 16 (≈ 10 MiB at 100,000 entries).
   */
  readonly createdAtMs: number;
  /** The store revision of the entry's last change: bumped on every update, monotonic across the store. */
  readonly revision: number;
}

/** What `createEntry` takes: the id is generated (UUID) unless given; createdAtMs and revision come from the store. */
export type NewEntry = Omit<RegistrationEntry, 'id' | 'createdAtMs' | 'revision'> & { readonly id?: string };
/** One outcome of `createEntries`, in the order of the input: the stored entry, or why this one was refused. */
export type EntryCreateResult = { readonly entry: RegistrationEntry } | { readonly error: SvidscopeError };

/** What `updateEntry` takes: the whole record; createdAtMs is kept from the stored row. */
export type EntryUpdate = Omit<RegistrationEntry, 'createdAtMs' | 'revision'>;

export interface EntryFilter {
  readonly parentId?: string;
  readonly spiffeId?: string;
  /**
   * `subset`: entries whose selectors all lie within the given set (how a workload or node is matched).
   * `superset`: entries that carry every given selector.
   */
  readonly selectors?: { readonly selectors: readonly Selector[]; readonly match: 'subset' | 'superset' };
  /** Only entries changed after this store revision. */
  readonly revisionSince?: number;
}

export interface EntryChanges {
  /** The store revision this answer is consistent with; pass it as `since` next time. */
  readonly revision: number;
  /** Entries created or updated after `since` (all entries when `fullResync`). */
  readonly changed: readonly RegistrationEntry[];
  /** IDs deleted after `since` (tombstones). */
  readonly deletedIds: readonly string[];
  /**
   * True when `since` is older than the pruned tombstones or newer than the store: the caller must
   * replace its whole view with `changed` instead of applying a delta.
   */
  readonly fullResync: boolean;
}

export interface AttestedAgent {
  readonly spiffeId: string;
  /** Hex serial of the agent SVID last issued to it: the only one accepted outside the renewal window. */
  readonly serialNumber: string;
  /**
   * The serial the last renewal was requested with, still accepted until `previousSerialValidUntil` so a
   * renewal whose answer was lost can be retried and calls already in flight finish ('' when none).
   */
  readonly previousSerialNumber?: string;
  readonly previousSerialValidUntil?: Date;
  readonly expiresAt: Date;
  readonly banned: boolean;
  readonly attestationType: string;
  readonly selectors: readonly Selector[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** The agent store revision of the record's last change (its own counter, separate from entries'). */
  readonly revision: number;
}
export type AgentRecord = Omit<AttestedAgent, 'createdAt' | 'updatedAt' | 'revision'>;

/** The agent change feed, shaped like `EntryChanges`; deletedIds are evicted agents' SPIFFE IDs. */
export interface AgentChanges {
  readonly revision: number;
  readonly changed: readonly AttestedAgent[];
  readonly deletedIds: readonly string[];
  readonly fullResync: boolean;
}

export interface AgentFilter {
  readonly banned?: boolean;
  readonly attestationType?: string;
  /** Agents whose SVID expires before this instant (candidates for pruning). */
  readonly expiresBefore?: Date;
}

export interface JoinToken {
  readonly token: string;
  readonly expiresAt: Date;
}

/**
 * Outcome of `consumeJoinToken`. As in SPIRE, the token is deleted before its expiry is checked, so even a
 * late use burns it; `expired` says the deleted token was no longer valid.
 */
export type JoinTokenConsumption =
  | { readonly outcome: 'consumed'; readonly token: JoinToken }
  | { readonly outcome: 'expired'; readonly token: JoinToken }
  | { readonly outcome: 'unknown' };

/** Outcome of `consumeJoinTokenForAgent`: the token's, the record found, and the one stored (none when admit refused). */
export interface JoinTokenAttestation {
  readonly consumption: JoinTokenConsumption;
  readonly existing?: AttestedAgent;
  readonly stored?: AttestedAgent;
}

export interface StoredBundle {
  readonly trustDomain: string;
  /** The SPIFFE bundle JSON bytes, opaque to the store. */
  readonly document: Buffer;
  /** Bundle sequence number; stored as a signed 64-bit integer, so at most 2^63-1. */
  readonly sequence: bigint;
  readonly updatedAt: Date;
}

export type CaKeyKind = 'x509' | 'jwt';
export type CaKeyPhase = 'prepared' | 'active' | 'old';

/** CA or JWT signing key material shared by every server on one PostgreSQL (same trust domain, same keys). */
export interface CaKeyRecord {
  readonly id: string;
  readonly kind: CaKeyKind;
  readonly phase: CaKeyPhase;
  readonly certificateDer?: Buffer;
  readonly publicKeyDer: Buffer;
  /** Encrypted or not is the caller's choice; the store keeps the bytes as given. */
  readonly privateKeyPkcs8: Buffer;
  readonly notAfter: Date;
  readonly createdAt: Date;
}

export interface DatastoreHealth {
  readonly ok: boolean;
  readonly backend: 'sqlite' | 'postgres';
  readonly schemaVersion?: number;
  /** Why the store is unhealthy; absent when ok. */
  readonly error?: string;
}

/**
 * Every mutation runs in one transaction. Failures are SvidscopeErrors: `not-found`, `already-exists`,
 * `config-invalid` (a record the store refuses), `entry-revision-conflict`, `bundle-sequence-regressed`,
 * `unavailable` (the database is unreachable or the store closed), `io-error`, `internal`.
 */
export interface Datastore {
  readonly backend: 'sqlite' | 'postgres';

  createEntry(entry: NewEntry, now: Date): Promise<RegistrationEntry>;
  /**
   * Creates many entries in one transaction, each checked like `createEntry` (against the store and the
   * entries earlier in the same call). A refused entry (`config-invalid`, `already-exists`) is reported in
   * its slot and the others are still stored; a database failure stores none and rejects the whole call.
   */
  createEntries(entries: readonly NewEntry[], now: Date): Promise<EntryCreateResult[]>;
  getEntry(id: string): Promise<RegistrationEntry>;
  /** Replaces the whole record; with `expectedRevision`, refuses if the stored revision differs. */
  updateEntry(entry: EntryUpdate, options?: { readonly expectedRevision?: number }): Promise<RegistrationEntry>;
  deleteEntry(id: string): Promise<RegistrationEntry>;
  listEntries(filter?: EntryFilter): Promise<RegistrationEntry[]>;
  listEntriesChangedSince(since: number): Promise<EntryChanges>;
  /** Deletes entries whose expiresAt lies before `now`; returns their ids. */
  pruneEntries(now: Date): Promise<string[]>;
  /** Forgets tombstones up to `revision`; syncs from before it then get a full resync. */
  pruneEntryTombstones(throughRevision: number): Promise<number>;

  createAgent(agent: AgentRecord, now: Date): Promise<AttestedAgent>;
  getAgent(spiffeId: string): Promise<AttestedAgent>;
  updateAgent(agent: AgentRecord, now: Date): Promise<AttestedAgent>;
  /** Evicts the agent; it must attest again. */
  deleteAgent(spiffeId: string): Promise<void>;
  setAgentBanned(spiffeId: string, banned: boolean, now: Date): Promise<AttestedAgent>;
  listAgents(filter?: AgentFilter): Promise<AttestedAgent[]>;
  /** Agents created, renewed, banned or evicted after agent revision `since` (see `listEntriesChangedSince`). */
  listAgentsChangedSince(since: number): Promise<AgentChanges>;
  /** Forgets eviction tombstones up to agent revision `revision`; syncs from before it get a full resync. */
  pruneAgentTombstones(throughRevision: number): Promise<number>;

  createJoinToken(token: JoinToken): Promise<void>;
  /** Atomically deletes the token and says whether it was valid at `now`; one-time even across servers. */
  consumeJoinToken(token: string, now: Date): Promise<JoinTokenConsumption>;
  /**
   * consumeJoinToken and, when the token was valid, the agent it attests stored, in one transaction:
   * one commit per attestation where there were two (a fleet attesting was bound by fsync'd commits).
   * `admit` gets the agent's current record (undefined: none) and returns the record to store, or
   * undefined to store nothing (a banned agent); it runs inside the transaction, synchronously. The
   * token is spent whatever the outcome, as with consumeJoinToken.
   */
  consumeJoinTokenForAgent(token: string, agentId: string, now: Date, admit: (existing: AttestedAgent | undefined) => AgentRecord | undefined): Promise<JoinTokenAttestation>;
  pruneJoinTokens(now: Date): Promise<number>;

  getBundle(trustDomain: string): Promise<StoredBundle>;
  /** Creates or replaces; refuses a sequence lower than the stored one (`bundle-sequence-regressed`). */
  setBundle(bundle: StoredBundle): Promise<StoredBundle>;
  listBundles(): Promise<StoredBundle[]>;
  deleteBundle(trustDomain: string): Promise<void>;

  putCaKey(record: CaKeyRecord): Promise<void>;
  listCaKeys(kind?: CaKeyKind): Promise<CaKeyRecord[]>;
  /** Setting `active` demotes the kind's previous active key to `old` in the same transaction. */
  setCaKeyPhase(id: string, phase: CaKeyPhase): Promise<CaKeyRecord>;
  deleteCaKey(id: string): Promise<void>;

  health(): Promise<DatastoreHealth>;
  close(): Promise<void>;
}
