/**
 * The bounded set of reasons a probe can fail with. Each value is a Prometheus label value
 * (`probe_svid_failure_reason{reason}`, `svidscope_prober_probe_failures_total{reason}`), so the
 * set is fixed and documented in docs/probes.md; anything unforeseen is `internal`.
 */
import * as grpc from '@grpc/grpc-js';
import { errorCatalog, GrpcStatus, isSvidscopeError, type ErrorCode } from '../common/errors/catalog.js';
import { isWorkloadApiError } from '../identity-plane/workload-api/index.js';

export const FAILURE_REASONS = [
  'socket_missing',
  'unavailable',
  'timeout',
  'permission_denied',
  'api_error',
  'expired',
  'not_yet_valid',
  'rotation_overdue',
  'wrong_trust_domain',
  'wrong_spiffe_id',
  'untrusted_authority',
  'invalid_svid',
  'audience_mismatch',
  'jwt_invalid',
  'handshake_failed',
  'peer_rejected',
  'endpoint_down',
  'malformed_bundle',
  'stale_bundle',
  'internal',
] as const;

export type FailureReason = (typeof FAILURE_REASONS)[number];

/** One line per reason, for docs/probes.md and `svidscope probe --help`. */
export const REASON_MEANING: Record<FailureReason, string> = {
  socket_missing: 'the Workload API unix socket does not exist',
  unavailable: 'the Workload API refused the connection or answered Unavailable',
  timeout: 'no answer within the probe timeout (gRPC DeadlineExceeded, stalled endpoint)',
  permission_denied: 'the Workload API answered PermissionDenied: the caller has no identity',
  api_error: 'the Workload API answered another error status or a message that breaks the protocol',
  expired: 'the SVID (or a certificate of its chain, or the JWT) is expired, or the agent says its cached SVIDs expired',
  not_yet_valid: 'the SVID or JWT is not valid yet, beyond the clock-skew tolerance',
  rotation_overdue: 'the SVID has less than min_ttl_ratio of its lifetime left: rotation is late',
  wrong_trust_domain: 'the SVID belongs to another trust domain than the expected one',
  wrong_spiffe_id: 'the SVID (or bundle endpoint) SPIFFE ID is not the expected one',
  untrusted_authority: 'the chain does not lead to an authority of the bundle (or no bundle for its trust domain)',
  invalid_svid: 'the SVID breaks an X509-SVID rule (URI SAN, CA flag, key usage, key mismatch)',
  audience_mismatch: 'the JWT-SVID does not carry the expected audience',
  jwt_invalid: 'the JWT-SVID is malformed, its key is unknown or its signature does not verify',
  handshake_failed: 'the mTLS handshake or the round trip over it did not complete (not TLS 1.3, reset)',
  peer_rejected: 'an mTLS side refused its peer: untrusted trust domain, bad chain, or SPIFFE ID not allowed',
  endpoint_down: 'the bundle endpoint is unreachable or answered a non-2xx status',
  malformed_bundle: 'the bundle document is not a valid SPIFFE bundle',
  stale_bundle: 'the bundle holds no currently valid X.509 authority, or its newest authority is older than max_age',
  internal: 'an unexpected fault in the prober (see its logs)',
};

/** A probe step failed for a known reason; `message` is for humans and never becomes a label. */
export class ProbeFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ProbeFailure';
  }
}

const X509_RULES = new Set<ErrorCode>([
  'empty-chain', 'no-certificates', 'malformed-certificate', 'malformed-private-key', 'no-private-key', 'key-mismatch',
  'missing-uri-san', 'multiple-uri-sans', 'invalid-spiffe-id', 'leaf-root-path', 'leaf-is-ca', 'leaf-key-cert-sign',
  'leaf-crl-sign', 'leaf-no-digital-signature', 'signing-cert-not-ca', 'signing-cert-no-key-cert-sign', 'unsupported-key',
]);
const JWT_RULES = new Set<ErrorCode>([
  'malformed', 'unsupported-alg', 'bad-typ', 'missing-kid', 'unknown-kid', 'missing-sub', 'invalid-sub', 'missing-exp',
  'missing-aud', 'no-bundle', 'signature-invalid', 'empty-expected-audience',
]);
const BUNDLE_RULES = new Set<ErrorCode>([
  'malformed-json', 'keys-missing', 'invalid-jwk', 'jwt-authority-missing-kid', 'unsupported-key-type', 'x509-entry-not-single-cert',
  'bundle-trust-domain-mismatch', 'not-pem',
]);

/** The reason of a catalogue error raised by the foundation's validators. */
export function reasonForCode(code: ErrorCode): FailureReason {
  if (code === 'expired') return 'expired';
  if (code === 'not-yet-valid' || code === 'issued-in-future') return 'not_yet_valid';
  // A chain path building gave up on is not shown to lead to an authority.
  if (code === 'unknown-authority' || code === 'no-bundle-for-trust-domain' || code === 'bundle-required' || code === 'x509-path-budget') return 'untrusted_authority';
  if (code === 'audience-mismatch') return 'audience_mismatch';
  if (code === 'permission-denied' || code === 'workload-no-identity') return 'permission_denied';
  if (X509_RULES.has(code)) return 'invalid_svid';
  if (JWT_RULES.has(code)) return 'jwt_invalid';
  if (BUNDLE_RULES.has(code)) return 'malformed_bundle';
  if (code === 'io-error' || errorCatalog[code].grpc === GrpcStatus.UNAVAILABLE) return 'unavailable';
  return 'internal';
}

/**
 * Maps any error a probe step threw to a reason. Workload API errors go by gRPC status (the
 * standard's error table, so any SPIFFE agent is read alike); within Unavailable, the code says
 * more: no socket, svidscope's agent's cached SVIDs expired while its server was away (its code
 * trailer), or a message the client discarded because it broke an SVID rule (the rule's code).
 */
export function classifyError(err: unknown): { reason: FailureReason; message: string } {
  if (err instanceof ProbeFailure) return { reason: err.reason, message: err.message };
  const message = err instanceof Error ? err.message : String(err);
  if (isWorkloadApiError(err)) {
    switch (err.status) {
      case grpc.status.PERMISSION_DENIED:
        return { reason: 'permission_denied', message };
      case grpc.status.DEADLINE_EXCEEDED:
        return { reason: 'timeout', message };
      case grpc.status.UNAVAILABLE:
      case grpc.status.CANCELLED: {
        if (err.code === 'workload-api-socket-missing') return { reason: 'socket_missing', message };
        if (err.code === 'workload-svid-expired') return { reason: 'expired', message };
        return { reason: reasonForCode(err.code), message };
      }
      default:
        return { reason: 'api_error', message };
    }
  }
  if (isSvidscopeError(err)) return { reason: reasonForCode(err.code), message };
  return { reason: 'internal', message };
}
