/**
 * Every metric family the server and the agent expose, in one place (SPIRE keeps its telemetry
 * names in one file for the same reason: no two subsystems may pick conflicting names). The
 * catalogue drives registration and `docs/metrics.md`, so the documentation cannot drift from
 * what is served. Names follow Prometheus conventions: `svidscope_` prefix, base units, `_total`
 * for counters; labels are bounded sets (no SPIFFE IDs, serials or pids).
 */
export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
  /** Histogram buckets, in the family's base unit. */
  readonly buckets?: readonly number[];
}

/** Latencies of signing and API calls: 0.5 ms to 10 s. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Sync and propagation times: 10 ms to 10 min. */
export const PROPAGATION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
/** Fractions of a lifetime (rotation timing). */
/** Entries per agent: from none through a node alias shared by a large fleet. */
export const ENTRY_COUNT_BUCKETS = [0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];
export const FRACTION_BUCKETS = [0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1];

const f = (name: string, type: MetricType, help: string, labels: string[] = [], buckets?: number[]): MetricFamily => ({ name, type, help, labels, buckets });

export const serverFamilies = {
  apiRequests: f('svidscope_server_api_requests_total', 'counter', 'Server API requests (agent and admin services) by method and gRPC status code name.', ['service', 'method', 'code']),
  apiDuration: f('svidscope_server_api_request_duration_seconds', 'histogram', 'Server API request latency by method.', ['service', 'method'], LATENCY_BUCKETS),
  issuance: f('svidscope_server_svid_issuance_duration_seconds', 'histogram', 'Time to sign one SVID (CSR check included for X.509), by SVID type and result.', ['svid_type', 'result'], LATENCY_BUCKETS),
  issued: f('svidscope_server_svids_issued_total', 'counter', 'SVIDs signed, by SVID type (x509, jwt, agent_x509).', ['svid_type']),
  signingFailures: f('svidscope_server_svid_signing_failures_total', 'counter', 'SVID requests refused or failed, by SVID type and bounded reason: the error code (csr-invalid, internal, signing-worker-failed, …; CSRs of a batch shed after authentication as server-overloaded or deadline-expired count one each), or permission_denied for an entry the agent is not authorized for.', ['svid_type', 'reason']),
  csrs: f('svidscope_server_csrs_received_total', 'counter', 'CSRs received, by result (valid, invalid).', ['result']),
  attestations: f('svidscope_server_attestations_total', 'counter', 'Node attestation attempts by method, result and bounded reason.', ['method', 'result', 'reason']),
  keyPhase: f('svidscope_server_signing_keys', 'gauge', 'Signing keys this server holds, by kind (x509, jwt) and phase (prepared, active, old).', ['kind', 'phase']),
  keyExpiry: f('svidscope_server_signing_key_expiry_timestamp_seconds', 'gauge', 'Earliest expiry of this server\'s signing keys, by kind and phase (Unix time).', ['kind', 'phase']),
  activationDue: f('svidscope_server_authority_activation_due_timestamp_seconds', 'gauge', 'When the next signing key of this kind must be active (Unix time): the active key\'s activate point, or its prepare point while a successor an operator prepared ahead of the schedule (a key-compromise response) waits for activation.', ['kind']),
  upstreamExpiry: f('svidscope_server_upstream_authority_expiry_timestamp_seconds', 'gauge', 'notAfter of the upstream authority this server\'s X.509 CAs are signed under (Unix time); 0 without one. No CA outlives it.', []),
  bundleSequence: f('svidscope_server_bundle_sequence', 'gauge', 'Sequence number of the trust domain bundle as last published or read.', []),
  bundleUpdated: f('svidscope_server_bundle_last_update_timestamp_seconds', 'gauge', 'When the trust domain bundle last changed (Unix time).', []),
  bundleAuthorities: f('svidscope_server_bundle_authorities', 'gauge', 'Authorities in the trust domain bundle, by kind.', ['kind']),
  datastoreDuration: f('svidscope_server_datastore_operation_duration_seconds', 'histogram', 'Datastore operation latency by operation and result.', ['operation', 'result'], LATENCY_BUCKETS),
  agentAuthRefusals: f('svidscope_server_agent_auth_refusals_total', 'counter', 'Agent API calls refused at authentication, by reason (not_attested, banned, stale_serial: an SVID replaced by renewal or re-attestation).', ['reason']),
  limitRefusals: f('svidscope_server_limit_refusals_total', 'counter', 'Requests refused by a limit, by the limit\'s name: agent API limits by config key (jwt_audience_max_count, jwt_audience_max_bytes, signing_queue_max_csrs), agent calls dropped because their deadline had passed (expired_deadline), and federated bundle refreshes whose endpoint chain hit a path-building limit (x509_path_signature_checks, x509_path_visited_certificates, x509_path_chain_length).', ['limit']),
  agents: f('svidscope_server_attested_agents', 'gauge', 'Attested agents by state (active, banned), from this server\'s agent cache (current as of the last cache_reload_interval).', ['state']),
  entries: f('svidscope_server_registration_entries', 'gauge', 'Registration entries in the server\'s entry view.', []),
  agentAuthorizedEntries: f('svidscope_server_agent_authorized_entries', 'histogram', 'Authorized entries per agent, observed at each entry sync (the fleet\'s distribution, no per-agent label).', [], ENTRY_COUNT_BUCKETS),
  authorityLifecycle: f('svidscope_server_authority_lifecycle_total', 'counter', 'Key-compromise lifecycle steps asked of this server through the admin API, by key kind (x509, jwt, or x509_upstream: an upstream X.509 authority named by subject key id, taint and revoke only), step (prepare, activate, taint, revoke) and result (ok, refused: out of order, still in use or no such key, error).', ['kind', 'step', 'result']),
  authorities: f('svidscope_server_authorities', 'gauge', 'Signing keys this server holds, by kind (x509, jwt) and lifecycle state: prepared, active, old, or tainted and revoked (which take precedence over the phase: a tainted old key counts as tainted; an X.509 CA signed under a tainted upstream authority counts as tainted). Kind x509_upstream: the upstream X.509 authorities (active = the configured one or one the active or prepared CA chains to, old = only still in the bundle, tainted, revoked).', ['kind', 'state']),
  entrySyncs: f('svidscope_server_entry_syncs_total', 'counter', 'Entry syncs answered, by kind: unchanged (the agent\'s view was current), incremental (only the changed entries and the deleted ids sent) or full (the whole authorized list sent: agents of the first protocol, and periodic consistency checks).', ['kind']),
  watchStreams: f('svidscope_server_watch_streams', 'gauge', 'Open change streams (WatchChanges): agents told of entry and bundle changes as they happen, bounded by watch_max_streams.', []),
  changeNotifications: f('svidscope_server_change_notifications_total', 'counter', 'Change notifications written to watch streams, by what changed (entries: only the agents that can reach the entry; bundle: every stream).', ['reason']),
  watchStreamsClosed: f('svidscope_server_watch_streams_closed_total', 'counter', 'Watch streams the server closed, by reason: slow_consumer (unsent notifications reached the per-stream bound), not_attested, banned, stale_serial (re-authentication failed), svid_expired, shutdown.', ['reason']),
  authorizationIndex: f('svidscope_server_authorization_index_size', 'gauge', 'Size of the in-memory authorization index, by index: entries, parents (distinct parent IDs) and aliases (node-alias entries).', ['index']),
  signingWorkers: f('svidscope_server_signing_workers', 'gauge', 'Signing worker threads (signing_workers), by state: busy (checking and signing a batch of CSRs) or idle. All busy with batches queued means issuance is at its CPU ceiling.', ['state']),
  signingQueuedBatches: f('svidscope_server_signing_queued_batches', 'gauge', 'Batches of CSRs (up to 32 each) admitted and waiting for a signing worker.', []),
  signingWorkerRestarts: f('svidscope_server_signing_worker_restarts_total', 'counter', 'Signing worker threads that exited and were replaced; each failed the batch it was signing (signing-worker-failed).', []),
  buildInfo: f('svidscope_build_info', 'gauge', 'Constant 1, labelled with the running version and component.', ['version', 'component']),
} as const;

export const agentFamilies = {
  syncDuration: f('svidscope_agent_sync_duration_seconds', 'histogram', 'Duration of one sync with the server (entries, bundles, minting), by result.', ['result'], PROPAGATION_BUCKETS),
  syncFailures: f('svidscope_agent_sync_failures_total', 'counter', 'Failed syncs with the server.', []),
  lastSync: f('svidscope_agent_last_successful_sync_timestamp_seconds', 'gauge', 'When the last sync with the server succeeded (Unix time; 0 before the first one).', []),
  workloadRequests: f('svidscope_agent_workload_api_requests_total', 'counter', 'Workload API requests (first message for streams) by method and gRPC status code name.', ['method', 'code']),
  workloadDuration: f('svidscope_agent_workload_api_request_duration_seconds', 'histogram', 'Workload API latency by method: unary calls, or time to a stream\'s first message.', ['method'], LATENCY_BUCKETS),
  openStreams: f('svidscope_agent_workload_api_open_streams', 'gauge', 'Workload API streams open now, by method.', ['method']),
  svidsCached: f('svidscope_agent_svids_cached', 'gauge', 'X509-SVIDs held in the agent cache.', []),
  entriesAuthorized: f('svidscope_agent_authorized_entries', 'gauge', 'Registration entries this agent is authorized for.', []),
  rotations: f('svidscope_agent_svid_rotations_total', 'counter', 'X509-SVIDs (re)minted by the agent, by reason (new, scheduled, ca_change, entry_change, forced, tainted).', ['reason']),
  rotationFailures: f('svidscope_agent_svid_rotation_failures_total', 'counter', 'X509-SVID mint or rotation attempts that failed, by bounded reason.', ['reason']),
  ttlRemainingAtRotation: f('svidscope_agent_svid_ttl_remaining_ratio_at_rotation', 'histogram', 'Fraction of the old SVID\'s lifetime left when it was replaced.', [], FRACTION_BUCKETS),
  bundleLag: f('svidscope_agent_bundle_propagation_seconds', 'histogram', 'Time from a new bundle at the server to this agent serving it, by trust domain kind (own, federated).', ['bundle'], PROPAGATION_BUCKETS),
  bundleSequence: f('svidscope_agent_bundle_sequence', 'gauge', 'Sequence number of the own trust domain bundle the agent serves.', []),
  federatedBundleSequence: f('svidscope_agent_federated_bundle_sequence', 'gauge', 'Sequence number of each federated trust domain\'s bundle the agent serves (the peer\'s own sequence, as its server stored it); trust_domain is bounded by the federation relationships its entries name. Absent until the agent serves a bundle of that domain.', ['trust_domain']),
  svidExpiry: f('svidscope_agent_svid_earliest_expiry_timestamp_seconds', 'gauge', 'Earliest notAfter among the cached X509-SVIDs (Unix time).', []),
  agentSvidExpiry: f('svidscope_agent_own_svid_expiry_timestamp_seconds', 'gauge', 'notAfter of the agent\'s own SVID (Unix time).', []),
  limitRefusals: f('svidscope_agent_limit_refusals_total', 'counter', 'Workload API requests refused by a limit, by its name (jwt_audience_max_count, jwt_audience_max_bytes, workload_api_max_request_bytes, workload_api_max_streams_per_connection).', ['limit']),
  workloadConnections: f('svidscope_agent_workload_api_connections', 'gauge', 'Workload API connections open now (each holds a socket and a /proc descriptor), bounded by workload_api_max_connections.', []),
  workloadConnectionLimit: f('svidscope_agent_workload_api_connection_limit', 'gauge', 'The configured Workload API connection limits, by limit (total = workload_api_max_connections, per_uid = workload_api_max_connections_per_uid).', ['limit']),
  workloadRefusals: f('svidscope_agent_workload_api_refusals_total', 'counter', 'Workload API connections or requests the agent refused, by reason: per_uid_limit, total_limit, first_request_timeout (closed with no request in workload_api_first_request_timeout), emfile (out of file descriptors), exec_after_connect (the caller exec\'d another program since it connected).', ['reason']),
  jwtCacheBytes: f('svidscope_agent_jwt_cache_bytes', 'gauge', 'Bytes held by the agent\'s JWT-SVID cache (keys and tokens), bounded by jwt_cache_max_bytes.', []),
  svidCacheEvictions: f('svidscope_agent_x509_svid_cache_evictions_total', 'counter', 'X509-SVIDs dropped from the agent cache to stay within x509_svid_cache_max_size (entries no connected workload is subscribed to and none asked for within x509_svid_cache_idle, least recently used first); minted again when a workload asks.', []),
  svidCacheMaxSize: f('svidscope_agent_x509_svid_cache_max_size', 'gauge', 'The bound on cached X509-SVIDs (x509_svid_cache_max_size; 0 = none). Compare with svidscope_agent_svids_cached, which may exceed it by what connected workloads are subscribed to.', []),
  jwtCacheEvictions: f('svidscope_agent_jwt_cache_evictions_total', 'counter', 'JWT-SVIDs dropped from the agent cache to stay within jwt_cache_max_bytes or its entry cap.', []),
  serverFailovers: f('svidscope_agent_server_failovers_total', 'counter', 'Times the agent left an unreachable server for the next address of server_address.', []),
  taintedSvids: f('svidscope_agent_tainted_svids', 'gauge', 'Unexpired SVIDs the agent holds that an authority its server marked tainted signed, by kind: x509 (workload X509-SVIDs and the agent\'s own) and jwt (cached JWT-SVIDs). 0 once the taint response is done; an agent cut off from its server cannot know of a taint and reports 0.', ['kind']),
  taintClear: f('svidscope_agent_taint_clear_seconds', 'histogram', 'Time from the agent first holding an SVID signed by a tainted authority (the first sync that told it of the taint) to holding none.', [], PROPAGATION_BUCKETS),
  svidsByAuthority: f('svidscope_agent_svids_by_authority', 'gauge', 'Unexpired SVIDs the agent holds per signing authority: kind x509 (authority_key_id = the signing CA\'s subject key identifier in hex, the key id `svidscope authority` shows) or jwt (the kid). A handful of keys live at a time; beyond 16 per kind the rest count as "other"; "unknown" = no key identifier.', ['kind', 'authority_key_id']),
  oldestSvidByAuthorityAge: f('svidscope_agent_oldest_svid_by_authority_age_seconds', 'gauge', 'Age of the oldest unexpired SVID the agent holds per signing authority (same labels as svidscope_agent_svids_by_authority).', ['kind', 'authority_key_id']),
  entrySyncs: f('svidscope_agent_entry_syncs_total', 'counter', 'Entry syncs with the server, by kind of answer: unchanged, incremental (a delta applied) or full (the whole list: first sync, periodic or after a failed consistency check, or a server without deltas).', ['kind']),
  pushConnected: f('svidscope_agent_push_stream_connected', 'gauge', '1 while the agent\'s change stream (WatchChanges) to the server is open, else 0 (the agent then relies on polling every sync_interval).', []),
  pushNotifications: f('svidscope_agent_push_notifications_total', 'counter', 'Change notifications received on the watch stream, by kind (entries, bundle, initial).', ['kind']),
  attested: f('svidscope_agent_attested', 'gauge', '1 when the agent holds a valid agent SVID, else 0.', []),
  buildInfo: serverFamilies.buildInfo,
} as const;

/** Server federation (bundle refresh from peer bundle endpoints); `trust_domain` is bounded by the configured relationships. */
export const federationFamilies = {
  bundleSequence: f('svidscope_federation_bundle_sequence', 'gauge', 'Sequence number of the stored bundle of each federated trust domain.', ['trust_domain']),
  lastRefresh: f('svidscope_federation_bundle_last_refresh_timestamp_seconds', 'gauge', 'When a fetch from the federated trust domain\'s bundle endpoint last succeeded (Unix time; absent before the first success).', ['trust_domain']),
  refreshErrors: f('svidscope_federation_bundle_refresh_errors_total', 'counter', 'Failed federated bundle refreshes by bounded reason (connect, timeout, tls, authentication, no_trust_bundle, http_status, too_large, malformed, sequence_regressed, datastore).', ['trust_domain', 'reason']),
  age: f('svidscope_federation_bundle_age_seconds', 'gauge', 'Seconds since the stored federated bundle was last confirmed current by its bundle endpoint (or stored, if never confirmed).', ['trust_domain']),
  authorityExpiry: f('svidscope_federation_bundle_authority_expiry_timestamp_seconds', 'gauge', 'Latest notAfter among the X.509 authorities of the stored federated bundle (Unix time): past it no X509-SVID of that domain verifies.', ['trust_domain']),
} as const;

/**
 * Default Node.js metrics of prom-client that svidscope does not serve: the gauges named `_total`
 * (promtool's lint rejects them), and the per-type handle, request and resource counts, which list
 * every open handle on the event loop at each scrape: a server holding 10,000 agent connections
 * spent ≈ 25–35 ms per scrape on them (measured with 18,000 sockets), a stall every sync behind it
 * waits out. The connection counts that matter are svidscope's own gauges.
 */
export const DROPPED_DEFAULT_METRICS = [
  'nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total',
  'nodejs_active_handles', 'nodejs_active_requests', 'nodejs_active_resources',
] as const;

const GRPC_STATUS_NAMES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'] as const;

/**
 * Workload API statuses that mean the agent failed the caller (the Workload API SLO's default
 * error codes); a refusal such as PERMISSION_DENIED is the caller's, not the agent's.
 */
export const WORKLOAD_API_SERVER_ERROR_CODES = ['UNKNOWN', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS'] as const;

/** The `code` label value: the gRPC status name, as SPIRE labels its calls. */
export function grpcStatusName(code: number): string {
  return GRPC_STATUS_NAMES[code] ?? 'UNKNOWN';
}
