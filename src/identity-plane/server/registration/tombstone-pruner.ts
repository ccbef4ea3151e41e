import type { Clock } from '../../../common/clock.js';
import type { Datastore } from '../datastore/types.js';

/** Revisions of the two change feeds as this server has pulled them. */
export interface FeedRevisions {
  readonly entries: number;
  readonly agents: number;
}

interface Sample extends FeedRevisions {
  readonly atMs: number;
}

export interface TombstonePrunerConfig {
  readonly datastore: Pick<Datastore, 'pruneEntryTombstones' | 'pruneAgentTombstones'>;
  readonly clock: Clock;
  readonly retentionSeconds: number;
  /** The feed revisions this server has seen (its entry and agent caches). */
  readonly revisions: () => FeedRevisions;
}

/**
 * Deletes entry and agent tombstones once they are older than the retention. Every deletion and
 * eviction leaves a tombstone so other servers' caches learn of it, and nothing removed them, so
 * the tables grew with every deletion for the life of the deployment.
 *
 * Tombstones carry a revision, not a time, so the pruner keeps (time, revision) samples of the
 * feeds as this server saw them, and prunes through the newest revision it saw at least
 * `retentionSeconds` ago: every tombstone up to it existed then, so it is at least that old. A
 * server that lags further behind than the retention is not harmed, only slowed: its next pull
 * finds its revision behind the pruned one and reloads the full set (`fullResync`). Samples are
 * kept only when a revision moved, so memory is bounded by the writes within the retention.
 */
export class TombstonePruner {
  private readonly samples: Sample[] = [];
  private prunedThrough: FeedRevisions = { entries: 0, agents: 0 };

  constructor(private readonly config: TombstonePrunerConfig) {}

  /** Records the current revisions and prunes what has aged past the retention; returns the tombstones removed. */
  async run(): Promise<FeedRevisions> {
    const now = this.config.clock.nowMs();
    const current = this.config.revisions();
    const last = this.samples[this.samples.length - 1];
    if (!last || last.entries !== current.entries || last.agents !== current.agents) this.samples.push({ ...current, atMs: now });

    const cutoff = now - this.config.retentionSeconds * 1000;
    let due: Sample | undefined;
    while (this.samples.length > 0 && this.samples[0].atMs <= cutoff) due = this.samples.shift();
    if (!due) return { entries: 0, agents: 0 };
    // The newest sample at or before the cutoff stays as the floor of the next window.
    this.samples.unshift(due);
    const removed = { entries: 0, agents: 0 };
    if (due.entries > this.prunedThrough.entries) {
      removed.entries = await this.config.datastore.pruneEntryTombstones(due.entries);
      this.prunedThrough = { ...this.prunedThrough, entries: due.entries };
    }
    if (due.agents > this.prunedThrough.agents) {
      removed.agents = await this.config.datastore.pruneAgentTombstones(due.agents);
      this.prunedThrough = { ...this.prunedThrough, agents: due.agents };
    }
    return removed;
  }
}
