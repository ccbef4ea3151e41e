import type { Clock } from '../../common/clock.js';
import { sleep } from '../proc.js';

/** At most this many calls in flight at once (a slow server must not pile up calls). */
const MAX_IN_FLIGHT = 64;
/** How long release() waits for calls still in flight. */
const RELEASE_WAIT_MS = 5_000;

/**
 * The request loop of the load-style faults (attestation-flood, bad-csr): the caller makes call 0
 * itself (it decides whether the fault is injected at all); this launches call i at
 * `startedAt + i × intervalMs` until `maxCalls` calls in all, the deadline, or release(), with at
 * most MAX_IN_FLIGHT calls outstanding. `onEnd` says why it stopped launching on its own, at the
 * moment it does (calls may still be in flight); `finished` settles once they have all answered.
 */
export class PacedCalls {
  private readonly stop = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  readonly finished: Promise<void>;

  constructor(private readonly opts: { startedAt: number; clock: Clock; intervalMs: number; deadline: number; maxCalls: number; call: () => Promise<void>; onEnd: (why: 'count' | 'duration') => void }) {
    this.finished = (async () => {
      let i = 1;
      for (; i < opts.maxCalls; i++) {
        const at = opts.startedAt + i * opts.intervalMs;
        if (at >= opts.deadline) {
          opts.onEnd('duration');
          break;
        }
        await sleep(Math.max(0, at - opts.clock.nowMs()), this.stop.signal, opts.clock);
        while (this.inFlight.size >= MAX_IN_FLIGHT && !this.stop.signal.aborted) await Promise.race(this.inFlight);
        if (this.stop.signal.aborted) break;
        const p = opts.call().finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
      if (i >= opts.maxCalls && !this.stop.signal.aborted) opts.onEnd('count');
      await Promise.all(this.inFlight);
    })();
  }

  /** Stops launching and waits (at most RELEASE_WAIT_MS) for the calls in flight; returns how many never answered. */
  async release(): Promise<number> {
    this.stop.abort();
    await Promise.race([this.finished, sleep(RELEASE_WAIT_MS, undefined, this.opts.clock)]);
    return this.inFlight.size;
  }
}
