/**
 * The six svidscope dashboards. Queries read the series documented in docs/metrics.md,
 * docs/probes.md and docs/exporter.md, plus the SLO series recorded by alerts/.
 */
import type { Dashboard } from '@grafana/grafana-foundation-sdk/dashboard';
import * as units from '@grafana/grafana-foundation-sdk/units';
import type { MonitoringConfig } from '../config.js';
import { num } from '../promql.js';
import { slos } from '../slos.js';
import { buildDashboard, f, fs, type DashboardSpec, type PanelSpec, type RowSpec } from './common.js';
import { serverLoadRow } from '../server-load.js';

const RI = '$__rate_interval';

/** The six dashboards, in the order the generator writes them. */
export function dashboardSpecs(c: MonitoringConfig): DashboardSpec[] {
  return [overviewDashboard(c), onCallDashboard(c), svidLifecycleDashboard(c), trustBundlesDashboard(c), probesDashboard(c), gameDayDashboard(c)];
}

/** Alert names of every SLO's burn-rate alert: the runbooks linked from the SLO panels. */
function sloAlertNames(c: MonitoringConfig): string[] {
  return slos(c).map((s) => s.alert);
}

/** Burn rate of every SLO over `window`: the error ratio divided by the error budget. */
function sloBurnRate(c: MonitoringConfig, window: string): string {
  return `slo:sli_error:ratio_rate${window}${fs(c)} / on (slo) group_left () slo:error_budget:ratio`;
}

/** Bundle sequence numbers each agent is behind its server. */
function agentsBundleSequencesBehind(c: MonitoringConfig): string {
  const cl = c.clusterLabel;
  const td = c.trustDomainLabel;
  return `max by (${cl}, ${td}) (svidscope_server_bundle_sequence${f(c, 'server', { instance: false })}) - on (${cl}, ${td}) group_right () svidscope_agent_bundle_sequence${f(c, 'agent')}`;
}

/** Overview: SLO attainment and budget, issuance, fleet availability, active incidents. */
function overviewDashboard(c: MonitoringConfig): DashboardSpec {
  const burnAlerts = sloAlertNames(c);
  const cl = c.clusterLabel;
  const td = c.trustDomainLabel;
  const burnRate = (window: string) => sloBurnRate(c, window);
  return {
    file: 'svidscope-overview.json',
    title: 'svidscope / Overview',
    description: 'SLO attainment and error budget per SLO, issuance, fleet agent availability and active incidents.',
    rows: [
      {
        title: 'Service level objectives',
        panels: [
          { kind: 'stat', title: `SLO attainment (${c.sloPeriod})`, unit: units.PercentUnit, width: 12, runbooks: burnAlerts,
            description: `Share of good events per SLO over the SLO period (${c.sloPeriod}), from slo:sli_error:ratio_rate${c.sloPeriod}. Compare with the objective next to it.`,
            queries: [{ expr: `1 - slo:sli_error:ratio_rate${c.sloPeriod}${fs(c)}`, legend: '{{slo}} {{' + td + '}}' }] },
          { kind: 'stat', title: 'Error budget left', unit: units.PercentUnit, width: 12, runbooks: burnAlerts, redBelow: 0.25,
            description: `Share of the ${c.sloPeriod} error budget not yet spent per SLO (1 − errors ÷ budget); red under 25%. Negative: the SLO is missed for the period.`,
            queries: [{ expr: `slo:period_error_budget_remaining:ratio${fs(c)}`, legend: '{{slo}} {{' + td + '}}' }] },
          { kind: 'timeseries', title: 'Burn rate (1h)', unit: units.Short, width: 12, runbooks: burnAlerts,
            description: 'Error ratio over the last hour divided by the error budget (1 − objective): 1 spends the budget exactly over the period; the page threshold is 14.4.',
            queries: [{ expr: burnRate('1h'), legend: '{{slo}} {{' + td + '}}' }] },
          { kind: 'timeseries', title: 'SLI error ratio (5m)', unit: units.PercentUnit, width: 12,
            description: 'Error ratio of each SLI over 5 minutes, from the recording rules.',
            queries: [{ expr: `slo:sli_error:ratio_rate5m${fs(c)}`, legend: '{{slo}} {{' + td + '}}' }] },
        ],
      },
      {
        title: 'Fleet',
        panels: [
          { kind: 'stat', title: 'SVID issuance rate', unit: units.OpsPerSecond, width: 8,
            description: 'SVIDs signed per second by the servers, by type (x509, jwt, agent_x509).',
            queries: [{ expr: `sum by (svid_type) (rate(svidscope_server_svids_issued_total${f(c, 'server')}[${RI}]))`, legend: '{{svid_type}}' }] },
          { kind: 'stat', title: 'Agent availability', unit: units.PercentUnit, width: 8, runbooks: ['SvidscopeAgentDown'], redBelow: 1, min: 0, max: 1,
            description: 'Share of agent targets Prometheus can scrape, per trust domain.',
            queries: [{ expr: `avg by (${td}) (up${f(c, 'agent')})`, legend: '{{' + td + '}}' }] },
          { kind: 'stat', title: 'Servers up', unit: units.Short, width: 8, runbooks: ['SvidscopeServerDown'], redBelow: 1,
            description: 'Server targets Prometheus can scrape, per trust domain.',
            queries: [{ expr: `sum by (${td}) (up${f(c, 'server')})`, legend: '{{' + td + '}}' }] },
          { kind: 'table', title: 'Active incidents', unit: units.Short, width: 24,
            eventOnly: 'rows appear only while svidscope alerts fire.',
            description: 'Firing svidscope alerts with their severity and labels (Prometheus ALERTS series). Open the runbook from the alert\'s runbook_url.',
            queries: [{ expr: `ALERTS{alertstate="firing", alertname=~"Svidscope.+", ${cl}=~"$cluster", ${td}=~"$trust_domain"}`, format: 'table', instant: true }] },
        ],
      },
    ],
  };
}

/** On-call: what to check first when paged. */
function onCallDashboard(c: MonitoringConfig): DashboardSpec {
  const td = c.trustDomainLabel;
  const expLe = String(c.thresholds.svidExpiringSeconds);
  const bundleBehind = agentsBundleSequencesBehind(c);
  return {
    file: 'svidscope-on-call.json',
    title: 'svidscope / On-call',
    description: 'What an on-call engineer checks first: issuance, Workload API, agent sync, probes, bundles, expiring SVIDs.',
    rows: [
      {
        title: 'Issuance',
        panels: [
          { kind: 'timeseries', title: 'X.509-SVID issuance success', unit: units.PercentUnit, runbooks: ['SvidscopeX509IssuanceBudgetBurn'], max: 1,
            description: `Share of X.509-SVID signings that succeed (objective ${num(c.slos.x509Issuance.target * 100)}%), per trust domain.`,
            queries: [{ expr: `sum by (${td}) (rate(svidscope_server_svid_issuance_duration_seconds_count${f(c, 'server', {}, 'svid_type="x509"', 'result="success"')}[${RI}])) / sum by (${td}) (rate(svidscope_server_svid_issuance_duration_seconds_count${f(c, 'server', {}, 'svid_type="x509"')}[${RI}]))`, legend: '{{' + td + '}}' }] },
          { kind: 'timeseries', title: 'X.509-SVID issuance latency', unit: units.Seconds, runbooks: ['SvidscopeIssuanceLatencyHigh', 'SvidscopeIssuanceLatencyBudgetBurn'],
            description: `p50, p90 and p99 of the time to sign one X.509-SVID (signings only: refusals are in the success panel); the latency SLO threshold is ${num(c.slos.issuanceLatency.thresholdSeconds)}s.`,
            queries: [0.5, 0.9, 0.99].map((q) => ({ expr: `histogram_quantile(${q}, sum by (le, ${td}) (rate(svidscope_server_svid_issuance_duration_seconds_bucket${f(c, 'server', {}, 'svid_type="x509"', 'result="success"')}[${RI}])))`, legend: `p${q * 100} {{${td}}}` })) },
        ],
      },
      {
        title: 'Agents and Workload API',
        panels: [
          { kind: 'timeseries', title: 'Workload API errors by code', unit: units.RequestsPerSecond, runbooks: ['SvidscopeWorkloadApiErrors', 'SvidscopeWorkloadApiBudgetBurn'],
            description: `Workload API requests answered with a non-OK gRPC code, by code. ${c.slos.workloadApi.errorCodes.join(', ')} count against the availability SLO; PERMISSION_DENIED means a caller without a registration entry.`,
            queries: [{ expr: `sum by (code) (rate(svidscope_agent_workload_api_requests_total${f(c, 'agent', {}, 'code!="OK"')}[${RI}]))`, legend: '{{code}}' }] },
          { kind: 'timeseries', title: 'Workload API refusals by reason', unit: units.OpsPerSecond, runbooks: ['SvidscopeWorkloadApiRefusals'],
            description: 'Connections and requests each agent refused, by reason: total_limit and emfile turn every caller of the node away; per_uid_limit, first_request_timeout and exec_after_connect hit one caller. The agent log names the uids.',
            queries: [{ expr: `sum by (instance, reason) (rate(svidscope_agent_workload_api_refusals_total${f(c, 'agent')}[${RI}]))`, legend: '{{instance}} {{reason}}' }] },
          { kind: 'timeseries', title: 'Workload API connections / limit', unit: units.PercentUnit, runbooks: ['SvidscopeWorkloadApiRefusals'], max: 1,
            description: 'Open Workload API connections of each agent as a share of workload_api_max_connections; at 100% it refuses every new connection and reports not ready.',
            queries: [{ expr: `svidscope_agent_workload_api_connections${f(c, 'agent')} / ignoring (limit) svidscope_agent_workload_api_connection_limit${f(c, 'agent', {}, 'limit="total"')}`, legend: '{{instance}}' }] },
          { kind: 'timeseries', title: 'Agent sync age', unit: units.Seconds, runbooks: ['SvidscopeAgentNotSyncing', 'SvidscopeAgentDown'], redAbove: c.thresholds.agentSyncStaleSeconds,
            description: `Seconds since each agent last synced with its server; the alert threshold is ${c.thresholds.agentSyncStaleSeconds}s. A series that stops means the agent is down.`,
            queries: [{ expr: `time() - svidscope_agent_last_successful_sync_timestamp_seconds${f(c, 'agent')}`, legend: '{{instance}}' }] },
          { kind: 'timeseries', title: 'Agent sync failures', unit: units.OpsPerSecond, runbooks: ['SvidscopeAgentNotSyncing'],
            description: 'Failed syncs with the server per second, per agent.',
            queries: [{ expr: `sum by (instance) (rate(svidscope_agent_sync_failures_total${f(c, 'agent')}[${RI}]))`, legend: '{{instance}}' }] },
          { kind: 'timeseries', title: 'Agents up', unit: units.Short, runbooks: ['SvidscopeAgentDown'], min: 0, max: 1,
            description: 'Scrape status of each agent (1 up, 0 down).',
            queries: [{ expr: `up${f(c, 'agent')}`, legend: '{{instance}}' }] },
        ],
      },
      {
        title: 'Probes, bundles and expiry',
        panels: [
          { kind: 'timeseries', title: 'Probe success by module', unit: units.PercentUnit, runbooks: ['SvidscopeProbeBudgetBurn'], max: 1,
            description: 'Share of scheduled probe targets whose last probe succeeded, by module.',
            queries: [{ expr: `avg by (module) (svidscope_prober_probe_success${f(c, 'prober')})`, legend: '{{module}}' }] },
          { kind: 'timeseries', title: 'Bundle lag', unit: units.Seconds, runbooks: ['SvidscopeBundlePropagationSlow', 'SvidscopeTrustBundleStale'],
            description: 'p99 time from a new bundle at the server to agents serving it (own and federated bundles; NaN without bundle changes in the window), and how many sequence numbers each agent is behind its server.',
            queries: [
              { expr: `histogram_quantile(0.99, sum by (le, bundle) (rate(svidscope_agent_bundle_propagation_seconds_bucket${f(c, 'agent')}[${RI}])))`, legend: 'p99 {{bundle}}' },
              { expr: bundleBehind, legend: 'sequences behind {{instance}}' },
            ] },
          { kind: 'stat', title: 'SVIDs near expiry', unit: units.Short, runbooks: ['SvidscopeSvidsExpiringSoon'], redAbove: 1,
            description: `X509-SVIDs with ${expLe}s or less of lifetime left (expired ones included), per exporter source.`,
            queries: [{ expr: `sum by (source) (svidscope_exporter_remaining_lifetime_seconds_bucket${f(c, 'exporter', {}, 'kind="x509_svid"', `le="${expLe}"`)})`, legend: '{{source}}' }] },
          { kind: 'stat', title: 'Earliest SVID expiry', unit: units.Seconds, runbooks: ['SvidscopeSvidsExpiringSoon'], redBelow: c.thresholds.svidExpiringSeconds,
            description: 'Time until the earliest-expiring X509-SVID seen by the exporter expires, per trust domain.',
            queries: [{ expr: `min by (${td}) (svidscope_exporter_earliest_expiry_timestamp_seconds${f(c, 'exporter', {}, 'kind="x509_svid"')}) - time()`, legend: '{{' + td + '}}' }] },
        ],
      },
      serverLoadRow(c),
    ],
  };
}

/** SVID lifecycle: lifetimes, rotation, signing keys and the key-compromise response. */
function svidLifecycleDashboard(c: MonitoringConfig): DashboardSpec {
  const td = c.trustDomainLabel;
  const ftd = c.federatedTrustDomainLabel;
  return {
    file: 'svidscope-svid-lifecycle.json',
    title: 'svidscope / SVID lifecycle',
    description: 'Remaining lifetimes, rotation timing against the TTL, rotation failures, the CA and JWT key phases and expiries, and where a key-compromise response stands.',
    rows: [
      {
        title: 'X509-SVIDs',
        panels: [
          { kind: 'heatmap', title: 'Remaining lifetime of X509-SVIDs', unit: units.Seconds, runbooks: ['SvidscopeSvidsExpiringSoon'],
            description: 'Distribution of the remaining lifetime of every X509-SVID the exporter sees now (a snapshot histogram: buckets are read, not rated). Cells at the bottom are SVIDs about to expire.',
            queries: [{ expr: `sum by (le) (svidscope_exporter_remaining_lifetime_seconds_bucket${f(c, 'exporter', {}, 'kind="x509_svid"')})`, legend: '{{le}}', format: 'heatmap' }] },
          { kind: 'timeseries', title: 'Lifetime left at rotation', unit: units.PercentUnit, runbooks: ['SvidscopeRotationBudgetBurn'], min: 0, max: 1,
            description: `Fraction of the old SVID's lifetime left when the agent replaced it (p50 and p05; SPIRE-style rotation happens at 0.5). Rotations with ${num(c.slos.rotation.minRemainingRatio)} or less left count against the rotation SLO. NaN while no rotation happened in the window.`,
            queries: [0.5, 0.05].map((q) => ({ expr: `histogram_quantile(${q}, sum by (le, ${td}) (rate(svidscope_agent_svid_ttl_remaining_ratio_at_rotation_bucket${f(c, 'agent')}[${RI}])))`, legend: `p${Math.round(q * 100)} {{${td}}}` })) },
          { kind: 'timeseries', title: 'Rotations by reason', unit: units.OpsPerSecond,
            description: 'X509-SVIDs (re)minted by the agents per second, by reason (new, scheduled, ca_change, entry_change, forced).',
            queries: [{ expr: `sum by (reason) (rate(svidscope_agent_svid_rotations_total${f(c, 'agent')}[${RI}]))`, legend: '{{reason}}' }] },
          { kind: 'timeseries', title: 'Rotation failures', unit: units.OpsPerSecond, runbooks: ['SvidscopeRotationBudgetBurn', 'SvidscopeSvidsExpiringSoon'],
            description: 'Failed mint or rotation attempts per second, per agent and reason (0 per agent while none failed).',
            queries: [{ expr: `sum by (instance, reason) (rate(svidscope_agent_svid_rotation_failures_total${f(c, 'agent')}[${RI}])) or sum by (instance) (rate(svidscope_agent_svid_rotations_total${f(c, 'agent')}[${RI}])) * 0`, legend: '{{instance}} {{reason}}' }] },
          { kind: 'timeseries', title: 'Rotations seen by the exporter', unit: units.OpsPerSecond,
            description: 'Credential rotations the exporter observed, per source and kind (x509_svid, ca, jwt_authority).',
            queries: [{ expr: `sum by (source, kind) (rate(svidscope_exporter_rotations_total${f(c, 'exporter')}[${RI}]))`, legend: '{{source}} {{kind}}' }] },
        ],
      },
      {
        title: 'Signing keys',
        panels: [
          { kind: 'timeseries', title: 'CA and JWT key phases', unit: units.Short,
            description: 'Signing keys each server holds, by kind (x509 CA, jwt) and phase (prepared, active, old). A rotation shows as a prepared key turning active.',
            queries: [{ expr: `sum by (${td}, kind, phase) (svidscope_server_signing_keys${f(c, 'server')})`, legend: '{{' + td + '}} {{kind}} {{phase}}' }] },
          { kind: 'timeseries', title: 'Signing key time to expiry', unit: units.Seconds, runbooks: ['SvidscopeSigningKeyNearExpiry'], redBelow: c.thresholds.signingKeyExpirySeconds,
            description: `Time until each server's signing keys expire, by kind and phase; the alert fires for the active key under ${c.thresholds.signingKeyExpirySeconds}s.`,
            queries: [{ expr: `min by (${td}, kind, phase) (svidscope_server_signing_key_expiry_timestamp_seconds${f(c, 'server')}) - time()`, legend: '{{' + td + '}} {{kind}} {{phase}}' }] },
          { kind: 'timeseries', title: 'CA expiry seen by the exporter', unit: units.Seconds,
            description: 'Time until the earliest CA certificate each trust domain\'s bundle holds expires, as the exporter sees it.',
            queries: [{ expr: `min by (${td}) (svidscope_exporter_earliest_expiry_timestamp_seconds${f(c, 'exporter', {}, 'kind="ca"')}) - time()`, legend: '{{' + td + '}}' }] },
          { kind: 'timeseries', title: 'Federated authority expiry', unit: units.Seconds,
            description: 'Time until the latest X.509 authority of each stored federated bundle expires: past it no SVID of that domain verifies here.',
            queries: [{ expr: `min by (${td}, ${ftd}) (svidscope_federation_bundle_authority_expiry_timestamp_seconds${f(c, 'server')}) - time()`, legend: `{{${td}}} → {{${ftd}}}` }] },
        ],
      },
      keyCompromiseRow(c),
    ],
  };
}

/** Trust bundles and federation: propagation and federated endpoint freshness. */
function trustBundlesDashboard(c: MonitoringConfig): DashboardSpec {
  const td = c.trustDomainLabel;
  const ftd = c.federatedTrustDomainLabel;
  const bundleBehind = agentsBundleSequencesBehind(c);
  return {
    file: 'svidscope-trust-bundles.json',
    title: 'svidscope / Trust bundles and federation',
    description: 'Bundle sequence at every component, propagation lag, and freshness of every federated bundle endpoint.',
    rows: [
      {
        title: 'Propagation',
        panels: [
          { kind: 'timeseries', title: 'Bundle sequence per component', unit: units.Short, runbooks: ['SvidscopeTrustBundleStale'],
            description: 'The bundle sequence number the server publishes, each agent serves, and the exporter\'s sources and the prober\'s bundle-endpoint probes show. Lines that stay below the server\'s are stale.',
            queries: [
              { expr: `max by (${td}, instance) (svidscope_server_bundle_sequence${f(c, 'server')})`, legend: 'server {{instance}}' },
              { expr: `max by (${td}, instance) (svidscope_agent_bundle_sequence${f(c, 'agent')})`, legend: 'agent {{instance}}' },
              { expr: `max by (${td}, source) (svidscope_exporter_bundle_sequence${f(c, 'exporter')})`, legend: 'exporter {{source}} ({{' + td + '}})' },
              { expr: `max by (target) (svidscope_prober_bundle_sequence${f(c, 'prober')})`, legend: 'prober {{target}}' },
            ] },
          { kind: 'timeseries', title: 'Agents behind their server', unit: units.Short, runbooks: ['SvidscopeTrustBundleStale'],
            description: 'Sequence numbers each agent is behind its server (0 is current).',
            queries: [{ expr: bundleBehind, legend: '{{instance}}' }] },
          { kind: 'timeseries', title: 'Propagation lag', unit: units.Seconds, runbooks: ['SvidscopeBundlePropagationSlow'],
            description: 'p99 time from a new bundle at the server to it being served: by the agents (own, federated) and as each exporter source observes it. NaN without bundle changes in the window.',
            queries: [
              { expr: `histogram_quantile(0.99, sum by (le, bundle) (rate(svidscope_agent_bundle_propagation_seconds_bucket${f(c, 'agent')}[${RI}])))`, legend: 'agents {{bundle}}' },
              { expr: `histogram_quantile(0.99, sum by (le, source) (rate(svidscope_exporter_bundle_propagation_lag_seconds_bucket${f(c, 'exporter')}[${RI}])))`, legend: 'exporter {{source}}' },
            ] },
        ],
      },
      {
        title: 'Federation',
        panels: [
          { kind: 'timeseries', title: 'Federated bundle age', unit: units.Seconds, runbooks: ['SvidscopeFederatedBundleRefreshFailing'], redAbove: c.thresholds.federatedBundleMaxAgeSeconds,
            description: `Seconds since each server last confirmed each federated trust domain's bundle current; the alert fires above ${c.thresholds.federatedBundleMaxAgeSeconds}s.`,
            queries: [{ expr: `max by (${td}, ${ftd}) (svidscope_federation_bundle_age_seconds${f(c, 'server')})`, legend: `{{${td}}} → {{${ftd}}}` }] },
          { kind: 'timeseries', title: 'Federated refresh errors', unit: units.OpsPerSecond, runbooks: ['SvidscopeFederatedBundleRefreshFailing'],
            description: 'Failed refreshes from federated bundle endpoints per second, by reason (0 per relationship while none failed).',
            queries: [{ expr: `sum by (${td}, ${ftd}, reason) (rate(svidscope_federation_bundle_refresh_errors_total${f(c, 'server')}[${RI}])) or sum by (${td}, ${ftd}) (svidscope_federation_bundle_sequence${f(c, 'server')}) * 0`, legend: `{{${td}}} → {{${ftd}}} {{reason}}` }] },
          { kind: 'timeseries', title: 'Bundle endpoint freshness', unit: units.Seconds,
            description: 'Seconds since each exporter source last fetched successfully (bundle endpoints, admin API, Workload API), and the age of the newest authority each prober bundle-endpoint probe saw.',
            queries: [
              { expr: `time() - max by (source) (svidscope_exporter_source_last_success_timestamp_seconds${f(c, 'exporter')})`, legend: 'exporter {{source}}' },
              { expr: `max by (target) (svidscope_prober_bundle_age_seconds${f(c, 'prober')})`, legend: 'authority age {{target}}' },
            ] },
          { kind: 'timeseries', title: 'Bundle refresh hint', unit: units.Seconds,
            description: 'spiffe_refresh_hint published by each bundle endpoint: federating servers refresh at this interval.',
            queries: [{ expr: `max by (source) (svidscope_exporter_bundle_refresh_hint_seconds${f(c, 'exporter')})`, legend: '{{source}}' }] },
        ],
      },
    ],
  };
}

/** Panels of the prober's own scheduled targets (its /metrics). */
function scheduledProbePanels(c: MonitoringConfig): PanelSpec[] {
  return [
    { kind: 'timeseries', title: 'Scheduled probe success', unit: units.Short, runbooks: ['SvidscopeProbeBudgetBurn'], min: 0, max: 1,
      description: 'Result of the last scheduled probe of each target (1 success, 0 failure), by module and target.',
      queries: [{ expr: `svidscope_prober_probe_success${f(c, 'prober')}`, legend: '{{module}} {{target}}' }] },
    { kind: 'timeseries', title: 'Probe failures by reason', unit: units.Short, runbooks: ['SvidscopeProbeBudgetBurn', 'SvidscopeProbeClockSkew'],
      description: 'Failed scheduled probes per rate interval, by module and failure reason (see docs/probes.md for the reasons).',
      queries: [{ expr: `sum by (module, reason) (increase(svidscope_prober_probe_failures_total${f(c, 'prober')}[${RI}]))`, legend: '{{module}} {{reason}}' }] },
    { kind: 'timeseries', title: 'Probe duration p99', unit: units.Seconds,
      description: 'p99 duration of scheduled probes, per module.',
      queries: [{ expr: `histogram_quantile(0.99, sum by (le, module) (rate(svidscope_prober_probe_duration_seconds_bucket${f(c, 'prober')}[${RI}])))`, legend: '{{module}}' }] },
    { kind: 'timeseries', title: 'Phase durations', unit: units.Seconds,
      description: 'Duration of each phase of the last scheduled probe of each target (first_message, validate, handshake, tls, …).',
      queries: [{ expr: `svidscope_prober_probe_phase_duration_seconds${f(c, 'prober')}`, legend: '{{target}} {{phase}}' }] },
    { kind: 'timeseries', title: 'SVID lifetime left at probe', unit: units.PercentUnit, min: 0, max: 1, runbooks: ['SvidscopeSvidsExpiringSoon'],
      description: 'Fraction of the lifetime left of the SVIDs each probe examined; the x509 module fails with rotation_overdue under its min_ttl_ratio.',
      queries: [{ expr: `svidscope_prober_svid_ttl_remaining_ratio${f(c, 'prober')}`, legend: '{{target}}' }] },
    { kind: 'timeseries', title: 'Rotation watch', unit: units.Short,
      description: 'Rotation-watch streams held open (1) and rotations they saw, per target.',
      queries: [
        { expr: `svidscope_prober_watch_up${f(c, 'prober')}`, legend: 'stream up {{target}}' },
        { expr: `sum by (target, result) (increase(svidscope_prober_rotations_total${f(c, 'prober')}[${RI}]))`, legend: 'rotations {{target}} {{result}}' },
      ] },
    { kind: 'timeseries', title: 'Not-yet-valid SVIDs (clock skew)', unit: units.Short, runbooks: ['SvidscopeProbeClockSkew'],
      description: 'Probes that found an SVID whose notBefore is in the future beyond the clock-skew tolerance: the prober\'s and server\'s clocks disagree.',
      queries: [{ expr: `sum by (target) (increase(svidscope_prober_probe_failures_total${f(c, 'prober', {}, 'reason="not_yet_valid"')}[${RI}]))`, legend: '{{target}}' }] },
    { kind: 'timeseries', title: 'Prober up', unit: units.Short, runbooks: ['SvidscopeProberDown'], min: 0, max: 1,
      description: 'Scrape status of the prober (1 up, 0 down).',
      queries: [{ expr: `up${f(c, 'prober')}`, legend: '{{instance}}' }] },
  ];
}

/** Probes: scheduled and Prometheus-driven (/probe) targets. */
function probesDashboard(c: MonitoringConfig): DashboardSpec {
  return {
    file: 'svidscope-probes.json',
    title: 'svidscope / Probes',
    description: 'Blackbox view: every scheduled probe target and every Prometheus-driven /probe target, by module, with phase timings.',
    rows: [
      { title: 'Scheduled probes (prober /metrics)', panels: scheduledProbePanels(c) },
      {
        title: 'Multi-target probes (/probe)',
        panels: [
          { kind: 'timeseries', title: '/probe success', unit: units.Short, runbooks: ['SvidscopeProbeBudgetBurn'], min: 0, max: 1,
            description: 'probe_success of each Prometheus-driven probe (instance = the probed target), by module.',
            queries: [{ expr: `probe_success${f(c, 'probe')}`, legend: '{{module}} {{instance}}' }] },
          { kind: 'timeseries', title: '/probe duration', unit: units.Seconds,
            description: 'Whole-probe duration of each /probe request.',
            queries: [{ expr: `probe_duration_seconds${f(c, 'probe')}`, legend: '{{module}} {{instance}}' }] },
          { kind: 'timeseries', title: '/probe phase durations', unit: units.Seconds,
            description: 'Duration of each phase of the last /probe request per target.',
            queries: [{ expr: `probe_phase_duration_seconds${f(c, 'probe')}`, legend: '{{instance}} {{phase}}' }] },
          { kind: 'timeseries', title: '/probe SVID expiry', unit: units.Seconds, runbooks: ['SvidscopeSvidsExpiringSoon'],
            description: 'Time until the earliest SVID a /probe request examined expires.',
            queries: [{ expr: `probe_svid_expiry_timestamp_seconds${f(c, 'probe')} - time()`, legend: '{{module}} {{instance}}' }] },
        ],
      },
    ],
  };
}

/** Game day: chaos runs, verdicts, active faults and the SLO burn they cause. */
function gameDayDashboard(c: MonitoringConfig): DashboardSpec {
  const burnAlerts = sloAlertNames(c);
  const td = c.trustDomainLabel;
  const burnRate = (window: string) => sloBurnRate(c, window);
  const chaosNote = 'the chaos harness (svidscope chaos) writes these series to <data-dir>/chaos/metrics.prom when experiments run (scraped through startPrometheusStack, or node_exporter\'s textfile collector); empty before the first run.';
  return {
    file: 'svidscope-game-day.json',
    title: 'svidscope / Game day',
    description: 'Chaos experiment runs, their verdicts, active faults, and the SLO burn during each run.',
    rows: [
      {
        title: 'Experiments',
        panels: [
          { kind: 'timeseries', title: 'Experiment runs by verdict', unit: units.Short, eventOnly: chaosNote,
            description: 'Chaos experiment runs per rate interval, by experiment and verdict.',
            queries: [{ expr: `sum by (experiment, verdict) (increase(svidscope_chaos_experiment_runs_total${f(c, 'chaos')}[${RI}]))`, legend: '{{experiment}} {{verdict}}' }] },
          { kind: 'stat', title: 'Time since last run', unit: units.Seconds, eventOnly: chaosNote, width: 24,
            description: 'Time since each experiment last ran.',
            queries: [{ expr: `time() - max by (experiment) (svidscope_chaos_experiment_last_run_timestamp_seconds${f(c, 'chaos')})`, legend: '{{experiment}}' }] },
          { kind: 'timeseries', title: 'Active faults', unit: units.Short, eventOnly: chaosNote, min: 0, max: 1,
            description: 'Faults injected right now (1), by experiment and fault.',
            queries: [{ expr: `max by (experiment, fault) (svidscope_chaos_fault_active${f(c, 'chaos')})`, legend: '{{experiment}} {{fault}}' }] },
        ],
      },
      {
        title: 'Impact',
        panels: [
          { kind: 'timeseries', title: 'SLO burn rate during faults', unit: units.Short, eventOnly: `data only while a fault is active; ${chaosNote}`, width: 24, runbooks: burnAlerts,
            description: 'Burn rate (5m error ratio ÷ budget) of every SLO, shown only while a chaos fault is active: how much budget each run costs.',
            queries: [{ expr: `(${burnRate('5m')}) and on () (max(svidscope_chaos_fault_active${f(c, 'chaos', { instance: false })}) > 0)`, legend: '{{slo}} {{' + td + '}}' }] },
          { kind: 'timeseries', title: 'SLO burn rate', unit: units.Short, width: 24, runbooks: burnAlerts,
            description: 'Burn rate of every SLO over 5 minutes, to compare runs with the baseline.',
            queries: [{ expr: burnRate('5m'), legend: '{{slo}} {{' + td + '}}' }] },
        ],
      },
    ],
  };
}

// --- key compromise (issue 15) ---
/** The "Key compromise" row of the SVID lifecycle dashboard: where a taint-and-revoke response stands. */
function keyCompromiseRow(c: MonitoringConfig): RowSpec {
  const cl = c.clusterLabel;
  const td = c.trustDomainLabel;
  const ftd = c.federatedTrustDomainLabel;
  const objective = c.slos.taintClear.thresholdSeconds;
  // Peers' stored copy of this trust domain's bundle: their federation series name it in ftd, and their own domain in td.
  const peerCopies = `max by (${cl}, ${td}, ${ftd}) (svidscope_federation_bundle_sequence{${[c.selectors.server, c.extraSelector, `${cl}=~"$cluster"`, `${ftd}=~"$trust_domain"`].filter((x) => x !== '').join(', ')}})`;
  const ownSequence = `label_replace(max by (${cl}, ${td}) (svidscope_server_bundle_sequence${f(c, 'server', { instance: false })}), "${ftd}", "$1", "${td}", "(.*)")`;
  const response = ['SvidscopeTaintedSvidsHeld', 'SvidscopeTaintClearBudgetBurn'];
  return {
    title: 'Key compromise',
    panels: [
      { kind: 'timeseries', title: 'Authorities by state', unit: units.Short, runbooks: ['SvidscopeAuthorityActivationOverdue', ...response],
        description: 'Signing keys each trust domain\'s servers hold, by kind and state (prepared, active, old = published previous key, tainted, revoked). A compromise response shows as prepared → active, the old key tainted, then revoked.',
        queries: [{ expr: `sum by (${td}, kind, state) (svidscope_server_authorities${f(c, 'server')})`, legend: '{{' + td + '}} {{kind}} {{state}}' }] },
      { kind: 'timeseries', title: 'SVIDs held per authority', unit: units.Short, runbooks: response,
        description: 'SVIDs cached at the agents, by the key that signed them (authority_key_id) and kind, and those signed by a tainted authority. After a taint the tainted key\'s line must fall to 0 before it is revoked.',
        queries: [
          { expr: `sum by (${td}, kind, authority_key_id) (svidscope_agent_svids_by_authority${f(c, 'agent')})`, legend: '{{kind}} {{authority_key_id}}' },
          { expr: `sum by (${td}, kind) (svidscope_agent_tainted_svids${f(c, 'agent')})`, legend: 'tainted {{kind}} {{' + td + '}}' },
        ] },
      { kind: 'timeseries', title: 'SVIDs per authority seen by the exporter', unit: units.Short, runbooks: response,
        description: 'Unexpired X509-SVIDs the exporter\'s sources hold (each counted once), by issuing authority: the leaf\'s authorityKeyIdentifier, hex ("other" past the exporter\'s authority_max_series).',
        queries: [{ expr: `max by (${td}, authority_key_id) (svidscope_exporter_svids_by_authority${f(c, 'exporter')})`, legend: '{{' + td + '}} {{authority_key_id}}' }] },
      { kind: 'timeseries', title: 'Oldest SVID per authority', unit: units.Seconds, runbooks: response,
        description: 'Age of the oldest unexpired X509-SVID each authority signed that the exporter\'s sources still hold: how long a compromised key\'s credentials have been out.',
        queries: [{ expr: `max by (${td}, authority_key_id) (svidscope_exporter_oldest_svid_age_seconds${f(c, 'exporter')})`, legend: '{{' + td + '}} {{authority_key_id}}' }] },
      { kind: 'timeseries', title: 'Time to clear a taint', unit: units.Seconds, runbooks: response, redAbove: objective,
        description: `p50 and p99 time from an agent first seeing a taint to it replacing the last SVID the tainted authority signed; the objective is ${objective}s for ${num(c.slos.taintClear.target * 100)}% of agents. NaN while no taint cleared in the window.`,
        queries: [0.5, 0.99].map((q) => ({ expr: `histogram_quantile(${q}, sum by (le, ${td}) (rate(svidscope_agent_taint_clear_seconds_bucket${f(c, 'agent')}[${RI}])))`, legend: `p${q * 100} {{${td}}}` })) },
      { kind: 'timeseries', title: 'Peers behind this bundle', unit: units.Short,
        description: 'Bundle sequence numbers each federated peer server is behind this trust domain\'s current bundle (peers scraped by this Prometheus). 0 = the peer acknowledged the latest change: after prepare, it trusts the new key; after revoke, it dropped the old one.',
        queries: [{ expr: `${ownSequence} - on (${cl}, ${ftd}) group_right () ${peerCopies}`, legend: `{{${td}}} holding {{${ftd}}}` }] },
      { kind: 'timeseries', title: 'Revoke → holders without the key', unit: units.Seconds, runbooks: response,
        description: 'p50 and p99 time from a key\'s revoke at its server until every holder the exporter watches was seen without it, per scope: agents (their own trust domain\'s bundle on the Workload API) and federated_peers (peer servers\' stored copies, peer agents\' federated bundles). One observation per revoked key and scope; NaN while no revoke completed in the window.',
        queries: [0.5, 0.99].map((q) => ({ expr: `histogram_quantile(${q}, sum by (le, scope) (rate(svidscope_exporter_revocation_propagation_seconds_bucket${f(c, 'exporter')}[${RI}])))`, legend: `p${q * 100} {{scope}}` })) },
      { kind: 'timeseries', title: 'Holders of a revoked key', unit: units.Short, runbooks: response,
        description: 'Watched holders (agents\' Workload API bundles, federated peers\' copies) still holding a key their server revoked since the exporter started. 0 = the revoke reached every one of them.',
        queries: [{ expr: `max by (${td}, scope) (svidscope_exporter_revoked_authority_holders${f(c, 'exporter')})`, legend: '{{scope}}' }] },
      { kind: 'timeseries', title: 'Next key activation due', unit: units.Seconds, runbooks: ['SvidscopeAuthorityActivationOverdue'], redBelow: 0,
        description: 'Time until the next signing key of each kind must be active: the active key\'s activate point, or its prepare point while a successor prepared for a compromise response waits. Negative = overdue.',
        queries: [{ expr: `min by (${td}, kind) (svidscope_server_authority_activation_due_timestamp_seconds${f(c, 'server')}) - time()`, legend: '{{' + td + '}} {{kind}}' }] },
      { kind: 'timeseries', title: 'Upstream authority expiry', unit: units.Seconds, runbooks: ['SvidscopeUpstreamAuthorityNearExpiry'], redBelow: c.thresholds.upstreamAuthorityExpiryPageSeconds,
        description: 'Time until the upstream authority each server\'s X.509 CAs are signed under expires. Empty for servers without ca.upstream.',
        queries: [{ expr: `min by (${td}, instance) (svidscope_server_upstream_authority_expiry_timestamp_seconds${f(c, 'server')} > 0) - time()`, legend: '{{' + td + '}} {{instance}}' }] },
    ],
  };
}

/** Job regex for the dashboards' variable queries, from the job selectors. */
function jobRegex(c: MonitoringConfig): string {
  const names = Object.values(c.selectors).map((s) => /job=~?"([^"]+)"/.exec(s)?.[1]).filter((s): s is string => !!s);
  return names.join('|');
}

export function dashboards(c: MonitoringConfig): { file: string; dashboard: Dashboard }[] {
  return dashboardSpecs(c).map((spec) => ({ file: spec.file, dashboard: buildDashboard(c, spec, jobRegex(c)) }));
}

export function renderDashboard(d: Dashboard): string {
  return JSON.stringify(d, null, 2) + '\n';
}
