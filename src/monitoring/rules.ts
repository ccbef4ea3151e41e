/**
 * Recording and alerting rules, as data, rendered to Prometheus rule files. SLOs follow sloth's
 * layout (`slo:sli_error:ratio_rate<window>{slo=…}` for every window, a cheap period ratio from
 * 5m rates, objective and budget-remaining series) and the four-window burn-rate table of the SRE
 * Workbook; symptom alerts follow kubernetes-mixin conventions (CamelCase names with a component
 * prefix, `summary` without templates, templated `description`, `runbook_url`).
 */
import { stringify } from 'yaml';
import type { MonitoringConfig, Severity } from './config.js';
import { parseDurationSeconds } from '../common/duration.js';
import { by, humanDuration, m, num } from './promql.js';
import { slos } from './slos.js';
import { serverLoadAlerts } from './server-load.js';
import { SvidscopeError } from '../common/errors/catalog.js';

/** Seconds of a Prometheus duration of the config ("5m", "30d"). */
const durationSeconds = (d: string): number => parseDurationSeconds(d, 'monitoring config');

export interface RecordingRule {
  record: string;
  expr: string;
  labels?: Record<string, string>;
}

export interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string> & { severity: Severity };
  annotations: { summary: string; description: string; runbook_url: string };
  /**
   * The quantity the alert compares, without its threshold: present while everything is healthy.
   * The integration test requires it to return data; dashboards plot it.
   */
  signal: string;
}

export interface RuleGroup<R> {
  name: string;
  interval?: string;
  rules: R[];
}

/** The windows every SLO is recorded over: the burn-rate windows, plus 5m for the period ratio. */
export function sloWindows(c: MonitoringConfig): string[] {
  const ws = new Set<string>(['5m']);
  for (const w of c.burnWindows) ws.add(w.short).add(w.long);
  return [...ws].sort((a, b) => durationSeconds(a) - durationSeconds(b));
}

export function recordingGroups(c: MonitoringConfig): RuleGroup<RecordingRule>[] {
  return slos(c).map((slo) => {
    const l = { slo: slo.name };
    const rules: RecordingRule[] = [
      { record: 'slo:sli_errors:rate5m', expr: slo.errors('5m'), labels: l },
      { record: 'slo:sli_requests:rate5m', expr: slo.total('5m'), labels: l },
      ...sloWindows(c).map((w) => ({ record: `slo:sli_error:ratio_rate${w}`, expr: `${slo.errors(w)}\n/\n${slo.total(w)}`, labels: l })),
      // The period ratio from the 5m rates (cheap; a window without traffic adds nothing instead of NaN).
      { record: `slo:sli_error:ratio_rate${c.sloPeriod}`, expr: `sum_over_time(slo:sli_errors:rate5m{slo="${slo.name}"}[${c.sloPeriod}])\n/\nsum_over_time(slo:sli_requests:rate5m{slo="${slo.name}"}[${c.sloPeriod}])`, labels: l },
      { record: 'slo:objective:ratio', expr: `vector(${num(slo.target)})`, labels: l },
      { record: 'slo:error_budget:ratio', expr: `vector(${num(1 - slo.target)})`, labels: l },
      { record: 'slo:period_error_budget_remaining:ratio', expr: `1 - slo:sli_error:ratio_rate${c.sloPeriod}{slo="${slo.name}"} / ${num(1 - slo.target)}`, labels: l },
    ];
    return { name: `svidscope-slo-${slo.name}-rules`, ...interval(c), rules };
  });
}

export function alertGroups(c: MonitoringConfig): RuleGroup<AlertRule>[] {
  return [
    ...slos(c).map((slo) => ({
      name: `svidscope-slo-${slo.name}-alerts`,
      ...interval(c),
      rules: c.burnWindows.map((w): AlertRule => {
        const threshold = num(w.factor * (1 - slo.target));
        const consumed = Math.round((w.factor * durationSeconds(w.long) / durationSeconds(c.sloPeriod)) * 1000) / 10;
        return {
          alert: slo.alert,
          expr: `slo:sli_error:ratio_rate${w.long}{slo="${slo.name}"} > ${threshold}\nand\nslo:sli_error:ratio_rate${w.short}{slo="${slo.name}"} > ${threshold}`,
          for: c.forOverride ?? w.for,
          labels: { severity: w.severity, slo: slo.name, long: w.long, short: w.short },
          annotations: {
            summary: `The ${slo.title} SLO is burning its error budget too fast.`,
            description: `{{ $labels.slo }} SLO (target ${num(slo.target * 100)}%) in trust domain {{ $labels.${c.trustDomainLabel} }}, cluster {{ $labels.${c.clusterLabel} }}: error ratio {{ $value | humanizePercentage }} over the last ${w.long} (and over ${w.short}), ${w.factor}x the budget rate; at this rate ${consumed}% of the ${c.sloPeriod} budget is gone in ${w.long}. SLI: ${slo.sli}.`,
            runbook_url: runbookUrl(c, slo.alert),
          },
          signal: `slo:sli_error:ratio_rate${w.long}{slo="${slo.name}"}`,
        };
      }),
    })),
    { name: 'svidscope-identity-plane', ...interval(c), rules: identityPlaneAlerts(c) },
    { name: 'svidscope-observability', ...interval(c), rules: observabilityAlerts(c) },
    { name: 'svidscope-key-compromise', ...interval(c), rules: keyCompromiseAlerts(c) },
    { name: 'svidscope-server-load', ...interval(c), rules: serverLoadAlerts(c) },
  ];
}

function interval(c: MonitoringConfig): { interval?: string } {
  return c.ruleInterval ? { interval: c.ruleInterval } : {};
}

export function runbookUrl(c: MonitoringConfig, alert: string): string {
  return `${c.runbookBaseUrl}/${alert}.md`;
}

interface Symptom {
  alert: string;
  severity: Severity;
  expr: string;
  signal: string;
  summary: string;
  description: string;
}

export function symptom(c: MonitoringConfig, s: Symptom): AlertRule {
  const f = c.forOverride ?? c.alertFor[s.alert];
  if (!f) throw new SvidscopeError('config-invalid', `monitoring config: no alertFor.${s.alert}`);
  return { alert: s.alert, expr: s.expr, for: f, labels: { severity: s.severity }, annotations: { summary: s.summary, description: s.description, runbook_url: runbookUrl(c, s.alert) }, signal: s.signal };
}

function identityPlaneAlerts(c: MonitoringConfig): AlertRule[] {
  const t = c.thresholds;
  const td = `{{ $labels.${c.trustDomainLabel} }}`;
  const cl = `{{ $labels.${c.clusterLabel} }}`;
  const ftd = `{{ $labels.${c.federatedTrustDomainLabel} }}`;
  const wapiCodes = c.slos.workloadApi.errorCodes.join('|');
  const wapiAll = `sum by (${by(c, 'instance')}) (rate(${m(c, 'agent', 'svidscope_agent_workload_api_requests_total')}[5m]))`;
  const wapiErr = `sum by (${by(c, 'instance')}) (rate(${m(c, 'agent', 'svidscope_agent_workload_api_requests_total', `code=~"${wapiCodes}"`)}[5m]))`;
  const wapiRatio = `(${wapiErr} or ${wapiAll} * 0)\n/\n${wapiAll}`;
  const bundleBehind = `max by (${by(c)}) (${m(c, 'server', 'svidscope_server_bundle_sequence')})\n- on (${by(c)}) group_right ()\n${m(c, 'agent', 'svidscope_agent_bundle_sequence')}`;
  const keyLeft = `${m(c, 'server', 'svidscope_server_signing_key_expiry_timestamp_seconds', 'phase="active"')} - time()`;
  const syncAge = `time() - ${m(c, 'agent', 'svidscope_agent_last_successful_sync_timestamp_seconds')}`;
  const propagation = `histogram_quantile(0.99, sum by (${by(c, 'le')}) (rate(${m(c, 'agent', 'svidscope_agent_bundle_propagation_seconds_bucket')}[1h])))`;
  const fedAge = `max by (${by(c, c.federatedTrustDomainLabel)}) (${m(c, 'server', 'svidscope_federation_bundle_age_seconds')})`;
  const attestFail = `sum by (${by(c, 'method', 'reason')}) (increase(${m(c, 'server', 'svidscope_server_attestations_total', 'result="failure"')}[10m]))`;
  const refused = (matcher: string) => `sum by (${by(c, 'instance', 'reason')}) (increase(${m(c, 'agent', 'svidscope_agent_workload_api_refusals_total', matcher)}[5m]))`;
  const issuanceP99 = `histogram_quantile(0.99, sum by (${by(c, 'le')}) (rate(${m(c, 'server', 'svidscope_server_svid_issuance_duration_seconds_bucket', 'svid_type="x509"', 'result="success"')}[10m])))`;
  return [
    symptom(c, {
      alert: 'SvidscopeServerDown', severity: 'page',
      expr: `${m(c, 'server', 'up')} == 0`, signal: m(c, 'server', 'up'),
      summary: 'An svidscope server cannot be scraped.',
      description: `Server {{ $labels.instance }} of trust domain ${td} (cluster ${cl}) has been unreachable for Prometheus for ${forText(c, 'SvidscopeServerDown')}: agents cannot sync, no new SVIDs are signed, and cached SVIDs expire at their notAfter.`,
    }),
    symptom(c, {
      alert: 'SvidscopeAgentDown', severity: 'page',
      expr: `${m(c, 'agent', 'up')} == 0`, signal: m(c, 'agent', 'up'),
      summary: 'An svidscope agent cannot be scraped.',
      description: `Agent {{ $labels.instance }} of trust domain ${td} (cluster ${cl}) has been unreachable for Prometheus for ${forText(c, 'SvidscopeAgentDown')}: workloads on its node cannot fetch or rotate SVIDs through its Workload API.`,
    }),
    symptom(c, {
      alert: 'SvidscopeAgentNotSyncing', severity: 'page',
      expr: `(${syncAge} > ${t.agentSyncStaleSeconds})\nor\n${m(c, 'agent', 'svidscope_agent_attested')} == 0`, signal: syncAge,
      summary: 'An svidscope agent is not syncing with its server.',
      description: `Agent {{ $labels.instance }} of trust domain ${td} (cluster ${cl}) has not completed a sync with its server for more than ${humanDuration(t.agentSyncStaleSeconds)} (value {{ $value | humanize }}; 0 means it holds no valid agent SVID): its entries, bundles and SVIDs are frozen and rotation stops.`,
    }),
    symptom(c, {
      alert: 'SvidscopeSigningKeyNearExpiry', severity: 'page',
      expr: `${keyLeft} < ${t.signingKeyExpirySeconds}`, signal: keyLeft,
      summary: 'An active signing key (X.509 CA or JWT key) is close to expiry.',
      description: `The active {{ $labels.kind }} signing key of server {{ $labels.instance }} in trust domain ${td} (cluster ${cl}) expires in {{ $value | humanizeDuration }} (threshold ${humanDuration(t.signingKeyExpirySeconds)}): CA rotation is not happening; SVIDs cannot outlive it, and once it expires nothing it signed verifies.`,
    }),
    symptom(c, {
      alert: 'SvidscopeTrustBundleStale', severity: 'page',
      expr: `${bundleBehind} > 0`, signal: bundleBehind,
      summary: 'An agent serves an older trust bundle than its server.',
      description: `Agent {{ $labels.instance }} of trust domain ${td} (cluster ${cl}) serves a bundle {{ $value }} sequence number(s) behind its server's: its workloads will reject SVIDs signed by the new authority.`,
    }),
    symptom(c, {
      alert: 'SvidscopeBundlePropagationSlow', severity: 'ticket',
      expr: `${propagation} > ${t.bundlePropagationSeconds}`, signal: propagation,
      summary: 'Trust bundle updates take too long to reach the agents.',
      description: `p99 time from a new bundle at the server to agents serving it in trust domain ${td} (cluster ${cl}) is {{ $value | humanizeDuration }} over the last hour (threshold ${humanDuration(t.bundlePropagationSeconds)}).`,
    }),
    symptom(c, {
      alert: 'SvidscopeFederatedBundleRefreshFailing', severity: 'ticket',
      expr: `${fedAge} > ${t.federatedBundleMaxAgeSeconds}`, signal: fedAge,
      summary: 'A federated trust bundle is not being refreshed.',
      description: `Servers of trust domain ${td} (cluster ${cl}) last confirmed the bundle of federated trust domain ${ftd} {{ $value | humanizeDuration }} ago (threshold ${humanDuration(t.federatedBundleMaxAgeSeconds)}): its bundle endpoint refreshes fail; peer CA rotations will not be picked up.`,
    }),
    symptom(c, {
      alert: 'SvidscopeAttestationFailureSpike', severity: 'ticket',
      expr: `${attestFail} > ${t.attestationFailures}`, signal: `sum by (${by(c)}) (increase(${m(c, 'server', 'svidscope_server_attestations_total')}[10m]))`,
      summary: 'Node attestation failures are spiking.',
      description: `{{ $value | humanize }} node attestations with method {{ $labels.method }} failed with reason {{ $labels.reason }} in the last 10 minutes in trust domain ${td} (cluster ${cl}) (threshold ${t.attestationFailures}): new or restarted agents cannot join.`,
    }),
    symptom(c, {
      alert: 'SvidscopeIssuanceLatencyHigh', severity: 'ticket',
      expr: `${issuanceP99} > ${num(t.issuanceLatencySeconds)}`, signal: issuanceP99,
      summary: 'X.509-SVID issuance is slow.',
      description: `p99 X.509-SVID signing latency in trust domain ${td} (cluster ${cl}) is {{ $value | humanizeDuration }} over 10 minutes (threshold ${num(t.issuanceLatencySeconds)}s).`,
    }),
    symptom(c, {
      alert: 'SvidscopeWorkloadApiErrors', severity: 'ticket',
      expr: `${wapiRatio}\n> ${num(t.workloadApiErrorRatio)}`, signal: wapiRatio,
      summary: 'An agent\'s Workload API answers with errors.',
      description: `{{ $value | humanizePercentage }} of Workload API requests at agent {{ $labels.instance }} (trust domain ${td}, cluster ${cl}) failed with ${c.slos.workloadApi.errorCodes.join('/')} over 5 minutes (threshold ${num(t.workloadApiErrorRatio * 100)}%).`,
    }),
    // Refusals that turn every caller of the node away (the agent at its total connection limit or
    // out of descriptors) page; those that only hit the offending uid or request go to a ticket.
    ...([['page', WORKLOAD_API_NODE_WIDE], ['ticket', WORKLOAD_API_PER_CALLER]] as const).map(([severity, reasons]) => symptom(c, {
      alert: 'SvidscopeWorkloadApiRefusals', severity,
      expr: `${refused(`reason=~"${reasons.join('|')}"`)} > ${t.workloadApiRefusals}`, signal: refused(''),
      summary: 'An agent keeps refusing Workload API connections or requests.',
      description: `Agent {{ $labels.instance }} (trust domain ${td}, cluster ${cl}) refused {{ $value | humanize }} Workload API connections or requests with reason {{ $labels.reason }} in 5 minutes (threshold ${t.workloadApiRefusals}), for ${forText(c, 'SvidscopeWorkloadApiRefusals')}: ${severity === 'page' ? 'every workload on that node is being turned away' : 'one local uid is flooding the socket, holding idle connections, or a caller exec\'d after connecting'}. The agent log names the uids.`,
    })),
  ];
}

/** Refusal reasons of svidscope_agent_workload_api_refusals_total that hit every caller of the node, and those that hit one caller. */
export const WORKLOAD_API_NODE_WIDE = ['total_limit', 'emfile'] as const;
export const WORKLOAD_API_PER_CALLER = ['per_uid_limit', 'first_request_timeout', 'exec_after_connect'] as const;

function observabilityAlerts(c: MonitoringConfig): AlertRule[] {
  const t = c.thresholds;
  const td = `{{ $labels.${c.trustDomainLabel} }}`;
  const cl = `{{ $labels.${c.clusterLabel} }}`;
  const expiring = `sum by (${by(c, 'source')}) (${m(c, 'exporter', 'svidscope_exporter_remaining_lifetime_seconds_bucket', 'kind="x509_svid"', `le="${t.svidExpiringSeconds}"`)})`;
  const skewStatic = `sum by (${by(c, 'module', 'target')}) (increase(${m(c, 'prober', 'svidscope_prober_probe_failures_total', 'reason="not_yet_valid"')}[10m]))`;
  const skewProbe = `max by (${by(c, 'instance')}) (max_over_time(${m(c, 'probe', 'probe_svid_failure_reason', 'reason="not_yet_valid"')}[10m]))`;
  const sourceErrors = `sum by (${by(c, 'instance', 'source')}) (increase(${m(c, 'exporter', 'svidscope_exporter_source_errors_total')}[15m]))`;
  return [
    symptom(c, {
      alert: 'SvidscopeSvidsExpiringSoon', severity: 'page',
      expr: `${expiring} > 0`, signal: expiring,
      summary: 'A cohort of X509-SVIDs is close to expiry without being rotated.',
      description: `{{ $value }} X509-SVID(s) seen by exporter source {{ $labels.source }} in trust domain ${td} (cluster ${cl}) have ${humanDuration(t.svidExpiringSeconds)} or less of lifetime left (expired ones included): rotation is failing for them.`,
    }),
    symptom(c, {
      alert: 'SvidscopeProbeClockSkew', severity: 'ticket',
      expr: `(${skewStatic} > 0)\nor\n(${skewProbe} > 0)`, signal: skewStatic,
      summary: 'Probes see SVIDs that are not valid yet: clocks are skewed.',
      description: `Probe {{ $labels.target }}{{ $labels.instance }} (module {{ $labels.module }}, trust domain ${td}, cluster ${cl}) found SVIDs whose notBefore is in the future beyond the clock-skew tolerance {{ $value | humanize }} time(s) in 10 minutes: the clocks of the prober host and the signing server disagree.`,
    }),
    symptom(c, {
      alert: 'SvidscopeProberDown', severity: 'ticket',
      expr: `${m(c, 'prober', 'up')} == 0`, signal: m(c, 'prober', 'up'),
      summary: 'The svidscope prober cannot be scraped.',
      description: `Prober {{ $labels.instance }} (trust domain ${td}, cluster ${cl}) has been unreachable for ${forText(c, 'SvidscopeProberDown')}: synthetic probes and the probe-success SLO are blind.`,
    }),
    symptom(c, {
      alert: 'SvidscopeExporterScrapeErrors', severity: 'ticket',
      expr: `(${sourceErrors} > ${t.exporterSourceErrors})\nor\n(sum by (${by(c, 'instance')}) (increase(${m(c, 'exporter', 'svidscope_exporter_scrape_truncated_total')}[15m])) > 0)\nor\n(${m(c, 'exporter', 'up')} == 0)`,
      signal: sourceErrors,
      summary: 'The svidscope exporter fails to collect or serve its data.',
      description: `Exporter {{ $labels.instance }} (trust domain ${td}, cluster ${cl}): source {{ $labels.source }} failed {{ $value | humanize }} time(s) in 15 minutes (threshold ${t.exporterSourceErrors}), or scrapes were truncated, or Prometheus cannot scrape the exporter (value 0): lifecycle panels and expiry alerts go stale.`,
    }),
  ];
}

// --- key compromise (issue 15): taint response, activation schedule, upstream authority ---
function keyCompromiseAlerts(c: MonitoringConfig): AlertRule[] {
  const t = c.thresholds;
  const td = `{{ $labels.${c.trustDomainLabel} }}`;
  const cl = `{{ $labels.${c.clusterLabel} }}`;
  const objective = humanDuration(c.slos.taintClear.thresholdSeconds);
  const tainted = `sum by (${by(c, 'instance', 'kind')}) (${m(c, 'agent', 'svidscope_agent_tainted_svids')})`;
  const overdue = `time() - ${m(c, 'server', 'svidscope_server_authority_activation_due_timestamp_seconds')}`;
  const upstream = m(c, 'server', 'svidscope_server_upstream_authority_expiry_timestamp_seconds');
  // 0 = no upstream authority configured.
  const upstreamLeft = `(${upstream} > 0) - time()`;
  const upstreamAlert = (severity: Severity, threshold: number): AlertRule => ({
    ...symptom(c, {
      alert: 'SvidscopeUpstreamAuthorityNearExpiry', severity,
      expr: `${upstreamLeft} < ${threshold}`, signal: upstream,
      summary: 'The upstream authority the server\'s CAs are signed under is close to expiry.',
      description: `The upstream authority of server {{ $labels.instance }} in trust domain ${td} (cluster ${cl}) expires in {{ $value | humanizeDuration }} (threshold ${humanDuration(threshold)}): new X.509 CAs are cut short to its notAfter, and when it expires no SVID of the trust domain verifies.`,
    }),
    labels: { severity },
  });
  return [
    symptom(c, {
      alert: 'SvidscopeTaintedSvidsHeld', severity: 'page',
      expr: `${tainted} > 0`, signal: tainted,
      summary: 'An agent still holds SVIDs signed by a tainted authority.',
      description: `Agent {{ $labels.instance }} of trust domain ${td} (cluster ${cl}) has held {{ $value }} {{ $labels.kind }}-SVID(s) signed by a tainted authority for ${forText(c, 'SvidscopeTaintedSvidsHeld')} (the taint-clear objective is ${objective}): workloads there still present credentials of a compromised key, and revoking it now would cut them off.`,
    }),
    symptom(c, {
      alert: 'SvidscopeAuthorityActivationOverdue', severity: 'ticket',
      expr: `${overdue} > 0`, signal: overdue,
      summary: 'A signing key was not activated when due.',
      description: `Server {{ $labels.instance }} of trust domain ${td} (cluster ${cl}) should have had a new {{ $labels.kind }} key active {{ $value | humanizeDuration }} ago: a key prepared for a compromise response waits unactivated past the active key's prepare point, or scheduled rotation stalled.`,
    }),
    upstreamAlert('ticket', t.upstreamAuthorityExpiryTicketSeconds),
    upstreamAlert('page', t.upstreamAuthorityExpiryPageSeconds),
  ];
}

export function forText(c: MonitoringConfig, alert: string): string {
  const f = c.forOverride ?? c.alertFor[alert];
  return humanDuration(durationSeconds(f));
}

/** Every alert rule (several rules can share a name: one per window pair or severity). */
export function allAlerts(c: MonitoringConfig): AlertRule[] {
  return alertGroups(c).flatMap((g) => g.rules);
}

export function alertNames(c: MonitoringConfig): string[] {
  return [...new Set(allAlerts(c).map((a) => a.alert))];
}

const HEADER = (what: string) => `# ${what}\n# Generated by \`npm run generate\` from src/monitoring (svidscope monitoring mixin); do not edit by hand.\n# Regenerate with your own parameters instead: see docs/monitoring.md.\n`;

export function renderRecordingRules(c: MonitoringConfig): string {
  return HEADER('svidscope recording rules: SLIs over the burn-rate windows, SLO objective and budget.') + stringify({ groups: recordingGroups(c) }, { lineWidth: 0, aliasDuplicateObjects: false });
}

export function renderAlertingRules(c: MonitoringConfig): string {
  const groups = alertGroups(c).map((g) => ({
    ...g,
    rules: g.rules.map((r) => ({ alert: r.alert, expr: r.expr, for: r.for, labels: r.labels, annotations: r.annotations })),
  }));
  return HEADER('svidscope alerting rules: SLO burn rates (page/ticket) and symptoms.') + stringify({ groups }, { lineWidth: 0, aliasDuplicateObjects: false });
}
