/**
 * The one knob object of the monitoring mixin (kubernetes-mixin's `_config`): selectors, label
 * names, SLO targets, thresholds and `for` durations. Every generated artefact (rules, alerts,
 * dashboards, runbook index, Alertmanager example) is a pure function of it, so users regenerate
 * for their setup by overriding keys instead of editing the output. docs/monitoring.md lists the
 * defaults; `resolveConfig` validates overrides (thresholds that must sit on a bucket boundary).
 */
import { FRACTION_BUCKETS, LATENCY_BUCKETS, PROPAGATION_BUCKETS, WORKLOAD_API_SERVER_ERROR_CODES } from '../common/telemetry/names.js';
import { SvidscopeError } from '../common/errors/catalog.js';

export type Severity = 'page' | 'ticket';

/** One pair of the multi-window multi-burn-rate table (SRE Workbook 5-8, sloth, kubernetes-mixin). */
export interface BurnWindow {
  severity: Severity;
  long: string;
  short: string;
  factor: number;
  for: string;
}

export interface SloConfig {
  /** Target as a ratio, e.g. 0.999. */
  target: number;
}

export interface MonitoringConfig {
  /** PromQL matchers selecting each component's scrape job. */
  selectors: {
    server: string;
    agent: string;
    prober: string;
    /** Multi-target `/probe` jobs (blackbox pattern). */
    probe: string;
    exporter: string;
    /** The chaos harness (event-only until it lands). */
    chaos: string;
  };
  /** Extra matchers added to every selector, e.g. `trust_domain="example.org"`; empty for all. */
  extraSelector: string;
  clusterLabel: string;
  trustDomainLabel: string;
  /**
   * The label holding the *federated* trust domain on `svidscope_federation_*` series. The server
   * exports it as `trust_domain`; Prometheus renames it `exported_trust_domain` because the target
   * carries its own `trust_domain` label.
   */
  federatedTrustDomainLabel: string;
  /** `runbook_url` = `<runbookBaseUrl>/<AlertName>.md`. */
  runbookBaseUrl: string;
  /** Prefix of dashboard UIDs and the tag on every dashboard. */
  dashboardTag: string;
  /** SLO period for budget and attainment. */
  sloPeriod: string;
  burnWindows: BurnWindow[];
  slos: {
    x509Issuance: SloConfig;
    /** gRPC codes counted as Workload API failures (server-side faults; PermissionDenied is "no identity", not an outage). */
    workloadApi: SloConfig & { errorCodes: string[] };
    probes: SloConfig;
    /** `thresholdSeconds` must be a bucket boundary of the issuance histogram. */
    issuanceLatency: SloConfig & { thresholdSeconds: number };
    /**
     * An SVID is rotated on time when more than `minRemainingRatio` of its lifetime was left at
     * rotation, i.e. it was replaced before `1 - minRemainingRatio` of its TTL had elapsed. Must be a
     * bucket boundary of the rotation-ratio histogram.
     */
    rotation: SloConfig & { minRemainingRatio: number };
    // --- key compromise (issue 15) ---
    /**
     * A taint is cleared at an agent when it replaced the last SVID the tainted authority signed;
     * on time within `thresholdSeconds` of first seeing the taint. Must be a bucket boundary of
     * `svidscope_agent_taint_clear_seconds` (the propagation buckets). The page for SVIDs still
     * held waits the same time (its `for`).
     */
    taintClear: SloConfig & { thresholdSeconds: number };
  };
  thresholds: {
    /** An agent whose last successful sync is older than this is not syncing. */
    agentSyncStaleSeconds: number;
    /** The "expiring soon" cohort: X509-SVIDs with at most this much lifetime left (a bucket boundary of the exporter's lifetime histogram). */
    svidExpiringSeconds: number;
    /** Active signing keys (X.509 CA, JWT key) closer than this to expiry. */
    signingKeyExpirySeconds: number;
    /** Federated bundle not confirmed current for longer than this. */
    federatedBundleMaxAgeSeconds: number;
    /** p99 of bundle propagation above this. */
    bundlePropagationSeconds: number;
    /** Node attestation failures per 10 minutes. */
    attestationFailures: number;
    /** p99 of X.509 issuance latency above this. */
    issuanceLatencySeconds: number;
    /** Share of Workload API requests failing with an error code. */
    workloadApiErrorRatio: number;
    /** Exporter source errors per 15 minutes. */
    exporterSourceErrors: number;
    /** Workload API refusals (connection limits, EMFILE, exec after connect) per 5 minutes, per agent and reason. */
    workloadApiRefusals: number;
    // --- key compromise (issue 15) ---
    /** Upstream authority closer than this to expiry: ticket. */
    upstreamAuthorityExpiryTicketSeconds: number;
    /** Upstream authority closer than this to expiry: page. */
    upstreamAuthorityExpiryPageSeconds: number;
    /** Agent calls a server refuses or drops at admission (signing queue full, deadline passed), per second over 5 minutes. */
    serverAdmissionRefusalsPerSecond: number;
    /** p99 of SyncAuthorizedEntries at a server above this (seconds); agents sync every 5 s by default. */
    serverSyncLatencySeconds: number;
    /** Share of a trust domain's active agents holding a change stream below which push is failing (0–1). */
    serverWatchCoverageRatio: number;
    /** No push alert for a fleet smaller than this many active agents (a few agents restarting is not a fault). */
    serverWatchMinAgents: number;
  };
  /** `for` of each alert by name; `forOverride` replaces them all (integration tests use seconds). */
  alertFor: Record<string, string>;
  forOverride?: string;
  /** `interval` of every rule group (unset: Prometheus' global evaluation_interval). */
  ruleInterval?: string;
  alertmanager: {
    pageWebhookUrl: string;
    ticketWebhookUrl: string;
    groupWait: string;
    groupInterval: string;
    repeatInterval: string;
  };
}

export const DEFAULT_BURN_WINDOWS: BurnWindow[] = [
  { severity: 'page', long: '1h', short: '5m', factor: 14.4, for: '2m' },
  { severity: 'page', long: '6h', short: '30m', factor: 6, for: '15m' },
  { severity: 'ticket', long: '1d', short: '2h', factor: 3, for: '1h' },
  { severity: 'ticket', long: '3d', short: '6h', factor: 1, for: '3h' },
];

export function defaultConfig(): MonitoringConfig {
  return {
    selectors: {
      server: 'job="svidscope-server"',
      agent: 'job="svidscope-agent"',
      prober: 'job="svidscope-prober"',
      probe: 'job=~"svidscope-probe-.+"',
      exporter: 'job="svidscope-exporter"',
      chaos: 'job="svidscope-chaos"',
    },
    extraSelector: '',
    clusterLabel: 'cluster',
    trustDomainLabel: 'trust_domain',
    federatedTrustDomainLabel: 'exported_trust_domain',
    runbookBaseUrl: 'https://github.com/svidscope/svidscope/blob/main/runbooks',
    dashboardTag: 'svidscope',
    sloPeriod: '30d',
    burnWindows: DEFAULT_BURN_WINDOWS.map((w) => ({ ...w })),
    slos: {
      x509Issuance: { target: 0.999 },
      workloadApi: { target: 0.9995, errorCodes: [...WORKLOAD_API_SERVER_ERROR_CODES] },
      probes: { target: 0.999 },
      issuanceLatency: { target: 0.99, thresholdSeconds: 0.1 },
      rotation: { target: 0.99, minRemainingRatio: 0.2 },
      taintClear: { target: 0.99, thresholdSeconds: 300 },
    },
    thresholds: {
      agentSyncStaleSeconds: 300,
      svidExpiringSeconds: 900,
      signingKeyExpirySeconds: 6 * 3600,
      federatedBundleMaxAgeSeconds: 1800,
      bundlePropagationSeconds: 60,
      attestationFailures: 10,
      issuanceLatencySeconds: 0.5,
      workloadApiErrorRatio: 0.05,
      exporterSourceErrors: 5,
      workloadApiRefusals: 0,
      upstreamAuthorityExpiryTicketSeconds: 30 * 86400,
      upstreamAuthorityExpiryPageSeconds: 7 * 86400,
      serverAdmissionRefusalsPerSecond: 0.1,
      serverSyncLatencySeconds: 1,
      serverWatchCoverageRatio: 0.8,
      serverWatchMinAgents: 10,
    },
    alertFor: {
      SvidscopeServerDown: '2m',
      SvidscopeAgentDown: '2m',
      SvidscopeAgentNotSyncing: '5m',
      SvidscopeSvidsExpiringSoon: '5m',
      SvidscopeSigningKeyNearExpiry: '15m',
      SvidscopeTrustBundleStale: '10m',
      SvidscopeBundlePropagationSlow: '15m',
      SvidscopeFederatedBundleRefreshFailing: '10m',
      SvidscopeAttestationFailureSpike: '5m',
      SvidscopeIssuanceLatencyHigh: '15m',
      SvidscopeWorkloadApiErrors: '10m',
      SvidscopeWorkloadApiRefusals: '10m',
      SvidscopeProbeClockSkew: '5m',
      SvidscopeProberDown: '5m',
      SvidscopeExporterScrapeErrors: '15m',
      // key compromise; SvidscopeTaintedSvidsHeld waits slos.taintClear.thresholdSeconds (set in resolveConfig)
      SvidscopeAuthorityActivationOverdue: '10m',
      SvidscopeUpstreamAuthorityNearExpiry: '15m',
      SvidscopeServerSaturated: '10m',
      SvidscopeAgentsNotWatching: '15m',
    },
    alertmanager: {
      pageWebhookUrl: 'http://127.0.0.1:9095/page',
      ticketWebhookUrl: 'http://127.0.0.1:9095/ticket',
      groupWait: '30s',
      groupInterval: '5m',
      repeatInterval: '4h',
    },
  };
}

/** Partial overrides, one level deep per section (what users and tests pass). */
export interface ConfigOverrides {
  selectors?: Partial<MonitoringConfig['selectors']>;
  extraSelector?: string;
  clusterLabel?: string;
  trustDomainLabel?: string;
  federatedTrustDomainLabel?: string;
  runbookBaseUrl?: string;
  dashboardTag?: string;
  sloPeriod?: string;
  burnWindows?: BurnWindow[];
  slos?: { [K in keyof MonitoringConfig['slos']]?: Partial<MonitoringConfig['slos'][K]> };
  thresholds?: Partial<MonitoringConfig['thresholds']>;
  alertFor?: Record<string, string>;
  forOverride?: string;
  ruleInterval?: string;
  alertmanager?: Partial<MonitoringConfig['alertmanager']>;
}

export function resolveConfig(o: ConfigOverrides = {}): MonitoringConfig {
  const d = defaultConfig();
  const c: MonitoringConfig = {
    ...d,
    ...pick(o, ['extraSelector', 'clusterLabel', 'trustDomainLabel', 'federatedTrustDomainLabel', 'runbookBaseUrl', 'dashboardTag', 'sloPeriod', 'forOverride', 'ruleInterval']),
    selectors: { ...d.selectors, ...o.selectors },
    burnWindows: o.burnWindows ?? d.burnWindows,
    slos: {
      x509Issuance: { ...d.slos.x509Issuance, ...o.slos?.x509Issuance },
      workloadApi: { ...d.slos.workloadApi, ...o.slos?.workloadApi },
      probes: { ...d.slos.probes, ...o.slos?.probes },
      issuanceLatency: { ...d.slos.issuanceLatency, ...o.slos?.issuanceLatency },
      rotation: { ...d.slos.rotation, ...o.slos?.rotation },
      taintClear: { ...d.slos.taintClear, ...o.slos?.taintClear },
    },
    thresholds: { ...d.thresholds, ...o.thresholds },
    alertFor: { ...d.alertFor, ...o.alertFor },
    alertmanager: { ...d.alertmanager, ...o.alertmanager },
  };
  // The page for tainted SVIDs still held fires once they outlive the taint-clear objective.
  c.alertFor.SvidscopeTaintedSvidsHeld ??= promDuration(c.slos.taintClear.thresholdSeconds);
  validate(c);
  return c;
}

/** 300 → "5m": a Prometheus duration for a whole number of seconds. */
function promDuration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

function validate(c: MonitoringConfig): void {
  const onBoundary = (what: string, v: number, buckets: readonly number[]) => {
    if (!buckets.includes(v)) throw new SvidscopeError('config-invalid', `monitoring config: ${what} = ${v} is not a histogram bucket boundary (${buckets.join(', ')}); classic-histogram SLIs need an exact boundary`);
  };
  onBoundary('slos.issuanceLatency.thresholdSeconds', c.slos.issuanceLatency.thresholdSeconds, LATENCY_BUCKETS);
  onBoundary('slos.rotation.minRemainingRatio', c.slos.rotation.minRemainingRatio, FRACTION_BUCKETS);
  onBoundary('slos.taintClear.thresholdSeconds', c.slos.taintClear.thresholdSeconds, PROPAGATION_BUCKETS);
  if (!Number.isInteger(c.slos.taintClear.thresholdSeconds)) throw new SvidscopeError('config-invalid', `monitoring config: slos.taintClear.thresholdSeconds must be whole seconds (it is also a rule's \`for\`), got ${c.slos.taintClear.thresholdSeconds}`);
  onBoundary('thresholds.svidExpiringSeconds', c.thresholds.svidExpiringSeconds, EXPORTER_LIFETIME_BUCKETS);
  for (const [name, s] of Object.entries(c.slos)) {
    if (!(s.target > 0 && s.target < 1)) throw new SvidscopeError('config-invalid', `monitoring config: slos.${name}.target must be a ratio in (0, 1), got ${s.target}`);
  }
}

/**
 * Bucket boundaries of `svidscope_exporter_remaining_lifetime_seconds` (src/exporter/names.ts
 * LIFETIME_BUCKETS, repeated here because monitoring/ imports only common/telemetry; a test
 * checks that both lists agree).
 */
export const EXPORTER_LIFETIME_BUCKETS: readonly number[] = [0, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 172800, 604800, 2592000, 7776000, 31536000];

/**
 * How the monitoring stack of `svidscope up` is tuned. `production` loads the rules exactly as
 * shipped in alerts/ (alerts wait minutes before firing). `gameday` is for rehearsals on one
 * machine: 2 s scrapes and rule evaluation, every `for` cut to 10 s and the agent-sync staleness
 * threshold to 20 s (four missed 5 s syncs), so a chaos experiment proves each alert within a
 * minute. The game-day test suite runs this profile; the rules' logic is the same in both.
 */
export const ALERT_PROFILES = {
  production: { scrapeInterval: '15s', overrides: {} as ConfigOverrides },
  gameday: { scrapeInterval: '2s', overrides: { forOverride: '10s', thresholds: { agentSyncStaleSeconds: 20 } } as ConfigOverrides },
} as const;
export type AlertProfile = keyof typeof ALERT_PROFILES;
