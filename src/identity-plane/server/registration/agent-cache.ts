import type { AttestedAgent, Datastore } from '../datastore/types.js';

/**
 * The server's in-memory view of attested agents, kept current from the datastore's agent change
 * feed (revisions + eviction tombstones), like EntryCache for entries: every agent API call
 * authenticates against it, so the steady state costs no datastore read. This server's own writes
 * (attest, renew, ban, evict) refresh it before they return; other servers' writes arrive with the
 * periodic refresh (`cache_reload_interval`).
 */
export class AgentCache {
  private readonly agents = new Map<string, AttestedAgent>();
  private revision = 0;
  private loaded = false;
  private inflight: Promise<void> | undefined;
  private again = false;

  constructor(private readonly datastore: Datastore) {}

  get currentRevision(): number {
    return this.revision;
  }

  get size(): number {
    return this.agents.size;
  }

  /** Agents in the view by state (the attested-agents gauge). */
  counts(): { active: number; banned: number } {
    let banned = 0;
    for (const a of this.agents.values()) if (a.banned) banned++;
    return { active: this.agents.size - banned, banned };
  }

  /** The cached record, or undefined when the view has none (not attested, evicted, or not pulled yet). */
  get(spiffeId: string): AttestedAgent | undefined {
    return this.agents.get(spiffeId);
  }

  /**
   * Pulls changes since the last refresh. Concurrent callers share a pull, but a caller arriving while
   * one runs gets one more pull after it, so a write made just before the call is always seen.
   */
  refresh(): Promise<void> {
    if (this.inflight) {
      this.again = true;
      return this.inflight;
    }
    this.inflight = (async () => {
      try {
        do {
          this.again = false;
          await this.pull();
        } while (this.again);
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }

  private async pull(): Promise<void> {
    const changes = await this.datastore.listAgentsChangedSince(this.loaded ? this.revision : 0);
    if (changes.fullResync || !this.loaded) this.agents.clear();
    for (const a of changes.changed) this.agents.set(a.spiffeId, a);
    for (const id of changes.deletedIds) this.agents.delete(id);
    this.revision = changes.revision;
    this.loaded = true;
  }
}
