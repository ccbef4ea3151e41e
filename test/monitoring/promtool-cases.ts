// `promtool test rules` cases for every alert (firing and not firing) and every recording rule,
// written as data; rules.test.ts turns them into promtool's YAML and checks the coverage.
import type { AlertRule } from '../../src/monitoring/rules.js';

export type Labels = Record<string, string>;
export interface Series { series: string; values: string }
export interface AlertCase {
  alert: string;
  name: string;
  series: Series[];
  evalTime: string;
  /** Firing alerts expected at evalTime: the rule (by its extra labels, for names with several rules), the result labels and `$value`. */
  firing: { ruleLabels?: Labels; labels: Labels; value: number }[];
}

const base = { cluster: 'c1', trust_domain: 'example.org' };
export const L = {
  srv: { job: 'svidscope-server', instance: 'srv:8080', ...base },
  agt: { job: 'svidscope-agent', instance: 'agt:8088', ...base },
  prb: { job: 'svidscope-prober', instance: 'prb:9465', ...base },
  exp: { job: 'svidscope-exporter', instance: 'exp:9190', ...base },
  probe: { job: 'svidscope-probe-x509', instance: 'unix:///run/agent.sock', module: 'x509_svid', ...base },
};

export function s(metric: string, labels: Labels, values: string): Series {
  return { series: `${metric}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(', ')}}`, values };
}

const scope = { ...base };

/** Inputs of each SLO: errors and total per minute. */
export function sloSeries(slo: string, errorsPerMin: number, totalPerMin: number, minutes: number): Series[] {
  const good = totalPerMin - errorsPerMin;
  const v = (perMin: number) => `0+${perMin}x${minutes}`;
  switch (slo) {
    case 'x509-issuance':
      return [
        s('svidscope_server_svid_issuance_duration_seconds_count', { ...L.srv, svid_type: 'x509', result: 'success' }, v(good)),
        s('svidscope_server_svid_issuance_duration_seconds_count', { ...L.srv, svid_type: 'x509', result: 'failure' }, v(errorsPerMin)),
        ...(errorsPerMin ? [s('svidscope_server_svid_signing_failures_total', { ...L.srv, svid_type: 'x509', reason: 'internal' }, v(errorsPerMin))] : []),
      ];
    case 'workload-api':
      return [
        s('svidscope_agent_workload_api_requests_total', { ...L.agt, method: 'FetchX509SVID', code: 'OK' }, v(good)),
        ...(errorsPerMin ? [s('svidscope_agent_workload_api_requests_total', { ...L.agt, method: 'FetchX509SVID', code: 'UNAVAILABLE' }, v(errorsPerMin))] : []),
      ];
    case 'probe-success':
      return [
        s('svidscope_prober_probes_total', { ...L.prb, module: 'x509', target: 'agent-1-x509', result: 'success' }, v(good)),
        s('svidscope_prober_probes_total', { ...L.prb, module: 'x509', target: 'agent-1-x509', result: 'failure' }, v(errorsPerMin)),
      ];
    case 'issuance-latency':
      return [
        s('svidscope_server_svid_issuance_duration_seconds_count', { ...L.srv, svid_type: 'x509', result: 'success' }, v(totalPerMin)),
        s('svidscope_server_svid_issuance_duration_seconds_bucket', { ...L.srv, svid_type: 'x509', result: 'success', le: '0.1' }, v(good)),
      ];
    case 'rotation-timeliness':
      return [
        s('svidscope_agent_svid_ttl_remaining_ratio_at_rotation_count', L.agt, v(totalPerMin)),
        s('svidscope_agent_svid_ttl_remaining_ratio_at_rotation_bucket', { ...L.agt, le: '0.2' }, v(errorsPerMin)),
      ];
    case 'taint-clear':
      return [
        s('svidscope_agent_taint_clear_seconds_count', L.agt, v(totalPerMin)),
        s('svidscope_agent_taint_clear_seconds_bucket', { ...L.agt, le: '300' }, v(good)),
      ];
    default:
      throw new Error(`no inputs for SLO ${slo}`);
  }
}

export function burnCases(slo: string, alert: string): AlertCase[] {
  const l = { ...scope, slo };
  return [
    { alert, name: `${slo}: 50% errors page on both page windows`, series: sloSeries(slo, 5, 10, 60), evalTime: '30m',
      firing: [{ ruleLabels: { long: '1h' }, labels: l, value: 0.5 }, { ruleLabels: { long: '6h' }, labels: l, value: 0.5 }] },
    { alert, name: `${slo}: no errors, no alert`, series: sloSeries(slo, 0, 10, 60), evalTime: '30m', firing: [] },
  ];
}

const REFUSALS = 'svidscope_agent_workload_api_refusals_total';

export function symptomCases(): AlertCase[] {
  const up = (labels: Labels, v: string) => s('up', labels, v);
  const sc = { cluster: 'c1', trust_domain: 'example.org' };
  return [
    { alert: 'SvidscopeServerDown', name: 'server unreachable', series: [up(L.srv, '0x10')], evalTime: '5m', firing: [{ labels: L.srv, value: 0 }] },
    { alert: 'SvidscopeServerDown', name: 'server up', series: [up(L.srv, '1x10')], evalTime: '5m', firing: [] },
    { alert: 'SvidscopeAgentDown', name: 'agent unreachable', series: [up(L.agt, '0x10')], evalTime: '5m', firing: [{ labels: L.agt, value: 0 }] },
    { alert: 'SvidscopeAgentDown', name: 'agent down for less than for', series: [up(L.agt, '1x3 0x7')], evalTime: '5m', firing: [] },
    { alert: 'SvidscopeAgentNotSyncing', name: 'last sync stuck at t=100s', series: [s('svidscope_agent_last_successful_sync_timestamp_seconds', L.agt, '100x20'), s('svidscope_agent_attested', L.agt, '1x20')], evalTime: '15m', firing: [{ labels: L.agt, value: 800 }] },
    { alert: 'SvidscopeAgentNotSyncing', name: 'agent not attested', series: [s('svidscope_agent_last_successful_sync_timestamp_seconds', L.agt, '0+60x20'), s('svidscope_agent_attested', L.agt, '0x20')], evalTime: '15m', firing: [{ labels: L.agt, value: 0 }] },
    { alert: 'SvidscopeAgentNotSyncing', name: 'syncing every minute', series: [s('svidscope_agent_last_successful_sync_timestamp_seconds', L.agt, '0+60x20'), s('svidscope_agent_attested', L.agt, '1x20')], evalTime: '15m', firing: [] },
    { alert: 'SvidscopeSigningKeyNearExpiry', name: 'active CA expires at t=20000s', series: [s('svidscope_server_signing_key_expiry_timestamp_seconds', { ...L.srv, kind: 'x509', phase: 'active' }, '20000x30')], evalTime: '20m', firing: [{ labels: { ...L.srv, kind: 'x509', phase: 'active' }, value: 18800 }] },
    { alert: 'SvidscopeSigningKeyNearExpiry', name: 'only the old key is near expiry', series: [s('svidscope_server_signing_key_expiry_timestamp_seconds', { ...L.srv, kind: 'x509', phase: 'active' }, '100000x30'), s('svidscope_server_signing_key_expiry_timestamp_seconds', { ...L.srv, kind: 'x509', phase: 'old' }, '2000x30')], evalTime: '20m', firing: [] },
    { alert: 'SvidscopeTrustBundleStale', name: 'agent one sequence behind', series: [s('svidscope_server_bundle_sequence', L.srv, '3x20'), s('svidscope_agent_bundle_sequence', L.agt, '2x20')], evalTime: '15m', firing: [{ labels: L.agt, value: 1 }] },
    { alert: 'SvidscopeTrustBundleStale', name: 'agent current', series: [s('svidscope_server_bundle_sequence', L.srv, '3x20'), s('svidscope_agent_bundle_sequence', L.agt, '3x20')], evalTime: '15m', firing: [] },
    { alert: 'SvidscopeBundlePropagationSlow', name: 'every propagation between 60s and 120s', series: ['60', '120', '+Inf'].map((le) => s('svidscope_agent_bundle_propagation_seconds_bucket', { ...L.agt, bundle: 'own', le }, le === '60' ? '0x40' : '0+1x40')), evalTime: '30m', firing: [{ labels: sc, value: 119.4 }] },
    { alert: 'SvidscopeBundlePropagationSlow', name: 'propagation under 10s', series: ['10', '60', '120', '+Inf'].map((le) => s('svidscope_agent_bundle_propagation_seconds_bucket', { ...L.agt, bundle: 'own', le }, '0+1x40')), evalTime: '30m', firing: [] },
    { alert: 'SvidscopeFederatedBundleRefreshFailing', name: 'peer bundle 4000s old', series: [s('svidscope_federation_bundle_age_seconds', { ...L.srv, exported_trust_domain: 'peer.example' }, '4000x30')], evalTime: '15m', firing: [{ labels: { ...sc, exported_trust_domain: 'peer.example' }, value: 4000 }] },
    { alert: 'SvidscopeFederatedBundleRefreshFailing', name: 'peer bundle fresh', series: [s('svidscope_federation_bundle_age_seconds', { ...L.srv, exported_trust_domain: 'peer.example' }, '100x30')], evalTime: '15m', firing: [] },
    { alert: 'SvidscopeAttestationFailureSpike', name: '2 failures a minute', series: [s('svidscope_server_attestations_total', { ...L.srv, method: 'join_token', result: 'failure', reason: 'token_expired' }, '0+2x30')], evalTime: '20m', firing: [{ labels: { ...sc, method: 'join_token', reason: 'token_expired' }, value: 20 }] },
    { alert: 'SvidscopeAttestationFailureSpike', name: 'successes only', series: [s('svidscope_server_attestations_total', { ...L.srv, method: 'join_token', result: 'success', reason: 'none' }, '0+2x30')], evalTime: '20m', firing: [] },
    { alert: 'SvidscopeIssuanceLatencyHigh', name: 'signings between 0.5s and 1s', series: ['0.5', '1', '+Inf'].map((le) => s('svidscope_server_svid_issuance_duration_seconds_bucket', { ...L.srv, svid_type: 'x509', result: 'success', le }, le === '0.5' ? '0x40' : '0+1x40')), evalTime: '30m', firing: [{ labels: sc, value: 0.995 }] },
    // Refusals are observed at the time they took (0 s for a batch shed under overload): 200 fast
    // refusals per slow signing (over 99 % of observations) must not hide the slow signings.
    { alert: 'SvidscopeIssuanceLatencyHigh', name: 'slow signings among many fast refusals', series: ['0.005', '0.5', '1', '+Inf'].flatMap((le) => [
      s('svidscope_server_svid_issuance_duration_seconds_bucket', { ...L.srv, svid_type: 'x509', result: 'success', le }, le === '0.005' || le === '0.5' ? '0x40' : '0+1x40'),
      s('svidscope_server_svid_issuance_duration_seconds_bucket', { ...L.srv, svid_type: 'x509', result: 'failure', le }, '0+200x40'),
    ]), evalTime: '30m', firing: [{ labels: sc, value: 0.995 }] },
    { alert: 'SvidscopeIssuanceLatencyHigh', name: 'fast signings', series: ['0.005', '0.5', '+Inf'].map((le) => s('svidscope_server_svid_issuance_duration_seconds_bucket', { ...L.srv, svid_type: 'x509', result: 'success', le }, '0+1x40')), evalTime: '30m', firing: [] },
    { alert: 'SvidscopeWorkloadApiErrors', name: '10% UNAVAILABLE', series: [s('svidscope_agent_workload_api_requests_total', { ...L.agt, method: 'FetchX509SVID', code: 'OK' }, '0+90x30'), s('svidscope_agent_workload_api_requests_total', { ...L.agt, method: 'FetchX509SVID', code: 'UNAVAILABLE' }, '0+10x30')], evalTime: '20m', firing: [{ labels: { ...sc, instance: L.agt.instance }, value: 0.1 }] },
    { alert: 'SvidscopeWorkloadApiErrors', name: 'PERMISSION_DENIED is not an outage', series: [s('svidscope_agent_workload_api_requests_total', { ...L.agt, method: 'FetchX509SVID', code: 'OK' }, '0+90x30'), s('svidscope_agent_workload_api_requests_total', { ...L.agt, method: 'FetchX509SVID', code: 'PERMISSION_DENIED' }, '0+10x30')], evalTime: '20m', firing: [] },
    { alert: 'SvidscopeWorkloadApiRefusals', name: 'total limit refusing 10 a minute pages', series: [s(REFUSALS, { ...L.agt, reason: 'total_limit' }, '0+10x30'), s(REFUSALS, { ...L.agt, reason: 'per_uid_limit' }, '0x30')], evalTime: '20m', firing: [{ ruleLabels: { severity: 'page' }, labels: { ...sc, instance: L.agt.instance, reason: 'total_limit' }, value: 50 }] },
    { alert: 'SvidscopeWorkloadApiRefusals', name: 'one uid over its limit 3 a minute opens a ticket', series: [s(REFUSALS, { ...L.agt, reason: 'per_uid_limit' }, '0+3x30'), s(REFUSALS, { ...L.agt, reason: 'total_limit' }, '0x30')], evalTime: '20m', firing: [{ ruleLabels: { severity: 'ticket' }, labels: { ...sc, instance: L.agt.instance, reason: 'per_uid_limit' }, value: 15 }] },
    { alert: 'SvidscopeWorkloadApiRefusals', name: 'one refusal long ago, none since', series: [s(REFUSALS, { ...L.agt, reason: 'first_request_timeout' }, '0x5 1x25'), s(REFUSALS, { ...L.agt, reason: 'emfile' }, '0x30')], evalTime: '20m', firing: [] },
    { alert: 'SvidscopeSvidsExpiringSoon', name: 'three SVIDs with 15m or less', series: [s('svidscope_exporter_remaining_lifetime_seconds_bucket', { ...L.exp, source: 'agent-1', kind: 'x509_svid', le: '900' }, '3x20')], evalTime: '10m', firing: [{ labels: { ...sc, source: 'agent-1' }, value: 3 }] },
    { alert: 'SvidscopeSvidsExpiringSoon', name: 'expiring CA certificates are not SVIDs', series: [s('svidscope_exporter_remaining_lifetime_seconds_bucket', { ...L.exp, source: 'agent-1', kind: 'x509_svid', le: '900' }, '0x20'), s('svidscope_exporter_remaining_lifetime_seconds_bucket', { ...L.exp, source: 'agent-1', kind: 'ca', le: '900' }, '1x20')], evalTime: '10m', firing: [] },
    { alert: 'SvidscopeProbeClockSkew', name: 'scheduled probe sees a future notBefore', series: [s('svidscope_prober_probe_failures_total', { ...L.prb, module: 'x509', target: 'agent-1-x509', reason: 'not_yet_valid' }, '0+1x30')], evalTime: '20m', firing: [{ labels: { ...sc, module: 'x509', target: 'agent-1-x509' }, value: 10 }] },
    { alert: 'SvidscopeProbeClockSkew', name: '/probe sees a future notBefore', series: [s('svidscope_prober_probe_failures_total', { ...L.prb, module: 'x509', target: 'agent-1-x509', reason: 'not_yet_valid' }, '0x30'), s('probe_svid_failure_reason', { ...L.probe, reason: 'not_yet_valid' }, '0x5 1x25')], evalTime: '20m', firing: [{ labels: { ...sc, instance: L.probe.instance }, value: 1 }] },
    { alert: 'SvidscopeProbeClockSkew', name: 'other failure reasons', series: [s('svidscope_prober_probe_failures_total', { ...L.prb, module: 'x509', target: 'agent-1-x509', reason: 'not_yet_valid' }, '0x30'), s('svidscope_prober_probe_failures_total', { ...L.prb, module: 'x509', target: 'agent-1-x509', reason: 'expired' }, '0+1x30')], evalTime: '20m', firing: [] },
    { alert: 'SvidscopeProberDown', name: 'prober unreachable', series: [up(L.prb, '0x10')], evalTime: '8m', firing: [{ labels: L.prb, value: 0 }] },
    { alert: 'SvidscopeProberDown', name: 'prober up', series: [up(L.prb, '1x10')], evalTime: '8m', firing: [] },
    { alert: 'SvidscopeExporterScrapeErrors', name: 'a source fails every minute', series: [s('svidscope_exporter_source_errors_total', { ...L.exp, source: 'agent-1', reason: 'unavailable' }, '0+1x40'), s('svidscope_exporter_scrape_truncated_total', L.exp, '0x40'), up(L.exp, '1x40')], evalTime: '35m', firing: [{ labels: { ...sc, instance: L.exp.instance, source: 'agent-1' }, value: 15 }] },
    { alert: 'SvidscopeExporterScrapeErrors', name: 'exporter unreachable', series: [s('svidscope_exporter_source_errors_total', { ...L.exp, source: 'agent-1', reason: 'unavailable' }, '0x40'), up(L.exp, '0x40')], evalTime: '35m', firing: [{ labels: L.exp, value: 0 }] },
    { alert: 'SvidscopeExporterScrapeErrors', name: 'healthy exporter', series: [s('svidscope_exporter_source_errors_total', { ...L.exp, source: 'agent-1', reason: 'unavailable' }, '0x40'), s('svidscope_exporter_scrape_truncated_total', L.exp, '0x40'), up(L.exp, '1x40')], evalTime: '35m', firing: [] },
  ];
}

// --- key compromise (issue 15) ---
export function keyCompromiseCases(): AlertCase[] {
  const sc = { cluster: 'c1', trust_domain: 'example.org' };
  const DAY = 86400;
  const upstream = (v: string) => s('svidscope_server_upstream_authority_expiry_timestamp_seconds', L.srv, v);
  return [
    { alert: 'SvidscopeTaintedSvidsHeld', name: 'two tainted x509-SVIDs held for 10 minutes', series: [s('svidscope_agent_tainted_svids', { ...L.agt, kind: 'x509' }, '0x2 2x20'), s('svidscope_agent_tainted_svids', { ...L.agt, kind: 'jwt' }, '0x22')], evalTime: '15m',
      firing: [{ labels: { ...sc, instance: L.agt.instance, kind: 'x509' }, value: 2 }] },
    { alert: 'SvidscopeTaintedSvidsHeld', name: 'replaced within 4 minutes', series: [s('svidscope_agent_tainted_svids', { ...L.agt, kind: 'x509' }, '0x2 3 2 1 1 0x16')], evalTime: '15m', firing: [] },
    // Due at t=60s (the active key's prepare point, a successor waiting): overdue since 1m, 1140s at t=20m.
    { alert: 'SvidscopeAuthorityActivationOverdue', name: 'prepared key waits past the prepare point', series: [s('svidscope_server_authority_activation_due_timestamp_seconds', { ...L.srv, kind: 'x509' }, '60x30')], evalTime: '20m',
      firing: [{ labels: { ...L.srv, kind: 'x509' }, value: 1140 }] },
    { alert: 'SvidscopeAuthorityActivationOverdue', name: 'activation due in the future', series: [s('svidscope_server_authority_activation_due_timestamp_seconds', { ...L.srv, kind: 'jwt' }, '72000x30')], evalTime: '20m', firing: [] },
    { alert: 'SvidscopeUpstreamAuthorityNearExpiry', name: 'upstream expires in about 20 days: ticket', series: [upstream(`${20 * DAY}x30`)], evalTime: '20m',
      firing: [{ ruleLabels: { severity: 'ticket' }, labels: L.srv, value: 20 * DAY - 1200 }] },
    { alert: 'SvidscopeUpstreamAuthorityNearExpiry', name: 'upstream expires in about 2 days: page and ticket', series: [upstream(`${2 * DAY}x30`)], evalTime: '20m',
      firing: [{ ruleLabels: { severity: 'ticket' }, labels: L.srv, value: 2 * DAY - 1200 }, { ruleLabels: { severity: 'page' }, labels: L.srv, value: 2 * DAY - 1200 }] },
    { alert: 'SvidscopeUpstreamAuthorityNearExpiry', name: 'upstream a year away', series: [upstream(`${365 * DAY}x30`)], evalTime: '20m', firing: [] },
    { alert: 'SvidscopeUpstreamAuthorityNearExpiry', name: 'no upstream authority (0)', series: [upstream('0x30')], evalTime: '20m', firing: [] },
  ];
}

/**
 * The ticket windows of one SLO: errors at 4x the budget rate for hours open both tickets
 * (factors 3 and 1) and no page (factors 6 and 14.4).
 */
export function ticketCase(slo: string, alert: string, target: number): AlertCase {
  const l = { ...scope, slo };
  const errors = Math.round(4000 * (1 - target));
  return { alert, name: `${slo}: 4x the budget rate for hours opens tickets, no page`, series: sloSeries(slo, errors, 1000, 240), evalTime: '3h30m',
    firing: [{ ruleLabels: { long: '1d' }, labels: l, value: errors / 1000 }, { ruleLabels: { long: '3d' }, labels: l, value: errors / 1000 }] };
}

// --- Prometheus template functions used by the annotations (text/template + humanize*) ---

function goG4(v: number): string {
  if (v === 0) return '0';
  const exp = Math.floor(Math.log10(Math.abs(v)));
  if (exp < -4 || exp >= 4) {
    const [m, e] = v.toExponential(3).split('e');
    const mant = String(Number(m));
    const n = Number(e);
    return `${mant}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  return String(Number(v.toPrecision(4)));
}

function humanize(v: number): string {
  if (v === 0 || Math.abs(v) >= 1 && Math.abs(v) < 1000) return goG4(v);
  throw new Error(`humanize(${v}) not implemented in the test renderer`);
}

function humanizeDuration(v: number): string {
  if (Math.abs(v) < 1) return `${goG4(v * 1000)}ms`;
  const sign = v < 0 ? '-' : '';
  const a = Math.abs(v);
  const d = Math.floor(a / 86400);
  const h = Math.floor(a / 3600) % 24;
  const m = Math.floor(a / 60) % 60;
  const s = Math.floor(a) % 60;
  if (d) return `${sign}${d}d ${h}h ${m}m ${s}s`;
  if (h) return `${sign}${h}h ${m}m ${s}s`;
  if (m) return `${sign}${m}m ${s}s`;
  return `${sign}${goG4(a)}s`;
}

/** Renders the `{{ … }}` forms the svidscope annotations use, as Prometheus does. */
export function renderTemplate(text: string, labels: Labels, value: number): string {
  return text.replace(/\{\{\s*(\$labels\.(\w+)|\$value)\s*(?:\|\s*(\w+)\s*)?\}\}/g, (_m, _what, label: string | undefined, fn: string | undefined) => {
    if (label !== undefined) return labels[label] ?? '';
    if (!fn) return String(value);
    if (fn === 'humanize') return humanize(value);
    if (fn === 'humanizePercentage') return `${goG4(value * 100)}%`;
    if (fn === 'humanizeDuration') return humanizeDuration(value);
    throw new Error(`template function ${fn} not supported by the test renderer`);
  });
}

/** promtool's exp_alerts for a case. */
export function expectedAlerts(rules: AlertRule[], k: AlertCase): { exp_labels: Labels; exp_annotations: Labels }[] {
  return k.firing.map((fa) => {
    const candidates = rules.filter((r) => r.alert === k.alert && Object.entries(fa.ruleLabels ?? {}).every(([n, v]) => r.labels[n] === v));
    if (candidates.length !== 1) throw new Error(`${k.alert}/${k.name}: ${candidates.length} rules match ${JSON.stringify(fa.ruleLabels)}`);
    const rule = candidates[0];
    return {
      exp_labels: { ...fa.labels, ...rule.labels },
      exp_annotations: {
        summary: rule.annotations.summary,
        description: renderTemplate(rule.annotations.description, fa.labels, fa.value),
        runbook_url: rule.annotations.runbook_url,
      },
    };
  });
}

/** SvidscopeServerSaturated: admission refusals or slow syncs at a server (kept apart from symptomCases). */
export function serverLoadCases(): AlertCase[] {
  const srv = { cluster: 'c1', trust_domain: 'example.org', instance: L.srv.instance };
  const refusals = (limit: string, values: string) => s('svidscope_server_limit_refusals_total', { ...L.srv, limit }, values);
  const syncBuckets = (slowFrom: string) => ['0.1', '1', '2.5', '+Inf'].map((le) =>
    s('svidscope_server_api_request_duration_seconds_bucket', { ...L.srv, service: 'node', method: 'SyncAuthorizedEntries', le }, Number(le) < Number(slowFrom) ? '0x40' : '0+60x40'));
  return [
    { alert: 'SvidscopeServerSaturated', name: 'signing queue full: 1 refusal a second', series: [refusals('signing_queue_max_csrs', '0+60x40'), refusals('expired_deadline', '0x40'), ...syncBuckets('0.1')], evalTime: '30m', firing: [{ labels: srv, value: 1 }] },
    { alert: 'SvidscopeServerSaturated', name: 'calls dropped past their deadline', series: [refusals('expired_deadline', '0+30x40'), ...syncBuckets('0.1')], evalTime: '30m', firing: [{ labels: srv, value: 0.5 }] },
    { alert: 'SvidscopeServerSaturated', name: 'every sync between 1 s and 2.5 s', series: [...syncBuckets('2.5')], evalTime: '30m', firing: [{ labels: srv, value: 2.485 }] },
    { alert: 'SvidscopeServerSaturated', name: 'fast syncs, a few refusals', series: [refusals('signing_queue_max_csrs', '0+1x40'), ...syncBuckets('0.1')], evalTime: '30m', firing: [] },
    { alert: 'SvidscopeServerSaturated', name: 'JWT audience refusals are not saturation', series: [refusals('jwt_audience_max_count', '0+600x40'), ...syncBuckets('0.1')], evalTime: '30m', firing: [] },
    ...watchCases(),
  ];
}

/** SvidscopeAgentsNotWatching: change streams summed over a trust domain's servers against its active agents. */
function watchCases(): AlertCase[] {
  const td = { cluster: 'c1', trust_domain: 'example.org' };
  const srv2 = { ...L.srv, instance: 'server-2:8081' };
  const streams = (labels: Labels, values: string) => s('svidscope_server_watch_streams', labels, values);
  // Both servers see the whole fleet (one datastore): 1,000 active agents.
  const agents = (n: number) => [L.srv, srv2].map((l) => s('svidscope_server_attested_agents', { ...l, state: 'active' }, `${n}x40`));
  return [
    { alert: 'SvidscopeAgentsNotWatching', name: 'two servers hold 500 + 200 streams of 1,000 agents', series: [streams(L.srv, '500x40'), streams(srv2, '200x40'), ...agents(1000)], evalTime: '30m', firing: [{ labels: td, value: 0.7 }] },
    { alert: 'SvidscopeAgentsNotWatching', name: '900 of 1,000 agents hold a stream, spread over two servers', series: [streams(L.srv, '450x40'), streams(srv2, '450x40'), ...agents(1000)], evalTime: '30m', firing: [] },
    { alert: 'SvidscopeAgentsNotWatching', name: 'push off on every server: no streams by design', series: [streams(L.srv, '0x40'), streams(srv2, '0x40'), ...agents(1000)], evalTime: '30m', firing: [] },
    { alert: 'SvidscopeAgentsNotWatching', name: 'a fleet of 5 agents, 2 of them restarting', series: [streams(L.srv, '3x40'), ...agents(5)], evalTime: '30m', firing: [] },
    { alert: 'SvidscopeAgentsNotWatching', name: 'a drop shorter than the for duration', series: [streams(L.srv, '1000x20 300x3 1000x17'), ...agents(1000)], evalTime: '30m', firing: [] },
  ];
}
