import type { Datastore, RegistrationEntry } from '../datastore/types.js';
import { AuthorizationIndex } from './authorized-index.js';

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
    if (changes.fullResync || !this.loaded) {
      this.entries.clear();
      this.index.clear();
    }
    for (const e of changes.changed) {
      this.entries.set(e.id, e);
      this.index.upsert(e);
    }
    for (const id of changes.deletedIds) {
      this.entries.delete(id);
      this.index.delete(id);
    }
    this.revision = changes.revision;
    this.loaded = true;
  }
}
