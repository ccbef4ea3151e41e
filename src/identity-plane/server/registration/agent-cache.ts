import { systemClock, type Clock } from '../../../common/clock.js';
import type { AttestedAgent, Datastore } from '../datastore/types.js';

/** Default of `agent_refresh_min_interval`: pulls an unknown caller can cause, at most one per this many ms. */
export const DEFAULT_AGENT_REFRESH_MIN_INTERVAL_MS = 1000;

export interface AgentCacheOptions {
  readonly clock?: Clock;
  /** Least time between two pulls that callers unknown to the view trigger (refreshForUnknown). */
  readonly minUnknownRefreshIntervalMs?: number;
}

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
  private lastPullStartMs = -Infinity;
  private scheduled: Promise<void> | undefined;
  private readonly clock: Clock;
  private readonly minUnknownRefreshIntervalMs: number;
  private readonly listeners = new Set<(changedIds: readonly string[] | 'all') => void>();

  constructor(
    private readonly datastore: Datastore,
    options: AgentCacheOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.minUnknownRefreshIntervalMs = options.minUnknownRefreshIntervalMs ?? DEFAULT_AGENT_REFRESH_MIN_INTERVAL_MS;
  }

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

  /** Called after each pull with the agent IDs whose record changed or went, or 'all' on a full reload (watch streams re-authenticate). */
  onChange(listener: (changedIds: readonly string[] | 'all') => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
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

  /**
   * A refresh for a caller the view does not know (no record, or a serial it has not seen): it may
   * have attested or renewed through another server since the last pull. Any client with an old
   * SVID can ask for this, so it is single-flight and rate-limited: callers arriving within
   * `minUnknownRefreshIntervalMs` of the last pull's start share one pull scheduled at the end of
   * that interval. A flood of stale-serial calls then costs at most one datastore read per
   * interval, and a genuinely new agent waits at most that long.
   */
  refreshForUnknown(): Promise<void> {
    if (this.scheduled) return this.scheduled;
    const wait = this.lastPullStartMs + this.minUnknownRefreshIntervalMs - this.clock.nowMs();
    if (wait <= 0) return this.refresh();
    this.scheduled = new Promise<void>((resolve) => {
      this.clock.setTimeout(resolve, wait);
    }).then(() => {
      this.scheduled = undefined;
      return this.refresh();
    });
    return this.scheduled;
  }

  private async pull(): Promise<void> {
    this.lastPullStartMs = this.clock.nowMs();
    const changes = await this.datastore.listAgentsChangedSince(this.loaded ? this.revision : 0);
    const full = changes.fullResync || !this.loaded;
    if (full) this.agents.clear();
    for (const a of changes.changed) this.agents.set(a.spiffeId, a);
    for (const id of changes.deletedIds) this.agents.delete(id);
    this.revision = changes.revision;
    this.loaded = true;
    if (this.listeners.size === 0 || (!full && changes.changed.length + changes.deletedIds.length === 0)) return;
    const ids = full ? 'all' : [...changes.changed.map((a) => a.spiffeId), ...changes.deletedIds];
    for (const l of this.listeners) l(ids);
  }
}
