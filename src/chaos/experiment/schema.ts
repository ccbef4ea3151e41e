/**
 * The experiment document (YAML or JSON): Chaos Toolkit's shape (title, description,
 * steady-state hypothesis, method, rollbacks) plus what svidscope game days need on top: expected
 * alerts, blast radius and halt conditions. Faults are a discriminated union on `fault`.
 */

/** Numeric tolerance on a PromQL result: every returned sample must satisfy it. */
export interface Tolerance {
  min?: number;
  max?: number;
  equals?: number;
  /** What an empty result means: fail (default) or pass. */
  empty?: 'fail' | 'pass';
}

export type Probe =
  | { name: string; type: 'promql'; query: string; tolerance: Tolerance }
  /** A one-shot probe through the prober's `/probe` endpoint; passes when probe_success is 1 (or 0 with expect: fail). */
  | { name: string; type: 'probe'; module: string; target: string; expect: 'success' | 'failure' };

export type FaultSpec =
  /** kill -9; the rollback restarts it with the command line, environment and uid read from /proc. */
  | { fault: 'process-kill'; target: string }
  | { fault: 'process-freeze'; target: string }
  | { fault: 'ca-rotate'; server: string; kind: 'x509' | 'jwt'; propagationTimeoutMs: number }
  | { fault: 'entry-delete'; server: string; spiffeId: string }
  | { fault: 'network'; agent: string; mode: 'partition' | 'latency' | 'reset'; latencyMs: number }
  | { fault: 'clock-skew'; target: string; offset: string }
  | { fault: 'datastore'; server: string; mode: 'loss' | 'corrupt' }
  /** `server`'s federation with `trustDomain` (default: the other domain of the stack) re-pointed at a harness endpoint. */
  | { fault: 'bundle-endpoint'; server: string; trustDomain?: string; mode: 'unavailable' | 'malformed' | 'stale' }
  /** `count` workloads start at once on `agent`; the run records the time until all hold an SVID. */
  | { fault: 'issuance-storm'; agent: string; count: number; timeoutMs: number }
  /** The key-compromise drill on `server`'s `kind` authority: prepare → propagate → activate → taint → clear → revoke → dropped everywhere; `timeoutMs` bounds each wait. */
  | { fault: 'key-compromise'; server: string; kind: 'x509' | 'jwt'; timeoutMs: number }
  /** A bad rotation: `server`'s trust bundle drops its active authority of `kind` while the server keeps signing with it. */
  | { fault: 'authority-withhold'; server: string; kind: 'x509' | 'jwt' }
  /** Up to `count` node attestations with never-issued join tokens against `server`, `ratePerSecond` a second. */
  | { fault: 'attestation-flood'; server: string; count: number; ratePerSecond: number }
  /** `target`'s processes in a cgroup limited to `quotaPercent` % of one CPU per `periodMs` (root only). */
  | { fault: 'cpu-throttle'; target: string; quotaPercent: number; periodMs: number }
  /** A misbehaving agent build: as `agent`, BatchNewX509SVID calls of `batch` unparseable CSRs, `ratePerSecond` CSRs a second. */
  | { fault: 'bad-csr'; agent: string; ratePerSecond: number; batch: number };

export type FaultKind = FaultSpec['fault'];

export type MethodStep = FaultSpec & {
  name: string;
  /** How long the fault stays injected before its rollback (ms). */
  durationMs: number;
  /** Pause after the rollback before the next step (ms). */
  pauseAfterMs: number;
  /**
   * Chaos Toolkit's `background: true`: the fault stays injected while the following steps run
   * (e.g. a partition held across a CA rotation) and is rolled back after the last step, or
   * after its own duration if that is longer.
   */
  background: boolean;
  /**
   * End the fault as soon as every expected alert has fired (in Prometheus and, when checked,
   * Alertmanager); `duration` is then the longest it may last. Proves detection with the
   * smallest blast radius.
   */
  untilAlerts: boolean;
};

export interface ExpectedAlert {
  name: string;
  /** Label matchers the firing alert must carry (exact values). */
  labels: Record<string, string>;
  /** Must be firing within this long after the first fault was injected (ms). */
  withinMs: number;
}

export interface HaltCondition {
  name: string;
  query: string;
  tolerance: Tolerance;
}

export interface Experiment {
  version: 1;
  /** File stem: the experiment's id in `chaos list` and in metrics. */
  id: string;
  title: string;
  description: string;
  tags: string[];
  /** Runbook anchor this experiment exercises (documentation). */
  runbook?: string;
  blastRadius: { agents: string[]; workloads: string[]; servers: string[] };
  steadyState: { title: string; probes: Probe[] };
  method: MethodStep[];
  expectedAlerts: ExpectedAlert[];
  haltConditions: HaltCondition[];
  runtime: {
    /** How long the before-hypothesis may take to be met (the stack may still be settling). */
    steadyStateTimeoutMs: number;
    /** How long after rollback the hypothesis may take to hold again. */
    recoveryTimeoutMs: number;
    /** How often halt conditions and alerts are polled during the method. */
    pollIntervalMs: number;
  };
  /** Source file (absent for documents parsed from text). */
  file?: string;
}

export interface Suite {
  id: string;
  title: string;
  description: string;
  experiments: string[];
  file?: string;
}
