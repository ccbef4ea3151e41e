/**
 * rotation_watch: hold a FetchX509SVID stream open, as a long-running workload does, and record
 * every rotation: when it arrived, how much lifetime the old SVID had left, whether the new one
 * validates. The held SVID is watched too: falling under min_ttl_ratio without a rotation is
 * `rotation_overdue`, passing its notAfter (plus the skew tolerance) is `expired`.
 *
 * `watchRotations` is the continuous watcher (the prober keeps one per configured target);
 * `probeRotationWatch` is the bounded one-shot form behind the CLI and `/probe`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import type { Clock, TimerHandle } from '../../common/clock.js';
import type { WorkloadX509Svid, X509Context } from '../../identity-plane/workload-api/index.js';
import type { RotationWatchSettings } from '../config.js';
import { workloadClient, type ProbeContext } from '../context.js';
import { classifyError, ProbeFailure, type FailureReason } from '../reasons.js';
import type { ProbeRun } from '../result.js';
import { ekuProblem, lifetimeOf, selectSvid, verifyWithSkew, type Lifetime } from './x509-checks.js';

export interface RotationRecord {
  readonly at: Date;
  readonly fromSerial: string;
  readonly toSerial: string;
  /** Seconds the replaced SVID still had (negative: it had expired). */
  readonly oldRemainingSeconds: number;
  readonly oldRemainingRatio: number;
  readonly newValid: boolean;
  readonly reason?: FailureReason;
  readonly message?: string;
  readonly newLifetime: Lifetime;
}

export interface RotationWatcherEvents {
  /** The first message's SVID validated (or not: then onProblem follows). */
  first?(svid: WorkloadX509Svid, life: Lifetime, secondsToFirstMessage: number): void;
  rotation?(record: RotationRecord): void;
  /** `fatal`: the stream is over (the caller decides whether to start a new watcher). */
  problem?(reason: FailureReason, message: string, fatal: boolean): void;
}

export interface RotationWatcher {
  close(): void;
  /** Resolves when the stream ends (closed, or failed with a fatal problem). */
  readonly done: Promise<void>;
}

export function watchRotations(target: string, settings: RotationWatchSettings, clock: Clock, events: RotationWatcherEvents, defer: ProbeContext['defer'] = () => undefined): RotationWatcher {
  const timers: TimerHandle[] = [];
  const clearTimers = () => timers.splice(0).forEach((t) => clock.clearTimeout(t));
  let held: { svid: WorkloadX509Svid; life: Lifetime } | undefined;
  let closed = false;
  const started = performance.now();

  const validate = (svid: WorkloadX509Svid, ctx: X509Context): { reason: FailureReason; message: string } | undefined => {
    const eku = ekuProblem(svid.certificates[0]);
    if (eku) return { reason: 'invalid_svid', message: eku };
    try {
      verifyWithSkew(svid.certificates, ctx.bundles, clock.now(), settings.clockSkewSeconds);
      return undefined;
    } catch (err) {
      return classifyError(err);
    }
  };

  const hold = (svid: WorkloadX509Svid, life: Lifetime) => {
    clearTimers();
    held = { svid, life };
    const nowMs = clock.nowMs();
    if (settings.minTtlRatio > 0) {
      const overdueAt = life.notAfter.getTime() - settings.minTtlRatio * life.lifetimeSeconds * 1000;
      timers.push(clock.setTimeout(() => events.problem?.('rotation_overdue', `no rotation yet: ${svid.id} has under ${settings.minTtlRatio * 100} % of its lifetime left (expires ${life.notAfter.toISOString()})`, false), Math.max(0, overdueAt - nowMs)));
    }
    const expiredAt = life.notAfter.getTime() + settings.clockSkewSeconds * 1000;
    timers.push(clock.setTimeout(() => events.problem?.('expired', `no rotation: ${svid.id} expired at ${life.notAfter.toISOString()}`, false), Math.max(0, expiredAt - nowMs)));
  };

  const onUpdate = (ctx: X509Context) => {
    let svid: WorkloadX509Svid;
    try {
      svid = selectSvid(ctx, settings.spiffeId);
    } catch (err) {
      const { reason, message } = classifyError(err);
      return events.problem?.(reason, message, false);
    }
    const now = clock.now();
    if (held === undefined) {
      const life = lifetimeOf(svid.certificates[0], now);
      events.first?.(svid, life, (performance.now() - started) / 1000);
      const bad = validate(svid, ctx);
      if (bad) return events.problem?.(bad.reason, bad.message, false);
      return hold(svid, life);
    }
    const from = held.svid.certificates[0].serialNumber;
    const to = svid.certificates[0].serialNumber;
    if (from === to) return; // a bundle change, or another identity's rotation
    const old = lifetimeOf(held.svid.certificates[0], now);
    const life = lifetimeOf(svid.certificates[0], now);
    const bad = validate(svid, ctx);
    events.rotation?.({ at: now, fromSerial: from, toSerial: to, oldRemainingSeconds: old.remainingSeconds, oldRemainingRatio: old.remainingRatio, newValid: !bad, ...(bad ?? {}), newLifetime: life });
    if (bad) return events.problem?.(bad.reason, `the rotated SVID does not validate: ${bad.message}`, false);
    hold(svid, life);
  };

  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  let client: ReturnType<typeof workloadClient>;
  try {
    client = workloadClient(target, { clock, signal: new AbortController().signal, remainingMs: () => 60_000, defer });
  } catch (err) {
    const { reason, message } = classifyError(err);
    queueMicrotask(() => {
      events.problem?.(reason, message, true);
      finish();
    });
    return { close: () => undefined, done };
  }
  const handle = client.watchX509Context(onUpdate, (err) => {
    if (closed) return;
    const { reason, message } = classifyError(err);
    // A discarded message keeps the stream open; its end is reported through `done`.
    events.problem?.(reason, message, false);
  });
  handle.done.then((err) => {
    clearTimers();
    client.close();
    if (err && !closed) {
      const { reason, message } = classifyError(err);
      events.problem?.(reason, message, true);
    }
    finish();
  });
  return {
    done,
    close() {
      if (closed) return;
      closed = true;
      clearTimers();
      handle.close();
      client.close();
    },
  };
}

export async function probeRotationWatch(run: ProbeRun, target: string, settings: RotationWatchSettings, ctx: ProbeContext): Promise<void> {
  let failure: ProbeFailure | undefined;
  let rotations = 0;
  let last: RotationRecord | undefined;
  let wake!: () => void;
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  let gotFirst!: () => void;
  const firstSeen = new Promise<void>((resolve) => (gotFirst = resolve));
  const watcher = watchRotations(target, settings, ctx.clock, {
    first(svid, life, seconds) {
      gotFirst();
      run.addPhase('first_message', seconds);
      run.pass('first message', `${svid.id}, ${life.remainingSeconds.toFixed(1)} s left (${(life.remainingRatio * 100).toFixed(0)} %)`);
      run.fact('spiffeId', svid.id.toString());
      run.svid(life.notAfter, life.remainingRatio, life.lifetimeSeconds);
    },
    rotation(r) {
      rotations += 1;
      last = r;
      const detail = `at ${r.at.toISOString()}: old SVID had ${r.oldRemainingSeconds.toFixed(1)} s (${(r.oldRemainingRatio * 100).toFixed(0)} %) left; new SVID ${r.newValid ? 'validates' : `is invalid: ${r.message}`}`;
      if (r.newValid) run.pass(`rotation ${rotations}`, detail);
      else run.checks.push({ name: `rotation ${rotations}`, ok: false, detail });
    },
    problem(reason, message) {
      if (failure) return;
      failure = new ProbeFailure(reason, message);
      wake();
    },
  }, ctx.defer);
  ctx.defer(() => watcher.close());
  // The window opens with the first message (the timeout bounds the wait for it).
  await Promise.race([firstSeen, stopped, watcher.done]);
  const windowMs = failure ? 0 : Math.max(0, Math.min(settings.durationSeconds * 1000, ctx.remainingMs() - 500));
  const ac = new AbortController();
  await Promise.race([sleep(windowMs, undefined, { signal: ac.signal }).catch(() => undefined), stopped, watcher.done]);
  ac.abort();
  watcher.close();
  run.addPhase('watch', windowMs / 1000);
  run.gauge('probe_svid_rotations', 'Rotations seen during the watch window.', rotations);
  run.fact('rotations', rotations);
  if (last) {
    run.gauge('probe_svid_rotation_last_remaining_ratio', 'Fraction of the old SVID\'s lifetime left at the last rotation.', last.oldRemainingRatio);
    run.svid(last.newLifetime.notAfter, last.newLifetime.remainingRatio, last.newLifetime.lifetimeSeconds);
  }
  if (failure) run.fail('watch', failure.reason, failure.message);
  if (settings.requireRotation && rotations === 0) run.fail('watch', 'rotation_overdue', `no rotation within ${(windowMs / 1000).toFixed(1)} s`);
  run.pass('watch', `stream held ${(windowMs / 1000).toFixed(1)} s, ${rotations} rotation(s)`);
}
