/**
 * Messages between the fleet benchmark's coordinator (`bench/fleet.bench.ts`) and its agent worker
 * processes (`bench/fleet/worker.ts`), over the child_process IPC channel. Times are wall-clock
 * milliseconds (`performance.timeOrigin + performance.now()`), comparable across the processes.
 */

export interface WorkerInit {
  type: 'init';
  /** The servers; agent i starts on addresses[i % n] and moves to the next one when its server is unreachable. */
  addresses: string[];
  trustDomain: string;
  /** The bundle the agents start from (what an operator hands them as trust_bundle_path). */
  bundlePem: string;
  bundleSequence: string;
  syncIntervalMs: number;
  /** The poll interval while an agent's change stream is up (the agent's push_sync_interval), bounded by its next SVID renewal. */
  pushSyncIntervalMs: number;
  /** Fraction of an SVID's lifetime after which it is renewed (the agent's rotation_fraction). */
  rotationFraction: number;
  /** Keep a WatchChanges stream per agent and sync at once on its notifications (else poll only). */
  push: boolean;
  /** Incremental syncs (the agent lists what it holds, the server answers the delta); else the first protocol's full lists. */
  incremental: boolean;
  /** Attestations in flight at once per worker. */
  attestConcurrency: number;
  agents: { index: number; token: string }[];
}

/** `window` starts the measured window; `window-end` stops counting load (changes are still watched until `stop`). */
export type ToWorker = WorkerInit | { type: 'window' } | { type: 'window-end' } | { type: 'stop' };

export interface WorkerStats {
  agents: number;
  attested: number;
  /** SyncAuthorizedEntries round trips in the window, ms. */
  syncMs: number[];
  /** When each of those syncs started (wall ms), in the same order. */
  syncAt: number[];
  /** BatchNewX509SVID round trips in the window, ms, and the SVIDs they brought. */
  issueCallMs: number[];
  issued: number;
  /** Entries held across the worker's agents at the end, and how many of them have a current SVID. */
  entriesHeld: number;
  svidsHeld: number;
  /** SVIDs that expired before their replacement came (from the window on, or held expired at the end), and agents that lacked an SVID so or at the end. */
  svidsLapsed: number;
  agentsLostSvids: number;
  /** Propagation events seen in the window: `seen:<entry id>:<revision>` / `gone:<entry id>` → wall ms. */
  entryEvents: Record<string, number>;
  /** Bundle sequence → when each agent first saw it (wall ms), for sequences first seen in the window. */
  bundleSeen: Record<string, number[]>;
  errors: Record<string, number>;
  /** The same, counted only in the measured window (setup's overload, such as the fleet's first SVIDs all at once, is left out). */
  windowErrors: Record<string, number>;
  /** Change notifications received on watch streams (first messages not counted), and streams open at the end. */
  notifications: number;
  watchesOpen: number;
  /** Sync answers by kind (unchanged, incremental, full) in the window. */
  syncKinds: Record<string, number>;
  /** When an agent that had moved to another server (its own was unreachable) first synced there (wall ms). */
  failedOver: number[];
  /** Syncs during which the agent moved to another server and got its answer there: their duration, ms. */
  failoverSyncMs: number[];
  /** When calls failed (sync, bundles, issuance calls; not item refusals), wall ms. */
  callFailuresAt: number[];
  /**
   * This worker's own event-loop lag in the window: a 50 ms timer's lateness, ms, and when each
   * was measured (wall ms). A sync's round trip includes it: the simulator's share of the latency.
   */
  loopLagMs: number[];
  loopLagAt: number[];
  /**
   * This worker's own GC pauses of GC_PAUSE_RECORDED_MS or more in the window: [start wall ms,
   * duration ms]. A sync in flight across one waited for the simulator, not the server.
   */
  gcPauses: [number, number][];
}

/** The shortest simulator GC pause the workers record (WorkerStats.gcPauses). */
export const GC_PAUSE_RECORDED_MS = 10;

export type FromWorker =
  | { type: 'attested'; attested: number; failed: number; firstError?: string }
  /** Every agent has synced and holds an SVID for each of its entries. */
  | { type: 'converged'; at: number }
  | { type: 'report'; stats: WorkerStats };

/** Wall-clock ms with sub-ms precision, comparable between processes on one machine. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}
