/**
 * What one probe produces, whatever the module: pass/fail with a bounded reason, the duration and
 * its phases, the checks in the order they ran (for the terminal report) and the module's gauges
 * (for `/probe` and the prober's `/metrics`). A ProbeRun collects these while a module runs.
 */
import { performance } from 'node:perf_hooks';
import type { FailureReason } from './reasons.js';
import { ProbeFailure } from './reasons.js';

export const MODULE_KINDS = ['x509_svid', 'jwt_svid', 'mtls', 'bundle_endpoint', 'rotation_watch'] as const;
export type ModuleKind = (typeof MODULE_KINDS)[number];

export interface ProbeCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** A module-specific gauge of the `/probe` output (`probe_svid_*`, `probe_tls_version_info`). */
export interface ProbeGauge {
  readonly name: string;
  readonly help: string;
  readonly value: number;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface ProbeResult {
  /** The module name as configured (equal to the kind for the built-in defaults). */
  readonly module: string;
  readonly kind: ModuleKind;
  readonly target: string;
  readonly success: boolean;
  readonly reason?: FailureReason;
  readonly message?: string;
  /** The limit that refused the target's answer (e.g. `x509_path_signature_checks`), when one did. */
  readonly limit?: string;
  readonly startedAt: Date;
  readonly durationSeconds: number;
  readonly timeoutSeconds: number;
  /** Seconds per phase, in the order the phases ran. */
  readonly phases: ReadonlyArray<readonly [string, number]>;
  readonly checks: readonly ProbeCheck[];
  readonly gauges: readonly ProbeGauge[];
  /** Readable facts for the report and `--json` (SPIFFE IDs, expiry, sequence…); never labels. */
  readonly facts: Readonly<Record<string, unknown>>;
  /** The earliest expiry (Unix seconds) of the SVIDs the probe looked at, when it got that far. */
  readonly svidExpiry?: number;
  /** The smallest remaining-lifetime ratio of those SVIDs. */
  readonly ttlRemainingRatio?: number;
  /** The whole lifetime (seconds) of the SVID that expires first. */
  readonly svidLifetimeSeconds?: number;
}

/** The collector a module writes into. */
export class ProbeRun {
  readonly phases: Array<[string, number]> = [];
  readonly checks: ProbeCheck[] = [];
  readonly gauges: ProbeGauge[] = [];
  readonly facts: Record<string, unknown> = {};
  svidExpiry?: Date;
  ttlRemainingRatio?: number;
  svidLifetimeSeconds?: number;

  /** Records an SVID's lifetime; the probe reports the earliest expiry and the smallest ratio. */
  svid(notAfter: Date, remainingRatio: number, lifetimeSeconds: number): void {
    if (this.svidExpiry === undefined || notAfter < this.svidExpiry) {
      this.svidExpiry = notAfter;
      this.svidLifetimeSeconds = lifetimeSeconds;
    }
    this.ttlRemainingRatio = Math.min(this.ttlRemainingRatio ?? 1, remainingRatio);
  }

  /** Times `fn` as phase `name` (repeated phases add up, as blackbox sums redirects). */
  async phase<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      this.addPhase(name, (performance.now() - start) / 1000);
    }
  }

  addPhase(name: string, seconds: number): void {
    const existing = this.phases.find((p) => p[0] === name);
    if (existing) existing[1] += seconds;
    else this.phases.push([name, seconds]);
  }

  pass(name: string, detail = ''): void {
    this.checks.push({ name, ok: true, detail });
  }

  /** Records a failed check and throws: the first failure ends the probe and gives its reason. */
  fail(name: string, reason: FailureReason, detail: string, cause?: unknown): never {
    this.checks.push({ name, ok: false, detail });
    throw new ProbeFailure(reason, detail, cause === undefined ? undefined : { cause });
  }

  /** Runs a check that throws on failure; the thrown error is classified by the caller's mapper. */
  async check<T>(name: string, fn: () => Promise<T> | T, describe: (value: T) => string, classify: (err: unknown) => { reason: FailureReason; message: string }): Promise<T> {
    let value: T;
    try {
      value = await fn();
    } catch (err) {
      const { reason, message } = classify(err);
      this.fail(name, reason, message, err);
    }
    this.pass(name, describe(value));
    return value;
  }

  gauge(name: string, help: string, value: number, labels?: Record<string, string>): void {
    this.gauges.push(labels ? { name, help, value, labels } : { name, help, value });
  }

  fact(key: string, value: unknown): void {
    this.facts[key] = value;
  }
}
