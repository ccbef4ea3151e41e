import type { Clock, TimerHandle } from '../../common/clock.js';
import type { Source } from './types.js';

/**
 * Runs `poll` now and then every `intervalMs` after the previous run finished (never two at once,
 * so a slow source cannot pile up work). Errors are the poll's own business.
 */
export function startPolling(clock: Clock, intervalMs: number, poll: () => Promise<void>): { stop(): Promise<void> } {
  let stopped = false;
  let timer: TimerHandle | undefined;
  let running: Promise<void> = Promise.resolve();
  const tick = (): void => {
    timer = undefined;
    if (stopped) return;
    running = poll().catch(() => undefined).then(() => {
      if (!stopped) timer = clock.setTimeout(tick, intervalMs);
    });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      if (timer) clock.clearTimeout(timer);
      await running;
    },
  };
}

/**
 * A source that polls `poll` every `intervalSeconds` from start() until stop(); `close` releases
 * what the polls share (a client) once the last poll is done.
 */
export function polledSource(name: string, clock: Clock, intervalSeconds: number, poll: () => Promise<void>, close?: () => void): Source {
  let poller: { stop(): Promise<void> } | undefined;
  return {
    name,
    start() {
      poller = startPolling(clock, intervalSeconds * 1000, poll);
    },
    async stop() {
      await poller?.stop();
      close?.();
    },
  };
}
