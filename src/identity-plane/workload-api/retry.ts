/**
 * Keeping a Workload API watch alive, with go-spiffe's retry table (`retryDecision` in errors.ts)
 * and its linear backoff (`workloadapi/backoff.go`): 1 s, 2 s, 3 s … capped at 30 s, reset once
 * an update arrives. Time goes through the injected Clock so tests can step through the table
 * without waiting.
 */
import { systemClock, type Clock, type TimerHandle } from '../../common/clock.js';
import type { WatchErrorHandler, WatchHandle } from './client.js';
import { retryDecision, type WorkloadApiError } from './errors.js';

/** Delay in ms before reconnect attempt `attempt` (1-based). */
export type BackoffStrategy = (attempt: number) => number;

/** go-spiffe's linear backoff: attempt × 1 s, at most 30 s. */
export const linearBackoff: BackoffStrategy = (attempt) => Math.min(Math.max(attempt, 1), 30) * 1000;

export interface RetryOptions {
  readonly clock?: Clock;
  readonly backoff?: BackoffStrategy;
  /** Trace callback: a reconnect is scheduled `delayMs` from now after `err`. */
  readonly onRetry?: (err: WorkloadApiError, delayMs: number, attempt: number) => void;
}

/** Opens one stream; the shape of the client's watch methods. */
export type OpenWatch<T> = (onUpdate: (value: T) => void, onError: WatchErrorHandler) => WatchHandle;

/**
 * Runs `open` again and again per the retry table. `onError` sees every failure, retried or not;
 * `done` resolves with the error that stopped the loop, or undefined after close().
 */
export function watchWithRetry<T>(open: OpenWatch<T>, onUpdate: (value: T) => void, onError: WatchErrorHandler, opts: RetryOptions = {}): WatchHandle {
  const clock = opts.clock ?? systemClock;
  const backoff = opts.backoff ?? linearBackoff;
  let attempt = 0;
  let closed = false;
  let current: WatchHandle | undefined;
  let timer: TimerHandle | undefined;
  let finish!: (err: WorkloadApiError | undefined) => void;
  const done = new Promise<WorkloadApiError | undefined>((resolve) => (finish = resolve));

  const connect = (): void => {
    timer = undefined;
    if (closed) return;
    const handle = open(
      (value) => {
        attempt = 0;
        onUpdate(value);
      },
      onError,
    );
    current = handle;
    void handle.done.then((err) => {
      if (closed || err === undefined) return;
      const decision = retryDecision(err);
      if (decision !== 'retry') {
        closed = true;
        finish(decision === 'stop-with-error' ? err : undefined);
        return;
      }
      attempt += 1;
      const delayMs = backoff(attempt);
      opts.onRetry?.(err, delayMs, attempt);
      timer = clock.setTimeout(connect, delayMs);
    });
  };

  connect();
  return {
    done,
    close() {
      if (closed) return;
      closed = true;
      if (timer) clock.clearTimeout(timer);
      current?.close();
      finish(undefined);
    },
  };
}
