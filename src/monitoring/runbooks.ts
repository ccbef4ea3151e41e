/**
 * One runbook per alert, as data rendered to runbooks/<AlertName>.md, plus the index
 * runbooks/README.md. The severity, expression, `for` and summary come from the rules, so a
 * runbook cannot describe a different alert than the one that fires.
 */
import type { MonitoringConfig } from './config.js';
import { humanDuration } from './promql.js';
import { allAlerts } from './rules.js';
import { slos } from './slos.js';
import { serverLoadRunbooks } from './server-load.js';
import { SvidscopeError } from '../common/errors/catalog.js';

export interface Runbook {
  meaning: string;
  impact: string;
  confirm: string[];
  mitigate: string[];
  escalate: string;
  verify: string[];
  /**
   * The chaos experiment in experiments/ that rehearses this alert. `proves`: the experiment
   * expects this alert to fire and the game day runs it (a test checks both). Otherwise `why` says
   * why one machine cannot provoke the alert within a game day, and the experiment rehearses the
   * failure that leads to it.
   */
  experiment: { file: string; what: string } & ({ proves: true } | { proves: false; why: string });
}

const ADMIN = '--admin-socket <data-dir>/server/admin.sock';

// --- key compromise (issue 15) ---
/**
 * The whole key-compromise response, one command per step, for every runbook of the
 * key-compromise alerts: whichever alert brought the operator here, the way out is the same.
 */
function compromiseResponse(c: MonitoringConfig): string[] {
  const td = c.trustDomainLabel;
  const ftd = c.federatedTrustDomainLabel;
  const objective = c.slos.taintClear.thresholdSeconds;
  return [
    `**Response 1 — scope.** \`svidscope authority list ${ADMIN}\` names every key (kind, phase, key id, bundle state). Decide which key is compromised (\`<id>\`) and its kind (\`<kind>\`: x509 or jwt). \`sum by (instance) (svidscope_agent_svids_by_authority{authority_key_id="<id>"})\` shows which agents hold SVIDs it signed (for X.509 the key id is the CA's subject key identifier; \`svidscope_exporter_svids_by_authority\` counts the same from the exporter's sources; Key compromise row of the SVID lifecycle dashboard).`,
    `**Response 2 — prepare.** \`svidscope authority prepare --kind <kind> ${ADMIN}\` publishes a new key without signing with it. Skip this if \`authority list\` already shows a prepared key of that kind you trust.`,
    `**Response 3 — wait for propagation.** Every agent serves the new bundle when \`svidscope_agent_bundle_sequence\` equals \`svidscope_server_bundle_sequence\` (\`SvidscopeTrustBundleStale\` silent; "Agents behind their server" panel at 0). Federated peers hold it when their \`svidscope_federation_bundle_sequence{${ftd}="<this trust domain>"}\` is at least this server's sequence ("Peers behind this bundle" panel at 0), or ask their operators to run \`svidscope federation refresh ${ADMIN} --trust-domain <this trust domain>\`. \`svidscope bundle show ${ADMIN}\` lists the new authority.`,
    `**Response 4 — activate.** \`svidscope authority activate --kind <kind> ${ADMIN}\`: new SVIDs are signed by the new key; the compromised one becomes \`old\`.`,
    `**Response 5 — taint.** \`svidscope authority taint --kind <kind> --key-id <id> ${ADMIN}\`: agents replace every SVID it signed at their next sync.`,
    `**Response 6 — watch it clear.** \`sum by (${td}, instance) (svidscope_agent_tainted_svids{kind="<kind>"})\` falls to 0 within ${humanDuration(objective)} (the taint-clear objective); an agent that stays above 0 pages with SvidscopeTaintedSvidsHeld. "Time to clear a taint" shows how long agents took.`,
    `**Response 7 — revoke.** Only once every agent is at 0 — and every agent is syncing: one cut off from its server does not know of the taint and reports 0 (SvidscopeAgentNotSyncing silent) — \`svidscope authority revoke --kind <kind> --key-id <id> ${ADMIN}\` takes the key out of the bundle for good (revoking earlier cuts off workloads still holding its SVIDs).`,
    `**Response 8 — confirm peers dropped it.** \`svidscope bundle show ${ADMIN}\` no longer lists the key; the "Peers behind this bundle" panel returns to 0 after the revoke's new sequence, i.e. every federated peer fetched the bundle without it (peers refresh at the bundle's refresh hint; ask them to force \`svidscope federation refresh\` and check \`svidscope federation show ${ADMIN} --trust-domain <this trust domain>\` on their side). The peer's agents have it once their \`svidscope_agent_federated_bundle_sequence{${ftd}="<this trust domain>"}\` reaches that sequence. Where the exporter watches them, "Holders of a revoked key" falls to 0 per scope and "Revoke → holders without the key" records how long it took (\`svidscope_exporter_revocation_propagation_seconds\`).`,
    `**If the compromised key is an upstream authority** (a root or intermediate your CAs are signed under, not a key of this server): configure a new \`ca.upstream\` and restart the server (the bundle then holds both roots; wait until every agent and peer serves it), prepare and activate a CA under it (Responses 2–4), then \`svidscope authority taint --upstream --subject-key-id <ski> ${ADMIN}\` and, once cleared, \`svidscope authority revoke --upstream --subject-key-id <ski> ${ADMIN}\` (\`authority list\` shows the upstream authorities and their subject key ids). Both refuse with \`authority-in-use\` while the configured upstream or the active or prepared CA chains to it. Agents replace every SVID whose chain passes through it.`,
  ];
}

/** What a runbook of an SLO burn-rate alert says beyond the parts every such runbook shares. */
type SloBurnRunbookFields = Omit<Runbook, 'meaning' | 'impact' | 'verify'> & { impact: string };

/** A burn-rate alert's runbook: meaning and verification come from the SLO itself. */
function sloBurnRunbook(c: MonitoringConfig, alert: string, extra: SloBurnRunbookFields): Runbook {
  const byName = Object.fromEntries(slos(c).map((s) => [s.alert, s]));
  const s = byName[alert];
  return {
    meaning: `The ${s.title} SLO (target ${s.target * 100}% over ${c.sloPeriod}) is spending its error budget faster than the window pair in the alert's \`long\`/\`short\` labels allows. SLI: ${s.sli}. Severity \`page\` = 2% (1h) or 5% (6h) of the budget gone; \`ticket\` = 10% over 1d or 3d.`,
    verify: [
      `\`slo:sli_error:ratio_rate5m{slo="${s.name}"}\` is back under the budget (\`slo:error_budget:ratio{slo="${s.name}"}\`) and the \`short\`-window ratio drops first; the alert resolves once the short window is clean.`,
      `\`slo:period_error_budget_remaining:ratio{slo="${s.name}"}\` has stopped falling (Overview dashboard).`,
    ],
    ...extra,
  };
}

/** Every runbook, by alert name, in the order the alerts are listed. */
function runbookContent(c: MonitoringConfig): Record<string, Runbook> {
  return {
    ...sloBurnRunbooks(c),
    ...componentDownRunbooks(c),
    ...expiryRunbooks(c),
    ...trustBundleRunbooks(c),
    ...attestationAndIssuanceRunbooks(c),
    ...workloadApiRunbooks(c),
    ...proberAndExporterRunbooks(c),
    ...serverLoadRunbooks(c),
    ...keyCompromiseRunbooks(c, (alert, extra) => sloBurnRunbook(c, alert, extra)),
  };
}

/** SLO burn-rate alerts (the key-compromise one is with its response). */
function sloBurnRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const td = c.trustDomainLabel;
  const burn = (alert: string, extra: SloBurnRunbookFields) => sloBurnRunbook(c, alert, extra);
  return {
    SvidscopeX509IssuanceBudgetBurn: burn('SvidscopeX509IssuanceBudgetBurn', {
      impact: 'Agents fail to get X509-SVIDs signed: new workloads get no identity and rotations fail; existing SVIDs keep working until their notAfter.',
      confirm: [
        `\`sum by (${td}, reason) (rate(svidscope_server_svid_signing_failures_total{svid_type="x509"}[5m]))\` — which reason dominates.`,
        '`svidscope server healthcheck --health-url http://<server ops address>` and the server log around the failures.',
        `\`svidscope bundle show ${ADMIN}\` — is there an active CA?`,
      ],
      mitigate: [
        'Reason `internal`/signing errors: check the CA key material and datastore health in the server log; restart the server if the CA manager is stuck.',
        'Reason `invalid_argument`/CSR errors after an agent upgrade: roll the agents back.',
        'Reason `server-overloaded` or `deadline-expired`: the server shed batches it could not sign in time (its signing queue was full, or callers gave up while they waited). This is capacity, not key material: see SvidscopeServerSaturated (signing workers busy, event-loop lag), then add servers or signing workers, or spread agent rotations.',
        'If a single agent produces all failures, evict it (`svidscope agent evict`) so it re-attests.',
      ],
      escalate: 'Identity-plane owners if failures persist for 30 minutes or the CA is involved.',
      experiment: { file: 'experiments/agent-bad-csr.yaml', what: 'agent-2\'s identity sends CSRs that do not decode: every signing fails', proves: true },
    }),
    SvidscopeWorkloadApiBudgetBurn: burn('SvidscopeWorkloadApiBudgetBurn', {
      impact: 'Workloads fail to fetch SVIDs or bundles from their agent; mTLS between them starts failing once held SVIDs expire.',
      confirm: [
        `\`sum by (instance, code, method) (rate(svidscope_agent_workload_api_requests_total{code!="OK"}[5m]))\` — which agents and codes.`,
        '`svidscope probe x509_svid --target unix://<agent socket>` from the node.',
        '`svidscope agent healthcheck --health-url http://<agent ops address>`.',
      ],
      mitigate: ['UNAVAILABLE from one agent: restart it; if it cannot sync, follow SvidscopeAgentNotSyncing.', 'Errors across all agents: check the server (SvidscopeServerDown, issuance alerts).'],
      escalate: 'Identity-plane owners; application owners if only one workload class is affected.',
      experiment: { file: 'experiments/agent-workload-api-errors.yaml', what: 'restart agent-2 with its clock 2 hours ahead: it cannot attest and answers UNAVAILABLE', proves: true },
    }),
    SvidscopeProbeBudgetBurn: burn('SvidscopeProbeBudgetBurn', {
      impact: 'Synthetic workloads cannot fetch, validate or use SVIDs: real workloads very likely see the same.',
      confirm: [
        '`sum by (module, target, reason) (increase(svidscope_prober_probe_failures_total[15m]))` — failing modules and reasons (docs/probes.md lists them).',
        '`svidscope probe <module> --target <target>` for a readable report of each check.',
      ],
      mitigate: ['Follow the reason: `unavailable`/`socket_missing` → agent (SvidscopeAgentDown); `untrusted_authority` → bundles (SvidscopeTrustBundleStale); `endpoint_down` → federation; `expired`/`rotation_overdue` → SvidscopeSvidsExpiringSoon; `not_yet_valid` → SvidscopeProbeClockSkew.'],
      escalate: 'Identity-plane owners.',
      experiment: { file: 'experiments/prober-clock-skew.yaml', what: 'set the prober\'s clock 10 minutes back: every SVID probe fails as not yet valid', proves: true },
    }),
    SvidscopeIssuanceLatencyBudgetBurn: burn('SvidscopeIssuanceLatencyBudgetBurn', {
      impact: 'Signing is slow: agent syncs and rotations take longer; under load, requests time out and turn into issuance errors.',
      confirm: ['Issuance latency panel (On-call): p99 of `svidscope_server_svid_issuance_duration_seconds`.', '`histogram_quantile(0.99, sum by (le, operation) (rate(svidscope_server_datastore_operation_duration_seconds_bucket[5m])))` — is the datastore slow?', 'Server CPU: `rate(process_cpu_seconds_total{job="svidscope-server"}[5m])`.'],
      mitigate: ['Datastore slow: check the database host; move to a faster disk or Postgres.', 'CPU saturation: scale out servers or spread agent sync intervals.'],
      escalate: 'Identity-plane owners; database owners for datastore latency.',
      experiment: { file: 'experiments/server-cpu-starvation.yaml', what: 'starve the server of CPU (cgroup quota) while 20 workloads start on agent-1; it expects this alert, outside the CI game day', proves: false, why: 'a signing costs about 0.3 ms of CPU, so starving the server stretches only the signings that straddle a throttled period; the experiment fired this alert in each of three trials on one machine, after 64 to 137 s, but that remains a matter of chance and takes two minutes, so the CI game day leaves it out' },
    }),
    SvidscopeRotationBudgetBurn: burn('SvidscopeRotationBudgetBurn', {
      impact: 'SVIDs are replaced late in their lifetime: a short server or agent hiccup can now let them expire.',
      confirm: ['Lifetime left at rotation panel (SVID lifecycle).', '`sum by (instance, reason) (rate(svidscope_agent_svid_rotation_failures_total[1h]))`.', '`svidscope agent api fetch x509 --socket-path <agent socket>` shows notAfter of current SVIDs.'],
      mitigate: ['Rotation failures at one agent: restart it; check its sync (SvidscopeAgentNotSyncing).', 'Late rotations everywhere: the server is slow or unavailable — see the issuance alerts.'],
      escalate: 'Identity-plane owners.',
      experiment: { file: 'experiments/agent-partition.yaml', what: 'partition agent-2 from the server', proves: false, why: 'agents rotate at half the SVID TTL (30 minutes with the default 1 h), so an agent must stay cut off longer than a game day lasts' },
    }),
  };
}

/** A server or agent that is down or cut off from its server. */
function componentDownRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const t = c.thresholds;
  return {
    SvidscopeServerDown: {
      meaning: 'Prometheus cannot scrape an svidscope server (`up == 0`).',
      impact: 'No SVIDs are signed and agents cannot sync; workloads keep their cached SVIDs until notAfter, then lose their identity. Federation peers cannot refresh this domain\'s bundle.',
      confirm: ['`svidscope server healthcheck --health-url http://<server ops address>`', '`up{job="svidscope-server"}` and the server log (`<data-dir>/logs/server.log` under `svidscope up`).', 'Is the process running? `pgrep -af "server run"`'],
      mitigate: ['Restart the server (`svidscope server run --config <file>`); it resumes from its datastore.', 'If it crashes at start, read the error: datastore unreachable, config invalid, or CA key material missing.'],
      escalate: 'Page the identity-plane owners immediately if the server does not come back within 10 minutes: SVID expiry is the deadline (see the earliest SVID expiry panel).',
      verify: ['`up{job="svidscope-server"} == 1`', 'Agents sync again: `time() - svidscope_agent_last_successful_sync_timestamp_seconds` falls.'],
      experiment: { file: 'experiments/server-outage.yaml', what: 'freeze the server with SIGSTOP, then resume it', proves: true },
    },
    SvidscopeAgentDown: {
      meaning: 'Prometheus cannot scrape an svidscope agent (`up == 0`).',
      impact: 'Workloads on that node cannot fetch new SVIDs, rotate, or get bundle updates through its Workload API.',
      confirm: ['`svidscope agent healthcheck --health-url http://<agent ops address>`', '`svidscope probe x509_svid --target unix://<agent socket>`', 'Agent log (`<data-dir>/logs/agent-N.log` under `svidscope up`); `pgrep -af "agent run"`.'],
      mitigate: ['Restart the agent with its config; it reuses its stored agent SVID if still valid, else attest it again with a new join token (`svidscope token generate`).', 'If the node is gone, evict the agent: `svidscope agent evict ' + ADMIN + ' --spiffe-id <agent id>`.'],
      escalate: 'Node owner; identity-plane owners if several agents are down (then suspect the server or the network).',
      verify: ['`up{job="svidscope-agent"} == 1`', 'Probes of that agent succeed: `svidscope_prober_probe_success{target=~"<agent>.*"} == 1`.'],
      experiment: { file: 'experiments/agent-crash.yaml', what: 'kill -9 an agent and restart it (test/monitoring/stack.test.ts also kills one and waits for this page)', proves: true },
    },
    SvidscopeAgentNotSyncing: {
      meaning: `An agent has not synced with its server for more than ${t.agentSyncStaleSeconds}s, or it holds no valid agent SVID (\`svidscope_agent_attested == 0\`).`,
      impact: 'New entries, bundle updates and rotations stop at that agent; its workloads lose their SVIDs at notAfter.',
      confirm: [
        '`time() - svidscope_agent_last_successful_sync_timestamp_seconds` and `rate(svidscope_agent_sync_failures_total[5m])` per agent: one agent (its node or network) or every agent at once (the server or its trust bundle)?',
        'Agent log: sync errors (PermissionDenied = evicted/banned; Unavailable or deadline exceeded = server unreachable; `refusing trust bundle sequence N` or a TLS verification error = the bundle lost an authority: a bad CA rotation).',
        '`svidscope agent list ' + ADMIN + '` — is the agent banned or unknown?',
        '`svidscope authority list ' + ADMIN + '` — is an X.509 authority `withheld`, or did a rotation activate a CA the agents never received?',
      ],
      mitigate: [
        'Server unreachable: fix the network path or the server (SvidscopeServerDown inhibits this alert while the server is down).',
        'Agent evicted or its SVID expired: re-attest with a fresh join token.',
        'Bad rotation: publish the authority again (`svidscope authority publish --kind x509 --key-id <id>`); agents refuse a bundle that would cut them off, and the server keeps presenting an SVID of a CA that is only withheld (nor re-keys onto an active CA that is withheld), so they resume at their next sync whatever order the authorities are published in. An agent that can no longer verify the server at all is re-bootstrapped: stop it, remove `<data_dir>/private/`, start it with a new join token and `trust_bundle_path` set to the server\'s current bundle (`svidscope bundle show`).',
      ],
      escalate: 'Identity-plane owners.',
      verify: ['Sync age falls below the sync interval; `svidscope_agent_attested == 1`.'],
      experiment: { file: 'experiments/agent-partition.yaml', what: 'network partition between agent-2 and the server (experiments/bad-rotation.yaml raises it on every agent at once)', proves: true },
    },
  };
}

/** SVIDs and signing keys close to their notAfter. */
function expiryRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const t = c.thresholds;
  return {
    SvidscopeSvidsExpiringSoon: {
      meaning: `The exporter sees X509-SVIDs with ${t.svidExpiringSeconds}s or less of lifetime left (expired included). Healthy SVIDs are rotated around half their TTL, so such a cohort means rotation is failing for it.`,
      impact: 'When they expire, the workloads holding them fail mTLS with every peer.',
      confirm: ['`sum by (source, le) (svidscope_exporter_remaining_lifetime_seconds_bucket{kind="x509_svid"})` — which sources hold them.', '`svidscope agent api fetch x509 --socket-path <agent socket>` on the affected node.', 'Agent rotation failures and sync age (On-call dashboard).'],
      mitigate: ['Fix the agent (restart / re-attest) or the server; rotations resume at the next sync.', 'For a workload writing SVIDs to disk (the sample workload), check that it is running and can write.'],
      escalate: 'Page the identity-plane owners: expiry is a hard deadline.',
      verify: ['`svidscope_exporter_remaining_lifetime_seconds_bucket{kind="x509_svid", le="' + t.svidExpiringSeconds + '"}` back to 0.'],
      experiment: { file: 'experiments/server-outage.yaml', what: 'freeze the server: agents keep serving cached SVIDs', proves: false, why: 'SVIDs must get within 15 minutes of expiry unrotated: 45 minutes of outage with the default 1 h TTL' },
    },
    SvidscopeSigningKeyNearExpiry: {
      meaning: `The active X.509 CA or JWT signing key of a server expires in less than ${t.signingKeyExpirySeconds}s: CA rotation (prepare at ½, activate) did not happen.`,
      impact: 'SVIDs cannot outlive the CA; when it expires, every SVID it signed stops verifying — the whole trust domain is down.',
      confirm: [`\`svidscope_server_signing_keys\` — is there a \`prepared\` key? \`svidscope_server_signing_key_expiry_timestamp_seconds - time()\`.`, `\`svidscope bundle show ${ADMIN}\` — authorities and their notAfter.`, 'Server log: CA manager prepare/activate errors.'],
      mitigate: ['Restart the server so the CA manager re-runs its rotation.', 'If an upstream authority signs the CA, check that it is reachable and its own certificate is valid.'],
      escalate: 'Page identity-plane owners and security: CA problems are trust-domain-wide.',
      verify: ['A prepared key appears and becomes active; the active key\'s expiry jumps forward.'],
      experiment: { file: 'experiments/ca-rotation.yaml', what: 'force a CA rotation and check every agent follows', proves: false, why: 'the active CA must come within 6 hours of expiry with no successor, i.e. a server stalled for most of its 24 h CA TTL' },
    },
  };
}

/** Trust bundles: stale at an agent, slow to propagate, federated refreshes failing. */
function trustBundleRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const t = c.thresholds;
  return {
    SvidscopeTrustBundleStale: {
      meaning: 'An agent serves a trust bundle with a lower sequence number than its server publishes.',
      impact: 'After the new authority starts signing, workloads behind this agent reject peers\' new SVIDs (and peers reject theirs).',
      confirm: ['`svidscope_server_bundle_sequence` vs `svidscope_agent_bundle_sequence` per instance (Trust bundles dashboard).', '`svidscope agent api fetch x509 --socket-path <agent socket>` — bundle contents.'],
      mitigate: ['Restart the agent; if it cannot sync, see SvidscopeAgentNotSyncing.'],
      escalate: 'Identity-plane owners.',
      verify: ['Sequences equal; probes of that agent validate with `untrusted_authority` gone.'],
      experiment: { file: 'experiments/bundle-mismatch.yaml', what: 'rotate the CA while agent-2 is partitioned from the server', proves: true },
    },
    SvidscopeBundlePropagationSlow: {
      meaning: `The p99 time from a new bundle at the server to agents serving it is above ${t.bundlePropagationSeconds}s over the last hour.`,
      impact: 'A window after every CA rotation in which some workloads do not trust the new authority yet.',
      confirm: ['Propagation lag panel (Trust bundles) by bundle kind; exporter `svidscope_exporter_bundle_propagation_lag_seconds` per source.', 'Agent sync durations: `histogram_quantile(0.99, sum by (le) (rate(svidscope_agent_sync_duration_seconds_bucket[1h])))`.'],
      mitigate: ['Slow syncs: server or datastore load (see issuance latency).', 'Lower the agents\' sync interval if it is configured high.'],
      escalate: 'Ticket to identity-plane owners.',
      verify: ['p99 back under the threshold after the next bundle change.'],
      experiment: { file: 'experiments/bundle-mismatch.yaml', what: 'agent-2 receives the rotated bundle only when its partition heals, over a minute late', proves: true },
    },
    SvidscopeFederatedBundleRefreshFailing: {
      meaning: `A server has not confirmed a federated trust domain's bundle for more than ${t.federatedBundleMaxAgeSeconds}s: fetches from the peer's bundle endpoint fail.`,
      impact: 'Nothing yet: the stored bundle still works. When the peer rotates its CA, cross-domain mTLS breaks.',
      confirm: ['`sum by (reason) (increase(svidscope_federation_bundle_refresh_errors_total[30m]))` — connect, tls, http_status, …', '`svidscope federation show ' + ADMIN + ' --trust-domain <peer>`', '`svidscope probe bundle_endpoint --target <peer endpoint URL> --set trust_domain=<peer>`'],
      mitigate: ['`connect`/`timeout`: network path to the peer endpoint.', '`tls`/`authentication`: the peer rotated its endpoint identity; update the relationship (`svidscope federation create` with the new endpoint SPIFFE ID or bundle).', 'Force a refresh once fixed: `svidscope federation refresh ' + ADMIN + ' --trust-domain <peer>`.'],
      escalate: 'The peer trust domain\'s operators (their endpoint), then identity-plane owners.',
      verify: ['`svidscope_federation_bundle_age_seconds` drops to a few refresh intervals.'],
      experiment: { file: 'experiments/federation-endpoint-down.yaml', what: 'the peer\'s bundle endpoint down, malformed or stale', proves: false, why: 'the alert waits until the federated bundle is 30 minutes old' },
    },
  };
}

/** Node attestation failures and slow signing at the server. */
function attestationAndIssuanceRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const t = c.thresholds;
  return {
    SvidscopeAttestationFailureSpike: {
      meaning: `More than ${t.attestationFailures} node attestations failed within 10 minutes, by method and reason.`,
      impact: 'New and restarted agents cannot join: their nodes get no identities. A spike can also be an attack (token guessing).',
      confirm: ['`sum by (method, reason) (increase(svidscope_server_attestations_total{result="failure"}[10m]))`', 'Server log: attestation errors with the caller address.', '`svidscope agent list ' + ADMIN + '`'],
      mitigate: ['Expired or reused join tokens: issue fresh ones (`svidscope token generate`).', 'Unknown callers: block them at the network level and tell security.'],
      escalate: 'Security if the callers are unknown; identity-plane owners otherwise.',
      verify: ['Failures stop increasing; agents attest.'],
      experiment: { file: 'experiments/attestation-bad-tokens.yaml', what: '30 node attestations with join tokens the server never issued', proves: true },
    },
    SvidscopeIssuanceLatencyHigh: {
      meaning: `The p99 X.509-SVID signing time over 10 minutes is above ${t.issuanceLatencySeconds}s.`,
      impact: 'Slow syncs and rotations; at worst timeouts that become issuance errors.',
      confirm: ['Issuance latency panel (On-call).', 'Datastore latency: `histogram_quantile(0.99, sum by (le, operation) (rate(svidscope_server_datastore_operation_duration_seconds_bucket[10m])))`.', 'CPU: `rate(process_cpu_seconds_total{job="svidscope-server"}[5m])`.'],
      mitigate: ['Reduce load (stagger agent restarts), scale the server, or fix the datastore.'],
      escalate: 'Ticket to identity-plane owners.',
      verify: ['p99 under the threshold for 15 minutes.'],
      experiment: { file: 'experiments/server-cpu-starvation.yaml', what: 'starve the server of CPU (cgroup quota) while 20 workloads start on agent-1; it expects this alert, outside the CI game day', proves: false, why: 'a signing costs about 0.3 ms of CPU, so starving the server stretches only the signings that straddle a throttled period; the experiment fired this alert in each of three trials on one machine, after 64 to 137 s, but that remains a matter of chance and takes two minutes, so the CI game day leaves it out' },
    },
  };
}

/** Agents failing or refusing Workload API callers. */
function workloadApiRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const t = c.thresholds;
  return {
    SvidscopeWorkloadApiErrors: {
      meaning: `More than ${t.workloadApiErrorRatio * 100}% of an agent's Workload API requests fail with ${c.slos.workloadApi.errorCodes.join(', ')}.`,
      impact: 'Workloads on that node cannot fetch or refresh SVIDs and bundles.',
      confirm: ['`sum by (method, code) (rate(svidscope_agent_workload_api_requests_total{instance="<agent>"}[5m]))`', '`svidscope agent api fetch x509 --socket-path <agent socket>`; agent log.'],
      mitigate: ['Restart the agent; check its sync with the server and its cache (`svidscope_agent_svids_cached`).'],
      escalate: 'Ticket to identity-plane owners; page via SvidscopeWorkloadApiBudgetBurn if it spreads.',
      verify: ['Error ratio back under the threshold.'],
      experiment: { file: 'experiments/agent-workload-api-errors.yaml', what: 'restart agent-2 with its clock 2 hours ahead: it cannot attest and answers UNAVAILABLE', proves: true },
    },
    SvidscopeWorkloadApiRefusals: {
      meaning: `An agent keeps refusing Workload API connections or requests (more than ${t.workloadApiRefusals} per 5 minutes for the alert's \`for\`), by \`reason\`: \`total_limit\` (it holds \`workload_api_max_connections\`), \`emfile\` (it ran out of file descriptors), \`per_uid_limit\` (one uid holds \`workload_api_max_connections_per_uid\`), \`first_request_timeout\` (connections that sent nothing within \`workload_api_first_request_timeout\`), \`exec_after_connect\` (a caller executed another program after connecting, the attack described in docs/security.md). \`total_limit\` and \`emfile\` page; the others open a ticket.`,
      impact: 'Page: the agent closes new connections of every workload on the node at accept and reports not ready; workloads cannot fetch or rotate SVIDs (those they hold work until notAfter). Ticket: only the offending uid or caller is turned away, everyone else is served, but a local process is flooding the socket or trying to take another program\'s identity.',
      confirm: [
        '`sum by (instance, reason) (increase(svidscope_agent_workload_api_refusals_total[5m]))`; `svidscope_agent_workload_api_connections` against `svidscope_agent_workload_api_connection_limit` (On-call dashboard, Workload API connections and refusals).',
        'Agent log: one line per reason at most every 10 s, with `code` (`workload-api-connection-limit`, `workload-api-fd-exhausted`, `workload-exec-after-connect`), `refused` (how many) and `byUid` (the uids behind most of them).',
        'On the node: `ss -xp | grep <agent socket>` lists the processes holding connections; `ps -o pid,user,args -u <uid>` for a uid from the log.',
        '`curl http://<agent ops address>/ready`: the `workload_api` check says "at workload_api_max_connections" or "out of file descriptors".',
      ],
      mitigate: [
        'One uid flooding the socket: stop its processes (with the owner of that uid); the per-uid limit already keeps it from starving the others.',
        'A node that really has this many callers: raise `workload_api_max_connections` / `workload_api_max_connections_per_uid` and restart the agent. `emfile`: raise the agent\'s open-file limit (`LimitNOFILE=` in its unit, `ulimit -n`); each connection holds 2 descriptors.',
        '`first_request_timeout` from a known client: it dials ahead without asking; harmless to others, fix the client or raise `workload_api_first_request_timeout`.',
        '`exec_after_connect`: handle as a security incident: a process of that uid tried to obtain the SVID of a program selected by `unix:path`/`unix:sha256`. Path selectors do not separate processes of one uid; move that workload to a uid of its own.',
      ],
      escalate: 'Page: identity-plane owners, and security when one uid causes it. Ticket: security for `exec_after_connect`, the owner of the uid otherwise.',
      verify: ['Refusals stop increasing; `/ready` answers 200; connections fall below the limits.'],
      experiment: { file: 'experiments/agent-workload-api-errors.yaml', what: 'agent-2 restarted with a skewed clock answers UNAVAILABLE, which is what its workloads see when their connections are refused', proves: false, why: 'the attack needs processes of other local uids holding connections to the agent socket, which the chaos harness does not start; test/security/workload-api.test.ts performs it against a real agent (per-uid flood, total limit, EMFILE, exec after connect)' },
    },
  };
}

/** The observability suite itself: the prober and the exporter. */
function proberAndExporterRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const t = c.thresholds;
  return {
    SvidscopeProbeClockSkew: {
      meaning: 'Probes found SVIDs whose notBefore lies in the future beyond the clock-skew tolerance (reason `not_yet_valid`): the prober host\'s clock and the signing server\'s disagree.',
      impact: 'Workloads on skewed hosts reject fresh SVIDs of their peers (or theirs are rejected) right after every rotation.',
      confirm: ['`increase(svidscope_prober_probe_failures_total{reason="not_yet_valid"}[10m])` by target.', 'Compare clocks: `timedatectl` / `chronyc tracking` on the prober host, the server host and the agent hosts.', '`svidscope probe x509_svid --target <target>` shows the notBefore and the local time.'],
      mitigate: ['Fix NTP on the skewed host. svidscope backdates notBefore slightly; a larger skew needs time sync, not config.'],
      escalate: 'Host/platform owners of the skewed machines.',
      verify: ['No new `not_yet_valid` failures for 10 minutes.'],
      experiment: { file: 'experiments/prober-clock-skew.yaml', what: 'set the prober\'s clock 10 minutes back (libfaketime)', proves: true },
    },
    SvidscopeProberDown: {
      meaning: 'Prometheus cannot scrape the prober.',
      impact: 'No synthetic probes: the probe-success SLO and clock-skew detection are blind. The identity plane itself may be fine.',
      confirm: ['`curl http://<prober>/live`; prober log; `pgrep -af "prober run"`.'],
      mitigate: ['Restart the prober (`svidscope prober run --config <file>`).'],
      escalate: 'Ticket to the observability owners.',
      verify: ['`up{job="svidscope-prober"} == 1`; `svidscope_prober_last_probe_timestamp_seconds` advances.'],
      experiment: { file: 'experiments/prober-down.yaml', what: 'kill the prober', proves: true },
    },
    SvidscopeExporterScrapeErrors: {
      meaning: `An exporter source failed more than ${t.exporterSourceErrors} times in 15 minutes, scrapes were truncated by the time budget, or Prometheus cannot scrape the exporter (value 0).`,
      impact: 'Lifecycle panels and the expiring-SVIDs alert work on stale data.',
      confirm: ['`sum by (source, reason) (increase(svidscope_exporter_source_errors_total[15m]))`; `svidscope_exporter_source_up`.', '`curl http://<exporter>/ready` lists each source\'s state.', '`svidscope exporter check-config --config <file>`'],
      mitigate: ['`permission_denied`: the exporter\'s own identity lost its entry — recreate it.', '`unavailable`: the watched agent or server is down (see their alerts).', 'Truncated scrapes: raise `scrape.timeout` or lower `per_svid_max_series`.'],
      escalate: 'Ticket to the observability owners.',
      verify: ['Errors stop increasing; every source `up`.'],
      experiment: { file: 'experiments/exporter-source-loss.yaml', what: 'delete the exporter\'s registration entry on agent-2', proves: true },
    },
  };
}

// --- key compromise (issue 15) ---
function keyCompromiseRunbooks(c: MonitoringConfig, burn: (alert: string, extra: Omit<Runbook, 'meaning' | 'impact' | 'verify'> & { impact: string }) => Runbook): Record<string, Runbook> {
  const t = c.thresholds;
  const objective = c.slos.taintClear.thresholdSeconds;
  const response = compromiseResponse(c);
  // The drill rehearses the whole response; on a healthy stack it clears well within the objective, so it does not page.
  const drill = { file: 'experiments/key-compromise.yaml', what: 'the key-compromise drill: prepare → activate → taint → clear → revoke, timed', proves: false, why: 'a healthy stack clears a taint in seconds; to see the page, run `svidscope authority taint` by hand while experiments/agent-partition.yaml holds agent-2 apart' };
  return {
    SvidscopeTaintClearBudgetBurn: burn('SvidscopeTaintClearBudgetBurn', {
      impact: `Agents took longer than ${humanDuration(objective)} to replace the SVIDs of a tainted authority: during a compromise, workloads kept presenting credentials signed by the compromised key, and revocation had to wait.`,
      confirm: [
        '`histogram_quantile(0.99, sum by (le, instance) (rate(svidscope_agent_taint_clear_seconds_bucket[1h])))` — which agents were slow ("Time to clear a taint" panel).',
        '`sum by (instance, kind) (svidscope_agent_tainted_svids)` — are any still holding tainted SVIDs now (then follow SvidscopeTaintedSvidsHeld)?',
        'Agent sync age and rotation failures of the slow agents (On-call dashboard): a taint reaches an agent only through a sync.',
      ],
      mitigate: ['Fix the slow agents\' sync (SvidscopeAgentNotSyncing) or the server\'s signing capacity (issuance alerts); a taint makes every agent re-mint at once.', ...response],
      escalate: 'Identity-plane owners and security: the compromise response is only as fast as its slowest agent.',
      experiment: drill,
    }),
    SvidscopeTaintedSvidsHeld: {
      meaning: `An agent has held SVIDs signed by a tainted authority for ${humanDuration(objective)} (the taint-clear objective): an operator tainted the key, and this agent has not replaced everything it signed.`,
      impact: 'Workloads behind this agent still present credentials of a compromised key. The key cannot be revoked until they are replaced: revoking now would cut these workloads off from every peer.',
      confirm: [
        '`svidscope_agent_tainted_svids` per agent and kind; `svidscope_agent_svids_by_authority{instance="<agent>"}` — which authority signed what it holds.',
        '`time() - svidscope_agent_last_successful_sync_timestamp_seconds{instance="<agent>"}` — has the agent synced since the taint? `svidscope_agent_svid_rotation_failures_total` — does it fail to re-mint?',
        `\`svidscope authority list ${ADMIN}\` — is the tainted key really \`old\` (a successor active)?`,
      ],
      mitigate: [
        'Agent not syncing: fix its path to the server or restart it (SvidscopeAgentNotSyncing); it replaces the tainted SVIDs at its first sync.',
        'Re-mints failing: see the issuance alerts; the server must have an active key that is not tainted.',
        'A JWT-SVID cached by a workload is replaced only when the workload fetches again; restart workloads that hold tokens for long.',
        ...response,
      ],
      escalate: 'Page identity-plane owners and security: a compromised key stays trusted until this clears.',
      verify: ['`svidscope_agent_tainted_svids` is 0 on every agent; then revoke (response step 7) and confirm the peers (step 8).'],
      experiment: drill,
    },
    SvidscopeAuthorityActivationOverdue: {
      meaning: 'A server holds a signing key that should be active by now: a successor an operator prepared ahead of the schedule (a compromise response) was not activated before the active key reached its prepare point, or scheduled rotation stalled past the activate point.',
      impact: 'A compromise response stopped halfway: the key it meant to replace still signs every new SVID. A stalled rotation ends in SvidscopeSigningKeyNearExpiry.',
      confirm: [
        `\`svidscope authority list ${ADMIN}\` — is there a \`prepared\` key of that kind, and who prepared it (the audit line \`authority lifecycle step\` in the server log)?`,
        '`svidscope_server_authority_activation_due_timestamp_seconds - time()` per kind; `svidscope_server_signing_keys` by phase.',
        'Server log: CA manager prepare/activate errors (a stalled schedule).',
      ],
      mitigate: [
        'Prepared on purpose: finish the response below from step 3 (propagation, activate, taint, revoke).',
        'Prepared by mistake: activate it anyway once it has propagated — a fresh key harms nothing — or let the schedule activate it at the activate point.',
        'No prepared key and past the activate point: the rotation loop is stuck; restart the server (it catches up at start) and read its log.',
        ...response,
      ],
      escalate: 'Ticket to identity-plane owners; security if the prepared key belongs to a compromise response.',
      verify: ['`time() - svidscope_server_authority_activation_due_timestamp_seconds` is negative again (the due time moved to the new key\'s activate point).'],
      experiment: { file: 'experiments/ca-rotation.yaml', what: 'force a CA rotation and check every agent follows', proves: false, why: 'the active key must pass its prepare point (12 hours with the default 24 h CA TTL) with an operator-prepared successor still waiting' },
    },
    SvidscopeUpstreamAuthorityNearExpiry: {
      meaning: `The upstream authority (\`ca.upstream\`) the server's X.509 CAs are signed under expires in less than ${humanDuration(t.upstreamAuthorityExpiryTicketSeconds)} (ticket) or ${humanDuration(t.upstreamAuthorityExpiryPageSeconds)} (page). No CA outlives it: new CAs are cut short to its notAfter, rotations come ever faster, and at its expiry nothing in the trust domain verifies.`,
      impact: 'None until it expires; then every X509-SVID of the trust domain fails verification, at every workload and every federated peer.',
      confirm: [
        '`svidscope_server_upstream_authority_expiry_timestamp_seconds - time()` per server.',
        '`openssl x509 -noout -enddate -subject -in <ca.upstream.cert_file>` on the server host.',
        `\`svidscope bundle show ${ADMIN}\` — the bundle's X.509 authority is the upstream certificate.`,
      ],
      mitigate: [
        'Re-issue the upstream certificate for the same key pair and subject with a later notAfter, replace `ca.upstream.cert_file`, and restart the server: CAs signed under the old certificate still chain (same key and name), and the bundle carries the renewed one.',
        'A new upstream key (or a compromised one) is a root change: the bundle swaps to the new root at restart and SVIDs under the old root stop verifying. Give agents and peers the new root first, then replace the files and restart, then taint and revoke the old X.509 CAs with the response below.',
        ...response,
      ],
      escalate: 'Ticket (page when close) to the owners of the upstream CA, and identity-plane owners.',
      verify: ['`svidscope_server_upstream_authority_expiry_timestamp_seconds` jumps to the renewed notAfter; new CAs get their full `ca.ttl` again (`svidscope authority list`).'],
      experiment: { file: 'experiments/ca-rotation.yaml', what: 'force a CA rotation and check every agent follows', proves: false, why: '`svidscope up` signs without an upstream authority' },
    },
  };
}

export function renderRunbook(c: MonitoringConfig, alert: string): string {
  const rb = runbookContent(c)[alert];
  if (!rb) throw new SvidscopeError('not-found', `no runbook for ${alert}`);
  const rules = allAlerts(c).filter((r) => r.alert === alert);
  const list = (items: string[]) => items.map((i) => `- ${i}`).join('\n');
  const ruleRows = rules.map((r) => `| \`${r.labels.severity}\` | ${r.for} | ${r.labels.long ? `${r.labels.long} / ${r.labels.short}` : '—'} |`).join('\n');
  return `# ${alert}

<!-- generated by \`npm run generate\` from src/monitoring/runbooks.ts; do not edit by hand -->

> ${rules[0].annotations.summary}

| severity | for | windows (long / short) |
|---|---|---|
${ruleRows}

\`\`\`promql
${rules[0].expr}
\`\`\`

## What it means

${rb.meaning}

## User impact

${rb.impact}

## How to confirm

${list(rb.confirm)}

## Mitigation

${list(rb.mitigate)}

## Escalation

${rb.escalate}

## Verify recovery

${list(rb.verify)}

## Rehearsal

${rb.experiment.proves
    ? `\`${rb.experiment.file}\` — ${rb.experiment.what}; it expects this alert and runs in the game day (\`experiments/gameday.yaml\`).`
    : `Not provokable in a game day on one machine: ${rb.experiment.why}. \`${rb.experiment.file}\` rehearses what leads to it — ${rb.experiment.what}.`} Run it against \`svidscope up --alert-profile gameday\`: \`svidscope chaos run --data-dir <up data-dir> ${rb.experiment.file}\`.
`;
}

/** Experiment files the runbooks name, and whether each proves its alert fires. */
export function runbookExperiments(c: MonitoringConfig): { alert: string; file: string; proves: boolean }[] {
  return Object.entries(runbookContent(c)).map(([alert, rb]) => ({ alert, file: rb.experiment.file, proves: rb.experiment.proves }));
}

export function runbookAlerts(c: MonitoringConfig): string[] {
  return Object.keys(runbookContent(c));
}

export function renderRunbookIndex(c: MonitoringConfig): string {
  const rules = allAlerts(c);
  const names = [...new Set(rules.map((r) => r.alert))].sort();
  const rows = names.map((n) => {
    const rs = rules.filter((r) => r.alert === n);
    const sev = [...new Set(rs.map((r) => r.labels.severity))].join(', ');
    return `| [${n}](${n}.md) | ${sev} | ${rs[0].annotations.summary} | \`${runbookContent(c)[n].experiment.file}\`${runbookContent(c)[n].experiment.proves ? '' : ' (rehearses the cause only)'} |`;
  });
  return `# Runbooks

<!-- generated by \`npm run generate\` from src/monitoring; do not edit by hand -->

One runbook per alert of \`alerts/svidscope-alerts.yaml\`; each alert's \`runbook_url\` points here.
Severity \`page\` wakes someone up; \`ticket\` goes to the work queue (see \`alerts/alertmanager.yml\`).
Dashboards: \`dashboards/\`; how to load everything: \`docs/monitoring.md\`.

| alert | severity | summary | rehearsed by |
|---|---|---|---|
${rows.join('\n')}
`;
}
