import * as grpc from '@grpc/grpc-js';
import type { Clock, TimerHandle } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { ChangeNotificationMsg } from '../../server-api/messages.js';
import type { ServerCallError, ServerClient } from '../../server-api/node-client.js';

/** Reconnect delays of the change stream: base, cap (jitter ±50 % on each), and the wait after UNIMPLEMENTED. */
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 30_000;
const UNSUPPORTED_RETRY_MS = 300_000;
/**
 * A pushed bundle change is acted on at a random point within the spread the server asks for (it
 * scales it with the streams it holds, as the whole fleet hears of the change at once), or within
 * this default when it names none; never later than the cap, whatever the server says.
 */
export const BUNDLE_NOTIFICATION_SPREAD_MS = 1000;
export const BUNDLE_NOTIFICATION_SPREAD_MAX_MS = 60_000;

/** How long to spread a bundle notification over. */
export function bundleSpreadMs(m: ChangeNotificationMsg): number {
  const asked = m.spread_ms ?? 0;
  return asked > 0 ? Math.min(asked, BUNDLE_NOTIFICATION_SPREAD_MAX_MS) : BUNDLE_NOTIFICATION_SPREAD_MS;
}

export interface ChangeWatchDeps {
  server: Pick<ServerClient, 'watch'>;
  clock: Clock;
  logger: Logger;
  /** Whether the agent holds an identity to open the stream with. */
  attested(): boolean;
  /**
   * Something changed at the server (or may have, after a gap): sync now. With `bundleState` only
   * the bundles changed (a bundle notification that carries the new state): fetching them is enough.
   */
  syncNow(bundleState?: Buffer): void;
  events?: {
    pushConnected?(up: boolean): void;
    pushNotification?(kind: 'entries' | 'bundle' | 'initial'): void;
  };
}

/**
 * The agent's end of WatchChanges: one long-lived stream to the server, reopened with backoff and
 * jitter when it ends (at once when the agent itself rebuilt the connection on a new SVID or trust
 * bundle). A notification only triggers a sync; an entry change at once, a bundle change (which the
 * whole fleet hears at the same moment) at a random point within the server's spread, and as a
 * bundle fetch alone when the server sent the new bundle state.
 */
export class ChangeWatch {
  private stream: { cancel(): void } | undefined;
  private retryTimer: TimerHandle | undefined;
  private bundleTimer: TimerHandle | undefined;
  private pendingBundleState: Buffer | undefined;
  private failures = 0;
  private up = false;
  private wasEverUp = false;
  private stopped = false;

  constructor(private readonly deps: ChangeWatchDeps) {}

  get connected(): boolean {
    return this.up;
  }

  start(): void {
    this.open();
  }

  stop(): void {
    this.stopped = true;
    for (const t of [this.retryTimer, this.bundleTimer]) if (t) this.deps.clock.clearTimeout(t);
    this.stream?.cancel();
    this.stream = undefined;
  }

  private open(): void {
    if (this.stopped || this.stream) return;
    if (!this.deps.attested()) {
      this.retry(RETRY_BASE_MS * 4);
      return;
    }
    this.stream = this.deps.server.watch((m) => this.onMessage(m), (err) => this.onEnd(err));
  }

  private onMessage(m: ChangeNotificationMsg): void {
    const ev = this.deps.events;
    if (m.initial) {
      this.up = true;
      this.failures = 0;
      ev?.pushConnected?.(true);
      ev?.pushNotification?.('initial');
      // Back after a gap: changes made meanwhile were not pushed, so catch up now rather than at the next poll.
      if (this.wasEverUp) this.deps.syncNow();
      this.wasEverUp = true;
      return;
    }
    ev?.pushNotification?.(m.bundle ? 'bundle' : 'entries');
    if (m.entries) {
      this.deps.syncNow();
      return;
    }
    // Spread the fleet's syncs (and its reconnects on the new trust anchors) instead of one burst at the server.
    // A later bundle notification within the spread replaces the state the timer will act on.
    this.pendingBundleState = m.bundle_state?.length ? m.bundle_state : undefined;
    if (this.bundleTimer) return;
    this.bundleTimer = this.deps.clock.setTimeout(() => {
      this.bundleTimer = undefined;
      const state = this.pendingBundleState;
      this.pendingBundleState = undefined;
      this.deps.syncNow(state);
    }, Math.random() * bundleSpreadMs(m));
  }

  private onEnd(err: ServerCallError | undefined): void {
    this.stream = undefined;
    const wasUp = this.up;
    if (wasUp) this.deps.events?.pushConnected?.(false);
    this.up = false;
    if (this.stopped) return;
    if (err?.status === grpc.status.UNIMPLEMENTED) {
      this.deps.logger.info('the server does not push changes; polling only');
      this.retry(UNSUPPORTED_RETRY_MS);
      return;
    }
    if (err?.code === 'watch-streams-exhausted') {
      this.retry(RETRY_MAX_MS); // the server is full: poll, and ask again rarely
      return;
    }
    // A rebuilt connection (CANCELLED by the agent's own client) comes back at once; any other end
    // backs off, doubling while the stream does not come up, so a fleet whose server restarted or
    // is overloaded does not reconnect in lockstep.
    const cancelled = err?.status === grpc.status.CANCELLED;
    if (err ? !cancelled : !wasUp) this.failures++;
    if (err && !cancelled) this.deps.logger.debug({ err: err.message }, 'change stream closed; reconnecting');
    // A refusal (banned, evicted, SVID replaced) is for the sync path to act on: run it now.
    if (err && (err.code === 'agent-not-attested' || err.code === 'agent-svid-stale' || err.code === 'agent-banned')) this.deps.syncNow();
    this.retry(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** this.failures));
  }

  private retry(baseMs: number): void {
    if (this.stopped) return;
    if (this.retryTimer) this.deps.clock.clearTimeout(this.retryTimer);
    this.retryTimer = this.deps.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.open();
    }, baseMs * (0.5 + Math.random()));
  }
}
