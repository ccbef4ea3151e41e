import type { KeyObject } from 'node:crypto';
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
  /** DER certificates, leaf first. */
  chain: Buffer[];
  privateKey: KeyObject;
  /** PKCS#8 DER of the key, as the Workload API sends it (encoded once, not per response). */
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
  private readonly listeners = new Set<() => void>();
  private expiryTimer: TimerHandle | undefined;

  constructor(private readonly clock: Clock) {}

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
  svidFor(entryId: string): CachedX509Svid | undefined {
    return this.svids.get(entryId);
  }
  federatedBundles(): Map<string, SpiffeBundle> {
    return this.federated;
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

  putSvids(svids: CachedX509Svid[]): void {
    if (svids.length === 0) return;
    for (const s of svids) this.svids.set(s.entryId, s);
    this.changed();
  }

  /** Entries whose selectors all appear among the workload's (SPIRE's subset match), oldest entry first. */
  identitiesFor(selectors: readonly Selector[]): WorkloadIdentities {
    const have = new Set(selectors.map((s) => `${s.type}:${s.value}`));
    const now = this.clock.nowMs();
    const candidates = new Set<EntryMsg>();
    for (const key of have) for (const e of this.bySelector.get(key) ?? []) candidates.add(e);
    const entries = [...candidates]
      .filter((e) => e.selectors.every((s) => have.has(`${s.type}:${s.value}`)))
      .sort((a, b) => Number(a.created_at) - Number(b.created_at) || a.id.localeCompare(b.id));
    const svids = entries.map((e) => this.svids.get(e.id)).filter((s): s is CachedX509Svid => s !== undefined && s.notAfter > now);
    const federated = new Map<string, SpiffeBundle>();
    for (const e of entries) for (const td of e.federates_with) {
      const b = this.federated.get(td);
      if (b) federated.set(td, b);
    }
    return { entries, svids, bundle: this.bundle, federated };
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get subscriberCount(): number {
    return this.listeners.size;
  }

  private changed(): void {
    this.scheduleExpiry();
    for (const l of [...this.listeners]) l();
  }

  private scheduleExpiry(): void {
    if (this.expiryTimer) this.clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const now = this.clock.nowMs();
    let next = Infinity;
    for (const s of this.svids.values()) if (s.notAfter > now && s.notAfter < next) next = s.notAfter;
    if (next === Infinity) return;
    this.expiryTimer = this.clock.setTimeout(() => this.changed(), next - now + 1);
  }

  close(): void {
    if (this.expiryTimer) this.clock.clearTimeout(this.expiryTimer);
    this.listeners.clear();
  }
}

function sameFederated(a: Map<string, SpiffeBundle>, b: Map<string, SpiffeBundle>): boolean {
  if (a.size !== b.size) return false;
  for (const [td, bundle] of b) if (a.get(td)?.sequenceNumber !== bundle.sequenceNumber) return false;
  return true;
}
