/**
 * The SLOs as data (sloth's spec, in TypeScript): each SLI is an error query and a total query
 * over a window, both aggregated per cluster and trust domain. `rules.ts` turns them into
 * recording rules over the standard windows and multi-window multi-burn-rate alerts; the
 * dashboards read the recorded series.
 */
import type { MonitoringConfig } from './config.js';
import { by, humanDuration, m, num } from './promql.js';

export interface Slo {
  /** Value of the `slo` label on every recorded series. */
  name: string;
  /** Name of its burn-rate alert. */
  alert: string;
  title: string;
  target: number;
  /** What counts as an event and as an error, for docs, runbooks and panel descriptions. */
  sli: string;
  /** Errors per second over `window`, aggregated by cluster and trust domain. */
  errors(window: string): string;
  /** Events per second over `window`, same aggregation. */
  total(window: string): string;
}

export function slos(c: MonitoringConfig): Slo[] {
  const agg = `sum by (${by(c)})`;
  const rate = (series: string, w: string) => `${agg} (rate(${series}[${w}]))`;
  const s = c.slos;
  const latencyLe = num(s.issuanceLatency.thresholdSeconds);
  const rotationLe = num(s.rotation.minRemainingRatio);
  const taintLe = num(s.taintClear.thresholdSeconds);
  // A counter that only appears with its first error: `or total * 0` keeps the SLI defined (0) until then.
  const orZero = (errors: string, total: string) => `(${errors} or ${total} * 0)`;
  return [
    {
      name: 'x509-issuance',
      alert: 'SvidscopeX509IssuanceBudgetBurn',
      title: 'X.509-SVID issuance success',
      target: s.x509Issuance.target,
      sli: 'X.509-SVID signing requests at the server that fail, out of all (a refusal because the agent is not authorized for the entry is the caller\'s fault and does not count)',
      errors: (w) => orZero(rate(m(c, 'server', 'svidscope_server_svid_signing_failures_total', 'svid_type="x509"', 'reason!="permission_denied"'), w), rate(m(c, 'server', 'svidscope_server_svid_issuance_duration_seconds_count', 'svid_type="x509"'), w)),
      total: (w) => rate(m(c, 'server', 'svidscope_server_svid_issuance_duration_seconds_count', 'svid_type="x509"'), w),
    },
    {
      name: 'workload-api',
      alert: 'SvidscopeWorkloadApiBudgetBurn',
      title: 'Workload API availability',
      target: s.workloadApi.target,
      sli: `Workload API requests answered with a server-side error code (${s.workloadApi.errorCodes.join(', ')}), out of all`,
      errors: (w) => orZero(rate(m(c, 'agent', 'svidscope_agent_workload_api_requests_total', `code=~"${s.workloadApi.errorCodes.join('|')}"`), w), rate(m(c, 'agent', 'svidscope_agent_workload_api_requests_total'), w)),
      total: (w) => rate(m(c, 'agent', 'svidscope_agent_workload_api_requests_total'), w),
    },
    {
      name: 'probe-success',
      alert: 'SvidscopeProbeBudgetBurn',
      title: 'Synthetic probe success',
      target: s.probes.target,
      sli: 'scheduled prober runs (every module: x509, jwt, mtls, bundle endpoints) that fail, out of all',
      errors: (w) => rate(m(c, 'prober', 'svidscope_prober_probes_total', 'result="failure"'), w),
      total: (w) => rate(m(c, 'prober', 'svidscope_prober_probes_total'), w),
    },
    {
      name: 'issuance-latency',
      alert: 'SvidscopeIssuanceLatencyBudgetBurn',
      title: `X.509-SVID issuance under ${latencyLe}s`,
      target: s.issuanceLatency.target,
      // Signings only (result="success"): refusals are observed too, at the time they took (0 s for
      // a batch shed under overload), and would pass for fast signings exactly when the server is
      // slowest. They burn the issuance availability SLO instead.
      sli: `X.509-SVID signings at the server taking longer than ${latencyLe}s (histogram bucket le="${latencyLe}"), out of all successful signings (refusals count against the X.509-SVID issuance success SLO instead)`,
      errors: (w) => `(${rate(m(c, 'server', 'svidscope_server_svid_issuance_duration_seconds_count', 'svid_type="x509"', 'result="success"'), w)} - ${rate(m(c, 'server', 'svidscope_server_svid_issuance_duration_seconds_bucket', 'svid_type="x509"', 'result="success"', `le="${latencyLe}"`), w)})`,
      total: (w) => rate(m(c, 'server', 'svidscope_server_svid_issuance_duration_seconds_count', 'svid_type="x509"', 'result="success"'), w),
    },
    {
      name: 'rotation-timeliness',
      alert: 'SvidscopeRotationBudgetBurn',
      title: `X509-SVIDs rotated with more than ${Math.round(s.rotation.minRemainingRatio * 100)}% of lifetime left`,
      target: s.rotation.target,
      sli: `agent rotations where the replaced SVID had ${rotationLe} or less of its lifetime left (rotated after ${Math.round((1 - s.rotation.minRemainingRatio) * 100)}% of its TTL), out of all rotations`,
      errors: (w) => rate(m(c, 'agent', 'svidscope_agent_svid_ttl_remaining_ratio_at_rotation_bucket', `le="${rotationLe}"`), w),
      total: (w) => rate(m(c, 'agent', 'svidscope_agent_svid_ttl_remaining_ratio_at_rotation_count'), w),
    },
    // --- key compromise (issue 15) ---
    {
      name: 'taint-clear',
      alert: 'SvidscopeTaintClearBudgetBurn',
      title: `Tainted authorities cleared within ${humanDuration(s.taintClear.thresholdSeconds)}`,
      target: s.taintClear.target,
      sli: `agents that took longer than ${taintLe}s from first seeing an authority tainted to replacing the last SVID it signed (histogram bucket le="${taintLe}"), out of all agents that cleared a taint`,
      errors: (w) => `(${rate(m(c, 'agent', 'svidscope_agent_taint_clear_seconds_count'), w)} - ${rate(m(c, 'agent', 'svidscope_agent_taint_clear_seconds_bucket', `le="${taintLe}"`), w)})`,
      total: (w) => rate(m(c, 'agent', 'svidscope_agent_taint_clear_seconds_count'), w),
    },
  ];
}
