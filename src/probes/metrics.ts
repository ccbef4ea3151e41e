/**
 * The prober's own `/metrics`: the scheduled probes' last results and counts, the rotation
 * watchers, and the process metrics. Prefix `svidscope_prober_`, base units, and only bounded
 * labels: `module` and `target` are names from the config file (never addresses), `reason` is one
 * of FAILURE_REASONS, `phase` one of the modules' fixed phase names.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../common/telemetry/registry.js';
import { PATH_LIMIT_NAMES } from '../identity-plane/spiffe/x509svid/index.js';
import { FAILURE_REASONS, type FailureReason } from './reasons.js';
import type { ProbeResult } from './result.js';

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const FRACTION_BUCKETS = [0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1];

/** Module gauges that also make sense per scheduled target, under their prober names. */
const CARRIED: Record<string, string> = {
  probe_svid_x509_svids: 'svidscope_prober_x509_svids',
  probe_svid_bundle_sequence: 'svidscope_prober_bundle_sequence',
  probe_svid_bundle_refresh_hint_seconds: 'svidscope_prober_bundle_refresh_hint_seconds',
  probe_svid_bundle_authority_expiry_timestamp_seconds: 'svidscope_prober_bundle_authority_expiry_timestamp_seconds',
  probe_svid_bundle_age_seconds: 'svidscope_prober_bundle_age_seconds',
  probe_svid_bundle_x509_authorities: 'svidscope_prober_bundle_x509_authorities',
};
const CARRIED_HELP: Record<string, string> = {
  svidscope_prober_x509_svids: 'X509-SVIDs in the last Workload API answer of the target.',
  svidscope_prober_bundle_sequence: 'spiffe_sequence of the bundle last fetched from the target.',
  svidscope_prober_bundle_refresh_hint_seconds: 'spiffe_refresh_hint of the bundle last fetched from the target.',
  svidscope_prober_bundle_authority_expiry_timestamp_seconds: 'Earliest notAfter among the X.509 authorities last fetched from the target (Unix time).',
  svidscope_prober_bundle_age_seconds: 'Seconds since the newest X.509 authority of the target\'s bundle became valid, at the last probe.',
  svidscope_prober_bundle_x509_authorities: 'X.509 authorities in the bundle last fetched from the target.',
};

export interface ProberMetrics {
  readonly registry: Registry;
  /** Pre-creates every series of a target, so queries never meet a missing one. */
  initTarget(module: string, target: string): void;
  record(target: string, result: ProbeResult): void;
  recordAdhoc(result: ProbeResult): void;
  watch: {
    init(target: string): void;
    up(target: string, up: boolean): void;
    restart(target: string): void;
    rotation(target: string, remainingRatio: number, valid: boolean): void;
    state(target: string, success: boolean, reason?: FailureReason): void;
    svid(target: string, expiry: Date, ratio: number): void;
  };
}

export function createProberMetrics(registry = new Registry(), opts: { processMetrics?: boolean } = {}): ProberMetrics {
  if (opts.processMetrics !== false) registerProcessMetrics(registry);
  const mt = ['module', 'target'];
  const registers = [registry];
  const probes = new Counter({ name: 'svidscope_prober_probes_total', help: 'Scheduled probes run, by module, target and result (success, failure).', labelNames: [...mt, 'result'], registers });
  const failures = new Counter({ name: 'svidscope_prober_probe_failures_total', help: 'Scheduled probe failures (and rotation watch problems) by bounded reason.', labelNames: [...mt, 'reason'], registers });
  const success = new Gauge({ name: 'svidscope_prober_probe_success', help: '1 if the last scheduled probe of the target succeeded (rotation_watch: the watch is healthy), else 0.', labelNames: mt, registers });
  const duration = new Histogram({ name: 'svidscope_prober_probe_duration_seconds', help: 'Duration of scheduled probes.', labelNames: mt, buckets: DURATION_BUCKETS, registers });
  const phase = new Gauge({ name: 'svidscope_prober_probe_phase_duration_seconds', help: 'Duration of each phase of the last scheduled probe of the target.', labelNames: [...mt, 'phase'], registers });
  const last = new Gauge({ name: 'svidscope_prober_last_probe_timestamp_seconds', help: 'When the target was last probed (Unix time).', labelNames: mt, registers });
  const expiry = new Gauge({ name: 'svidscope_prober_svid_expiry_timestamp_seconds', help: 'Earliest expiry of the SVIDs the last probe of the target examined (Unix time).', labelNames: mt, registers });
  const ratio = new Gauge({ name: 'svidscope_prober_svid_ttl_remaining_ratio', help: 'Fraction of the SVID lifetime left at the last probe of the target.', labelNames: mt, registers });
  const carried = new Map(Object.values(CARRIED).map((name) => [name, new Gauge({ name, help: CARRIED_HELP[name], labelNames: mt, registers })]));
  const limitRefusals = new Counter({ name: 'svidscope_prober_limit_refusals_total', help: 'Probes (scheduled and /probe) whose target was refused by a limit, by the limit\'s name (x509_path_signature_checks, x509_path_visited_certificates, x509_path_chain_length).', labelNames: ['limit'], registers });
  for (const limit of PATH_LIMIT_NAMES) limitRefusals.inc({ limit }, 0);
  const adhoc = new Counter({ name: 'svidscope_prober_adhoc_probes_total', help: 'Probes run through /probe, by module and result.', labelNames: ['module', 'result'], registers });
  const watchUp = new Gauge({ name: 'svidscope_prober_watch_up', help: '1 while the rotation watch of the target holds an open FetchX509SVID stream.', labelNames: ['target'], registers });
  const watchRestarts = new Counter({ name: 'svidscope_prober_watch_restarts_total', help: 'Rotation watch streams reopened after they ended.', labelNames: ['target'], registers });
  const rotations = new Counter({ name: 'svidscope_prober_rotations_total', help: 'X509-SVID rotations seen by the rotation watch, by whether the new SVID validated (valid, invalid).', labelNames: ['target', 'result'], registers });
  const rotationLeft = new Histogram({ name: 'svidscope_prober_rotation_ttl_remaining_ratio', help: 'Fraction of the old SVID\'s lifetime left when the rotation arrived.', labelNames: ['target'], buckets: FRACTION_BUCKETS, registers });
  const modules = new Map<string, string>();
  const lastPhases = new Map<string, string[]>();

  return {
    registry,
    initTarget(module, target) {
      modules.set(target, module);
      for (const result of ['success', 'failure']) probes.inc({ module, target, result }, 0);
      for (const reason of FAILURE_REASONS) failures.inc({ module, target, reason }, 0);
      success.set({ module, target }, 0);
    },
    record(target, r) {
      const l = { module: r.module, target };
      probes.inc({ ...l, result: r.success ? 'success' : 'failure' });
      if (r.reason) failures.inc({ ...l, reason: r.reason });
      if (r.limit) limitRefusals.inc({ limit: r.limit });
      success.set(l, r.success ? 1 : 0);
      duration.observe(l, r.durationSeconds);
      for (const p of lastPhases.get(target) ?? []) phase.remove({ ...l, phase: p });
      for (const [p, s] of r.phases) phase.set({ ...l, phase: p }, s);
      lastPhases.set(target, r.phases.map(([p]) => p));
      last.set(l, r.startedAt.getTime() / 1000);
      if (r.svidExpiry !== undefined) {
        expiry.set(l, r.svidExpiry);
        ratio.set(l, r.ttlRemainingRatio ?? 0);
      }
      for (const g of r.gauges) {
        const name = CARRIED[g.name];
        if (name) carried.get(name)!.set(l, g.value);
      }
    },
    recordAdhoc(r) {
      adhoc.inc({ module: r.module, result: r.success ? 'success' : 'failure' });
      if (r.limit) limitRefusals.inc({ limit: r.limit });
    },
    watch: {
      init(target) {
        watchUp.set({ target }, 0);
        watchRestarts.inc({ target }, 0);
        for (const result of ['valid', 'invalid']) rotations.inc({ target, result }, 0);
      },
      up: (target, up) => watchUp.set({ target }, up ? 1 : 0),
      restart: (target) => watchRestarts.inc({ target }),
      rotation(target, remainingRatio, valid) {
        rotations.inc({ target, result: valid ? 'valid' : 'invalid' });
        rotationLeft.observe({ target }, remainingRatio);
      },
      state(target, ok, reason) {
        const l = { module: modules.get(target) ?? 'rotation_watch', target };
        success.set(l, ok ? 1 : 0);
        if (reason) failures.inc({ ...l, reason });
      },
      svid(target, when, r) {
        const l = { module: modules.get(target) ?? 'rotation_watch', target };
        expiry.set(l, when.getTime() / 1000);
        ratio.set(l, r);
      },
    },
  };
}
