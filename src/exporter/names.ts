/**
 * Every metric name, label value set and bucket layout of the exporter, in one place (SPIRE's
 * `telemetry/names.go` rule: no scattered literals). docs/exporter.md documents each family.
 */

import { PROPAGATION_BUCKETS } from '../common/telemetry/names.js';

export const PREFIX = 'svidscope_exporter_';

export const METRIC = {
  remainingLifetime: `${PREFIX}remaining_lifetime_seconds`,
  earliestExpiry: `${PREFIX}earliest_expiry_timestamp_seconds`,
  svidExpiry: `${PREFIX}svid_expiry_timestamp_seconds`,
  svidsByAuthority: `${PREFIX}svids_by_authority`,
  oldestSvidAge: `${PREFIX}oldest_svid_age_seconds`,
  rotations: `${PREFIX}rotations_total`,
  rotationRemainingLifetime: `${PREFIX}rotation_remaining_lifetime_seconds`,
  bundleSequence: `${PREFIX}bundle_sequence`,
  bundleAuthorities: `${PREFIX}bundle_authorities`,
  bundleLastChange: `${PREFIX}bundle_last_change_timestamp_seconds`,
  bundleRefreshHint: `${PREFIX}bundle_refresh_hint_seconds`,
  propagationLag: `${PREFIX}bundle_propagation_lag_seconds`,
  registrationEntries: `${PREFIX}registration_entries`,
  entriesWithoutSvid: `${PREFIX}registration_entries_without_svid`,
  agents: `${PREFIX}agents`,
  sourceUp: `${PREFIX}source_up`,
  sourceLastSuccess: `${PREFIX}source_last_success_timestamp_seconds`,
  sourceUpdates: `${PREFIX}source_updates_total`,
  sourceErrors: `${PREFIX}source_errors_total`,
  scrapeDuration: `${PREFIX}scrape_duration_seconds`,
  seriesDropped: `${PREFIX}series_dropped_total`,
  scrapeTruncated: `${PREFIX}scrape_truncated_total`,
  revocationPropagation: `${PREFIX}revocation_propagation_seconds`,
  revokedAuthorityHolders: `${PREFIX}revoked_authority_holders`,
} as const;

/** What a lifetime or rotation series is about. */
export const KINDS = ['x509_svid', 'ca', 'jwt_authority'] as const;
export type CredentialKind = (typeof KINDS)[number];

/** Why a source failed; a fixed set so `source_errors_total` stays bounded. */
export const ERROR_REASONS = [
  'unavailable', // endpoint or socket unreachable, connection refused, agent/server down
  'permission_denied', // the Workload API or admin socket refused this caller
  'invalid_argument', // the peer rejected the request (e.g. security header)
  'timeout', // no answer within the source's timeout
  'stream_ended', // a Workload API stream ended (reconnecting)
  'http_status', // a bundle endpoint answered with a non-200 status
  'tls', // TLS handshake or peer verification failed
  'parse', // a document, certificate or message could not be parsed
  'io', // a file or directory could not be read
  'limit', // a size or count limit of the source was hit
  'other',
] as const;
export type ErrorReason = (typeof ERROR_REASONS)[number];

/** Why series were left out of a scrape. */
export const DROP_REASONS = ['series_cap', 'per_svid_cap', 'authority_cap'] as const;

/** authority_key_id of SVIDs whose leaf has no authorityKeyIdentifier, and of the key ids past the cap (the agents' values). */
export const AUTHORITY_UNKNOWN = 'unknown';
export const AUTHORITY_OTHER = 'other';
export type DropReason = (typeof DROP_REASONS)[number];

export const AGENT_STATUSES = ['active', 'banned', 'expired'] as const;
export type AgentStatus = (typeof AGENT_STATUSES)[number];

const MIN = 60;
const HOUR = 3600;
const DAY = 86400;

/**
 * Remaining lifetime, minutes to a year. The `0` bucket counts what has expired already; the
 * boundaries at 1 h, 1 d and 7 d are the usual alert thresholds (exact classic-histogram SLIs).
 */
export const LIFETIME_BUCKETS: readonly number[] = [0, MIN, 5 * MIN, 15 * MIN, 30 * MIN, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 30 * DAY, 90 * DAY, 365 * DAY];

/**
 * Bundle propagation: agents sync every few seconds; minutes mean something is stuck. The same
 * buckets as the agent's own `svidscope_agent_bundle_propagation_seconds`, so the two compare.
 */
export const LAG_BUCKETS: readonly number[] = PROPAGATION_BUCKETS;

export const SCRAPE_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
