import type * as grpc from '@grpc/grpc-js';
import { errorFactory } from '../../../common/errors/catalog.js';

const fail = errorFactory('server');

/** Config keys of the admission limits, also the `limit` label of svidscope_server_limit_refusals_total. */
export const ADMISSION_LIMITS = { signingQueue: 'signing_queue_max_csrs', expiredDeadline: 'expired_deadline' } as const;

/**
 * Default bound on CSRs admitted for signing and not signed yet, across calls: a few seconds of
 * the signing pool on two cores (≈ 3,000–7,000 SVIDs/s), far inside an agent's 30 s call deadline,
 * so a server past saturation still refuses at once instead of queueing work whose callers stop
 * waiting. It was half a second (2,000): a fleet of 10,000 agents asking for their first SVIDs
 * together was then refused nine times in ten, each refused agent backed off for up to a minute,
 * and the pool sat idle between their retries (≈ 290 SVIDs/s against a capacity ten times that).
 */
export const DEFAULT_SIGNING_QUEUE_MAX_CSRS = 16_000;

/** CSRs signed between two yields to the event loop: ≈ 5 ms of signing, so syncs are not starved by a large batch. */
export const SIGNING_SLICE = 32;

export interface AdmissionConfig {
  readonly signingQueueMaxCsrs: number;
  /** A refusal, by config key (telemetry). */
  readonly limitHit?: (limit: string) => void;
}

/**
 * Admission control of the agent API. Under overload the work that hurts is work for callers that
 * have already gone: a call waits in the server's queue past its deadline, the server then signs
 * for nobody, and useful throughput falls to zero. Two checks prevent that: a call whose deadline
 * has passed (or that was cancelled) is dropped before any expensive step, and the CSRs admitted
 * for signing are bounded, so a flood is refused cheaply with RESOURCE_EXHAUSTED while admitted
 * work finishes in time.
 */
export class Admission {
  private queued = 0;

  constructor(private readonly config: AdmissionConfig) {}

  /** CSRs admitted and not yet signed (or given up). */
  get pendingCsrs(): number {
    return this.queued;
  }

  /**
   * Throws `deadline-expired` when the caller's deadline has passed or it cancelled. grpc-js
   * stamps deadlines with the wall clock (`Date.now()` at the call's arrival), so this compares
   * against the wall clock too, not the server's injectable clock, which tests move freely.
   */
  checkDeadline(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getDeadline' | 'cancelled'>): void {
    const deadline = call.getDeadline();
    const ms = deadline instanceof Date ? deadline.getTime() : deadline;
    if (call.cancelled || ms <= Date.now()) {
      this.config.limitHit?.(ADMISSION_LIMITS.expiredDeadline);
      throw fail('deadline-expired', 'the call\'s deadline passed before the server began the work; nothing was done');
    }
  }

  /**
   * Admits `n` CSRs for signing or throws `server-overloaded`. A batch is admitted whole when
   * nothing else is queued, whatever its size, so a batch larger than the limit still progresses.
   * Release what was signed with `release(k)` as the signing goes, and the rest with `release()`
   * however it ends (extra releases do nothing).
   */
  reserve(n: number): (done?: number) => void {
    if (this.queued > 0 && this.queued + n > this.config.signingQueueMaxCsrs) {
      this.config.limitHit?.(ADMISSION_LIMITS.signingQueue);
      throw fail('server-overloaded', `${this.queued} CSRs are waiting to be signed (${ADMISSION_LIMITS.signingQueue} is ${this.config.signingQueueMaxCsrs}); retry later`);
    }
    this.queued += n;
    let left = n;
    return (done = left): void => {
      const k = Math.min(done, left);
      left -= k;
      this.queued -= k;
    };
  }
}
