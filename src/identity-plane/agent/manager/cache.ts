import type { Clock, TimerHandle } from '../../../common/clock.js';
import type { SpiffeBundle } from '../../spiffe/bundle/index.js';
import type { EntryMsg } from '../../server-api/messages.js';

export interface Selector {
  type: string;
  value: string;
}

export interface CachedX509Svid {
  entryId: string;
  spiffeId: string;
  /**
   * DER certificates, leaf first. The leaf is a buffer of its own (not a slice of the server's
   * answer, which would keep the whole batch alive) and the rest is shared by every SVID of the
   * same CA chain, so a cached SVID costs its leaf, not its chain.
   */
  chain: Buffer[];
  /**
   * PKCS#8 DER of the key, as the Workload API sends it (encoded once, not per response). No
   * KeyObject is kept: nothing in the agent signs with a workload key, and each would hold an
   * OpenSSL key outside the heap.
   */
  keyDer: Buffer;
  /**
   * Start of the lifetime the rotation point is measured on: the later of notBefore and the moment
   * the agent received the SVID. notBefore is backdated for clock skew (10 s), which would put a
   * short-lived SVID at its half-life the moment it is issued.
   */
  notBefore: number;
  notAfter: number;
  /** The entry revision this SVID was minted for; a newer revision means re-mint. */
  entryRevision: string;
  hint: string;
  /** Key identifiers of the chain's authorities, signer first ('' if unnamed); see chainAuthorityIds. */
  authorityIds: readonly string[];
}

/**
 * The SPIRE-style bound on cached X509-SVIDs (`x509_svid_cache_max_size`,
 * `x509_svid_cache_idle`): past `maxSize`, SVIDs of entries that no connected workload is
 * subscribed to and that nobody asked for within `idleMs` are dropped, least recently used first,
 * and minted again when a workload asks. Subscribed entries are never dropped, so the cache can
 * exceed the bound by what connected workloads hold. `maxSize` 0 = no bound.
 */
export interface SvidCachePolicy {
  maxSize: number;
  idleMs: number;
}

export interface WorkloadCacheHooks {
  /** SVIDs dropped to stay within the bound. */
  evicted?(count: number): void;
  /** A workload asked for entries whose SVID is not cached (evicted, or never minted): mint them. */
  wanted?(entryIds: string[]): void;
}

/** A stream's interest: its selectors ("type:value"), or undefined for every change. */
interface Subscription {
  listener: () => void;
  keys: ReadonlySet<string> | undefined;
}

/** What one workload may see right now. */
export interface WorkloadIdentities {
  entries: EntryMsg[];
  svids: CachedX509Svid[];
  bundle: SpiffeBundle | undefined;
  federated: Map<string, SpiffeBundle>;
}

/**
 * The agent's in-memory state: authorized entries, minted SVIDs, own and federated bundles.
 * Workload API streams subscribe and are told about every change; each works out whether its
 * caller's view changed. An SVID is never handed out after its notAfter: a timer fires at the
 * earliest expiry so streams learn that an SVID disappeared even when nothing else happens.
 */
export class WorkloadCache {
  private entries = new Map<string, EntryMsg>();
  /** Entries by each of their selectors ("type:value"): matching a workload costs its selectors, not the entry count. */
  private bySelector = new Map<string, EntryMsg[]>();
  private readonly svids = new Map<string, CachedX509Svid>();
  private bundle: SpiffeBundle | undefined;
  private federated = new Map<string, SpiffeBundle>();
  private readonly subs = new Set<Subscription>();
  /** Subscriptions by each of their selector keys: a batch of SVIDs wakes only the streams that match them. */
  private readonly subsByKey = new Map<string, Set<Subscription>>();
  /** When a workload last asked for each entry's X509-SVID (epoch ms), for the LRU. */
  private readonly lastUsed = new Map<string, number>();
  private expiryTimer: TimerHandle | undefined;
  private expiryAt = Infinity;
  private gen = 0;

  constructor(
    private readonly clock: Clock,
    private readonly policy: SvidCachePolicy = { maxSize: 0, idleMs: 0 },
    private readonly hooks: WorkloadCacheHooks = {},
  ) {}

  get ownBundle(): SpiffeBundle | undefined {
    return this.bundle;
  }
  get entryCount(): number {
    return this.entries.size;
  }
  get svidCount(): number {
    return this.svids.size;
  }
  allEntries(): EntryMsg[] {
    return [...this.entries.values()];
  }
  allSvids(): IterableIterator<CachedX509Svid> {
    return this.svids.values();
  }
  entry(entryId: string): EntryMsg | undefined {
    return this.entries.get(entryId);
  }
  svidFor(entryId: string): CachedX509Svid | undefined {
    return this.svids.get(entryId);
  }
  federatedBundles(): Map<string, SpiffeBundle> {
    return this.federated;
  }

  /**
   * Moves on every change of what a workload can be shown (entries, SVIDs, bundles, expiry): a
   * response rendered at one generation stays exact for as long as the generation is the same and
   * none of its SVIDs has reached its notAfter.
   */
  get generation(): number {
    return this.gen;
  }

  /** Whether entries were ever received from the server: before that, "no entry" means "not known yet", not "no identity". */
  get entriesKnown(): boolean {
    return this.entriesReceived;
  }
  private entriesReceived = false;

  setEntries(entries: EntryMsg[]): void {
    this.entriesReceived = true;
    this.entries = new Map(entries.map((e) => [e.id, e]));
    this.bySelector = new Map();
    for (const e of entries) {
      for (const sel of e.selectors) {
        const key = `${sel.type}:${sel.value}`;
        const list = this.bySelector.get(key);
        if (list) list.push(e);
        else this.bySelector.set(key, [e]);
      }
    }
    for (const id of this.svids.keys()) if (!this.entries.has(id)) this.svids.delete(id);
    this.changed();
  }

  /**
   * Applies an incremental sync answer: changed entries replace or join the view, deleted ids leave
   * it with their SVIDs. Costs O(the change), not O(the view); workloads are told once.
   */
  applyEntryDelta(changed: readonly EntryMsg[], deletedIds: readonly string[]): void {
    this.entriesReceived = true;
    if (changed.length === 0 && deletedIds.length === 0) return;
    const unindex = (id: string) => {
      const old = this.entries.get(id);
      if (!old) return;
      this.entries.delete(id);
      for (const sel of old.selectors) {
        const key = `${sel.type}:${sel.value}`;
        const list = this.bySelector.get(key)?.filter((e) => e.id !== id);
        if (list?.length) this.bySelector.set(key, list);
        else this.bySelector.delete(key);
      }
    };
    for (const id of deletedIds) {
      unindex(id);
      this.svids.delete(id);
    }
    for (const e of changed) {
      unindex(e.id);
      this.entries.set(e.id, e);
      for (const sel of e.selectors) {
        const key = `${sel.type}:${sel.value}`;
        const list = this.bySelector.get(key);
        if (list) list.push(e);
        else this.bySelector.set(key, [e]);
      }
    }
    this.changed();
  }

  setBundles(bundle: SpiffeBundle, federated: Map<string, SpiffeBundle>): boolean {
    const same = this.bundle?.sequenceNumber === bundle.sequenceNumber && sameFederated(this.federated, federated);
    if (same && this.bundle) return false;
    this.bundle = bundle;
    this.federated = federated;
    this.changed();
    return true;
  }

  /**
   * Stores a batch of minted SVIDs and tells only the streams whose caller matches one of them,
   * once for the whole batch; then keeps the cache within its bound.
   */
  putSvids(svids: CachedX509Svid[]): void {
    if (svids.length === 0) return;
    const wake = new Set<Subscription>();
    let earliest = Infinity;
    this.gen++;
    for (const s of svids) {
      this.svids.set(s.entryId, s);
      if (s.notAfter < earliest) earliest = s.notAfter;
      const entry = this.entries.get(s.entryId);
      if (entry) this.subscriptionsMatching(entry, wake);
    }
    // The expiry timer only moves earlier: one that fires early finds nothing expired and re-arms.
    if (earliest < this.expiryAt) this.scheduleExpiry();
    this.enforceBound();
    for (const sub of this.subs) if (!sub.keys) wake.add(sub);
    for (const sub of wake) if (this.subs.has(sub)) sub.listener();
  }

  /** Streams whose selectors include all of the entry's (through the index of one of its selectors). */
  private subscriptionsMatching(entry: EntryMsg, into: Set<Subscription>): void {
    const first = entry.selectors[0];
    if (!first) return;
    for (const sub of this.subsByKey.get(`${first.type}:${first.value}`) ?? []) {
      if (!into.has(sub) && entry.selectors.every((s) => sub.keys!.has(`${s.type}:${s.value}`))) into.add(sub);
    }
  }

  /** Entries whose selectors all appear among `have`, oldest entry first. */
  private match(have: ReadonlySet<string>): EntryMsg[] {
    const candidates = new Set<EntryMsg>();
    for (const key of have) for (const e of this.bySelector.get(key) ?? []) candidates.add(e);
    return [...candidates]
      .filter((e) => e.selectors.every((s) => have.has(`${s.type}:${s.value}`)))
      .sort((a, b) => Number(a.created_at) - Number(b.created_at) || a.id.localeCompare(b.id));
  }

  /**
   * Entries whose selectors all appear among the workload's (SPIRE's subset match), oldest entry
   * first. With `x509`, the caller is asking for X509-SVIDs: the entries count as used now, and
   * those without a cached SVID are reported to the `wanted` hook to be minted.
   */
  identitiesFor(selectors: readonly Selector[], opts: { x509?: boolean } = {}): WorkloadIdentities {
    const have = new Set(selectors.map((s) => `${s.type}:${s.value}`));
    const now = this.clock.nowMs();
    const entries = this.match(have);
    if (opts.x509 && entries.length > 0) {
      const missing: string[] = [];
      for (const e of entries) {
        this.lastUsed.set(e.id, now);
        if (!this.svids.has(e.id)) missing.push(e.id);
      }
      if (missing.length > 0) this.hooks.wanted?.(missing);
    }
    const svids = entries.map((e) => this.svids.get(e.id)).filter((s): s is CachedX509Svid => s !== undefined && s.notAfter > now);
    const federated = new Map<string, SpiffeBundle>();
    for (const e of entries) for (const td of e.federates_with) {
      const b = this.federated.get(td);
      if (b) federated.set(td, b);
    }
    return { entries, svids, bundle: this.bundle, federated };
  }

  /**
   * What `identitiesFor` with `x509` records for entries whose SVIDs are all cached: they count as
   * used now (for a caller served from an already rendered answer).
   */
  markUsed(entryIds: readonly string[]): void {
    const now = this.clock.nowMs();
    for (const id of entryIds) this.lastUsed.set(id, now);
  }

  /**
   * Calls `listener` on changes. With the caller's selectors, new SVIDs wake it only when they
   * are its own, and its entries' SVIDs are never evicted while it is subscribed.
   */
  subscribe(listener: () => void, selectors?: readonly Selector[]): () => void {
    const sub: Subscription = { listener, keys: selectors && new Set(selectors.map((s) => `${s.type}:${s.value}`)) };
    this.subs.add(sub);
    for (const key of sub.keys ?? []) {
      const set = this.subsByKey.get(key);
      if (set) set.add(sub);
      else this.subsByKey.set(key, new Set([sub]));
    }
    return () => {
      if (!this.subs.delete(sub)) return;
      const now = this.clock.nowMs();
      for (const key of sub.keys ?? []) {
        const set = this.subsByKey.get(key);
        set?.delete(sub);
        if (set?.size === 0) this.subsByKey.delete(key);
      }
      // The LRU clock of a stream's entries starts when it closes, not at its last update.
      if (sub.keys) for (const e of this.match(sub.keys)) this.lastUsed.set(e.id, now);
    };
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** Entries a connected workload is subscribed to, or that a workload asked for within the idle time. */
  wantedEntryIds(): Set<string> {
    const out = new Set<string>();
    for (const sub of this.subs) if (sub.keys) for (const e of this.match(sub.keys)) out.add(e.id);
    const since = this.clock.nowMs() - this.policy.idleMs;
    for (const [id, at] of this.lastUsed) {
      if (!this.entries.has(id)) this.lastUsed.delete(id); // the entry is gone: forget it
      else if (at > since) out.add(id);
    }
    return out;
  }

  /** How many more SVIDs fit under the bound (Infinity when unbounded). */
  get svidRoom(): number {
    return this.policy.maxSize > 0 ? Math.max(0, this.policy.maxSize - this.svids.size) : Infinity;
  }

  /**
   * Drops SVIDs past the bound, least recently used first, among entries that no connected
   * workload is subscribed to and that nobody asked for within the idle time.
   */
  enforceBound(): number {
    const { maxSize } = this.policy;
    if (maxSize <= 0 || this.svids.size <= maxSize) return 0;
    const wanted = this.wantedEntryIds();
    const victims = [...this.svids.keys()].filter((id) => !wanted.has(id)).sort((a, b) => (this.lastUsed.get(a) ?? 0) - (this.lastUsed.get(b) ?? 0));
    const count = Math.min(victims.length, this.svids.size - maxSize);
    for (let i = 0; i < count; i++) this.svids.delete(victims[i]);
    if (count > 0) {
      this.gen++;
      this.hooks.evicted?.(count);
    }
    return count;
  }

  private changed(): void {
    this.gen++;
    this.scheduleExpiry();
    for (const sub of [...this.subs]) if (this.subs.has(sub)) sub.listener();
  }

  private scheduleExpiry(): void {
    if (this.expiryTimer) this.clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.expiryAt = Infinity;
    const now = this.clock.nowMs();
    let next = Infinity;
    for (const s of this.svids.values()) if (s.notAfter > now && s.notAfter < next) next = s.notAfter;
    if (next === Infinity) return;
    this.expiryAt = next;
    this.expiryTimer = this.clock.setTimeout(() => this.changed(), next - now + 1);
  }

  close(): void {
    if (this.expiryTimer) this.clock.clearTimeout(this.expiryTimer);
    this.subs.clear();
    this.subsByKey.clear();
  }
}

function sameFederated(a: Map<string, SpiffeBundle>, b: Map<string, SpiffeBundle>): boolean {
  if (a.size !== b.size) return false;
  for (const [td, bundle] of b) if (a.get(td)?.sequenceNumber !== bundle.sequenceNumber) return false;
  return true;
}
