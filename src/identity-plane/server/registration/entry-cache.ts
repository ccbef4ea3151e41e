import type { Datastore, RegistrationEntry } from '../datastore/types.js';
import { AuthorizationIndex } from './authorized-index.js';

/**
 * Told about each change the cache applies (the change notifier): every version of a changed entry
 * is shown with the index as it stands around it (the old one before, the new one after), so the
 * observer can find who could reach the entry before and after. `reset` is a full reload (anyone may
 * be affected); `done` ends one pull.
 */
export interface EntryChangeObserver {
  touched(entry: RegistrationEntry, index: AuthorizationIndex<RegistrationEntry>): void;
  reset(): void;
  done(): void;
}

/**
 * The server's in-memory view of all registration entries, kept current from the datastore's
 * revisioned change feed. Authorization runs against this view on every agent request, so it must
 * not cost a database query each time (the datastore is the first bottleneck at scale). Local
 * writes refresh it at once; writes by other servers arrive at the next periodic refresh.
 */
export class EntryCache {
  private readonly entries = new Map<string, RegistrationEntry>();
  private revision = 0;
  private loaded = false;
  private inflight: Promise<void> | undefined;
  private readonly index: AuthorizationIndex<RegistrationEntry>;
  private observer: EntryChangeObserver | undefined;

  /** `serverId` is the parent of node-alias entries (the server's own SPIFFE ID). */
  constructor(
    private readonly datastore: Datastore,
    serverId: string,
  ) {
    this.index = new AuthorizationIndex(serverId);
  }

  /** The entries an agent may obtain SVIDs for; costs O(node aliases + the entries it reaches). */
  authorizedFor(agentId: string, nodeSelectors: readonly { type: string; value: string }[], nowMs: number): RegistrationEntry[] {
    return this.index.authorized(agentId, nodeSelectors, nowMs);
  }

  /** Index sizes, for the authorization index gauge. */
  indexSizes(): { entries: number; parents: number; aliases: number } {
    return this.index.sizes();
  }

  /** One observer of applied changes (the change notifier). */
  observe(observer: EntryChangeObserver): void {
    this.observer = observer;
  }

  get currentRevision(): number {
    return this.revision;
  }

  get size(): number {
    return this.entries.size;
  }

  all(): RegistrationEntry[] {
    return [...this.entries.values()];
  }

  /** Pulls changes since the last refresh; concurrent callers share one pull. */
  refresh(): Promise<void> {
    this.inflight ??= this.pull().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async pull(): Promise<void> {
    const changes = await this.datastore.listEntriesChangedSince(this.loaded ? this.revision : 0);
    const full = changes.fullResync || !this.loaded;
    // On a full reload every agent may be affected: the observer is told once, not per entry.
    const obs = full ? undefined : this.observer;
    if (full) {
      this.entries.clear();
      this.index.clear();
      if (this.loaded) this.observer?.reset();
    }
    for (const e of changes.changed) {
      const old = this.entries.get(e.id);
      if (old) obs?.touched(old, this.index);
      this.entries.set(e.id, e);
      this.index.upsert(e);
      obs?.touched(e, this.index);
    }
    for (const id of changes.deletedIds) {
      const old = this.entries.get(id);
      if (old) obs?.touched(old, this.index);
      this.entries.delete(id);
      this.index.delete(id);
    }
    this.revision = changes.revision;
    this.loaded = true;
    this.observer?.done();
  }
}
