/**
 * What a module gets besides its settings: the time to validate at, the time left before the
 * probe's timeout, an abort signal that fires at the timeout, and a place to register cleanups
 * (clients, sockets, servers) that run however the probe ends.
 */
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../common/clock.js';
import { createWorkloadApiClient, parseWorkloadApiAddress, type WorkloadApiClient } from '../identity-plane/workload-api/index.js';
import { ProbeFailure } from './reasons.js';

export interface ProbeContext {
  readonly clock: Clock;
  readonly signal: AbortSignal;
  /** Milliseconds left before the probe times out (at least 1). */
  remainingMs(): number;
  /** Runs when the probe ends, in reverse order of registration. */
  defer(cleanup: () => void | Promise<void>): void;
}

export function createProbeContext(clock: Clock, timeoutMs: number): ProbeContext & { controller: AbortController; runCleanups(): Promise<void> } {
  const deadline = performance.now() + timeoutMs;
  const controller = new AbortController();
  const cleanups: Array<() => void | Promise<void>> = [];
  return {
    clock,
    controller,
    signal: controller.signal,
    remainingMs: () => Math.max(1, Math.floor(deadline - performance.now())),
    defer: (fn) => void cleanups.push(fn),
    async runCleanups() {
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch {
          // cleanup is best effort: the probe's verdict is already made
        }
      }
      cleanups.length = 0;
    },
  };
}

/**
 * A Workload API client for a probe target. A unix socket that does not exist fails here, with
 * `socket_missing`, before any gRPC connection attempt; the client is closed when the probe ends.
 */
export function workloadClient(target: string, ctx: ProbeContext): WorkloadApiClient {
  const address = parseWorkloadApiAddress(target);
  if (address.kind === 'unix' && !existsSync(address.path)) {
    throw new ProbeFailure('socket_missing', `workloadapi: no socket at ${address.path} (is the agent running?)`);
  }
  const client = createWorkloadApiClient({ address, deadlineMs: ctx.remainingMs() });
  ctx.defer(() => client.close());
  return client;
}
