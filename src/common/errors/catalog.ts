/**
 * The one catalogue of svidscope error codes.
 *
 * Codes are stable literal strings: for SPIFFE rules they are exactly the conformance categories
 * (`../shared/conformance/README.md`), every other code follows the same kebab-case
 * `<area>-<condition>` form. Each row says how the error surfaces on the wire (gRPC status),
 * on the command line (exit code) and over HTTP. `docs/errors.md` lists every row; a test keeps
 * the two in step.
 */

/** gRPC status codes (numeric values from the gRPC spec; kept here so `common/` needs no grpc-js import). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** CLI exit codes: 1 = the input was checked and is invalid; 2 = usage/config; 3 = I/O; 4 = remote refused; 5 = internal. */
export const ExitCode = { OK: 0, INVALID: 1, USAGE: 2, IO: 3, REMOTE: 4, INTERNAL: 5 } as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface CatalogRow {
  /** What the code means, in one line (used by docs/errors.md). */
  readonly meaning: string;
  readonly grpc: GrpcStatusCode;
  readonly exit: ExitCodeValue;
  readonly http: number;
}

const invalid = (meaning: string): CatalogRow => ({ meaning, grpc: GrpcStatus.INVALID_ARGUMENT, exit: ExitCode.INVALID, http: 400 });
const denied = (meaning: string): CatalogRow => ({ meaning, grpc: GrpcStatus.PERMISSION_DENIED, exit: ExitCode.INVALID, http: 403 });
/** A request the caller must change (its configuration, flags or token): not a rule of the checked input. */
const badRequest = (meaning: string): CatalogRow => ({ meaning, grpc: GrpcStatus.INVALID_ARGUMENT, exit: ExitCode.USAGE, http: 400 });
/** A remote that cannot serve now; clients retry. */
const retryLater = (meaning: string): CatalogRow => ({ meaning, grpc: GrpcStatus.UNAVAILABLE, exit: ExitCode.REMOTE, http: 503 });

export const errorCatalog = {
  // SPIFFE ID, trust domain and path (conformance categories)
  'empty': invalid('the SPIFFE ID is empty'),
  'wrong-scheme': invalid('the scheme is not lowercase "spiffe"'),
  'missing-trust-domain': invalid('the trust domain is missing'),
  'bad-trust-domain-char': invalid('the trust domain holds a character outside a-z 0-9 . - _'),
  'bad-path-char': invalid('a path segment holds a character outside a-z A-Z 0-9 . - _'),
  'bad-path-segment-dot': invalid('a path segment is "." or ".."'),
  'trailing-slash': invalid('the path ends with a slash'),
  'empty-segment': invalid('the path holds an empty segment'),
  'no-leading-slash': invalid('the path does not start with a slash'),
  'id-too-long': invalid('the SPIFFE ID or trust domain exceeds its length limit'),

  // X509-SVID (conformance categories)
  'empty-chain': invalid('the certificate chain is empty'),
  'no-certificates': invalid('the input holds no certificate'),
  'not-pem': invalid('the input is not PEM'),
  'malformed-certificate': invalid('a certificate cannot be decoded'),
  'malformed-private-key': invalid('the private key cannot be decoded'),
  'no-private-key': invalid('the input holds no private key'),
  'key-mismatch': invalid('the private key does not match the leaf certificate'),
  'missing-uri-san': invalid('the leaf certificate has no URI SAN'),
  'multiple-uri-sans': invalid('the leaf certificate has more than one URI SAN'),
  'invalid-spiffe-id': invalid('the URI SAN is not a valid SPIFFE ID'),
  'leaf-root-path': invalid('the leaf SPIFFE ID has no path'),
  'leaf-is-ca': invalid('the leaf certificate has CA=true'),
  'leaf-key-cert-sign': invalid('the leaf certificate has the keyCertSign key usage'),
  'leaf-crl-sign': invalid('the leaf certificate has the cRLSign key usage'),
  'leaf-no-digital-signature': invalid('the leaf certificate lacks the digitalSignature key usage'),
  'signing-cert-not-ca': invalid('a signing certificate has CA=false'),
  'signing-cert-no-key-cert-sign': invalid('a signing certificate lacks the keyCertSign key usage'),
  'bundle-required': invalid('no bundle was given to verify against'),
  'no-bundle-for-trust-domain': invalid('no bundle holds authorities for the SVID trust domain'),
  'unknown-authority': invalid('the chain does not lead to an authority of the bundle'),
  'expired': invalid('the SVID or a certificate of its chain has expired'),
  'not-yet-valid': invalid('the SVID or a certificate of its chain is not valid yet'),
  'x509-path-budget': invalid('path building stopped at a limit (signature checks, certificates visited, chain length): the chain is refused; the message names the limit'),

  // JWT-SVID (conformance categories; `expired`/`not-yet-valid` shared with X509 above)
  'malformed': invalid('the token is not a well-formed compact JWS'),
  'unsupported-alg': invalid('the token algorithm is not on the allow-list'),
  'bad-typ': invalid('the token typ header is neither JWT nor JOSE'),
  'missing-kid': invalid('the token header has no kid'),
  'unknown-kid': invalid('no JWT authority of the bundle has the token kid'),
  'missing-sub': invalid('the token has no sub claim'),
  'invalid-sub': invalid('the sub claim is not a valid SPIFFE ID'),
  'missing-exp': invalid('the token has no exp claim'),
  'missing-aud': invalid('the token has no aud claim'),
  'empty-expected-audience': invalid('no expected audience was given'),
  'audience-mismatch': invalid('no expected audience is in the token aud claim'),
  'issued-in-future': invalid('iat or nbf lies in the future beyond the leeway'),
  'no-bundle': invalid('no JWT bundle for the sub trust domain'),
  'signature-invalid': invalid('the token signature does not verify'),

  // Trust bundles (conformance categories)
  'malformed-json': invalid('the bundle document is not JSON'),
  'keys-missing': invalid('the bundle document has no keys member'),
  'invalid-jwk': invalid('a JWK of the bundle is invalid'),
  'jwt-authority-missing-kid': invalid('a JWT authority has no kid'),
  'unsupported-key-type': invalid('a key type is not supported'),
  'x509-entry-not-single-cert': invalid('an x509-svid entry does not hold exactly one certificate'),
  'bundle-trust-domain-mismatch': invalid('the bundle belongs to another trust domain'),

  // Minting and CA
  'csr-invalid': invalid('the CSR is missing, cannot be decoded or its signature does not verify'),
  'ttl-invalid': invalid('the requested TTL is out of bounds'),
  'jwt-audience-limit': invalid('a JWT-SVID request has more audiences, or a longer audience, than the configured limit (the message names it)'),
  'ca-key-mismatch': invalid('the CA key does not match the CA certificate'),
  'unsupported-key': invalid('the key algorithm is not supported for this use'),
  'authority-order': { meaning: 'the authority lifecycle step is out of order (activate needs a prepared key, taint a non-active one, revoke a tainted one)', grpc: GrpcStatus.FAILED_PRECONDITION, exit: ExitCode.REMOTE, http: 409 },
  'authority-in-use': { meaning: 'the upstream authority is still in use: it is the configured ca.upstream, or the active or prepared X.509 CA chains to it (activate a CA under another upstream authority first)', grpc: GrpcStatus.FAILED_PRECONDITION, exit: ExitCode.REMOTE, http: 409 },

  // Workload API connections (the agent's local socket)
  'workload-api-connection-limit': retryLater('the agent closed a Workload API connection: at accept, before any gRPC exchange, because its uid or the agent was at its connection limit; or because it sent no request within the first-request deadline (the log and the refusal metric name which)'),
  'workload-api-fd-exhausted': { meaning: 'the agent ran out of file descriptors (EMFILE/ENFILE) accepting or pinning a Workload API caller; the connection was closed and the agent reports not ready until descriptors are free again', grpc: GrpcStatus.UNAVAILABLE, exit: ExitCode.IO, http: 503 },
  'workload-header-missing': badRequest('a Workload API request lacks the workload.spiffe.io security header'),
  'workload-no-identity': denied('no registration entry matches the Workload API caller ("no identity issued")'),
  'workload-svid-expired': retryLater('every cached X509-SVID for the caller expired while the agent could not reach its server'),
  'workload-api-socket-missing': retryLater('no socket at the Workload API address (is the agent running?)'),
  'workload-api-response-invalid': retryLater('the Workload API answered with a message that breaks the protocol (no SVID or bundle in it, or a part that does not parse); the client discarded it and retries'),
  'workload-api-stream-ended': retryLater('a Workload API stream ended without an error status; clients reconnect'),
  'workload-exec-after-connect': denied('the process that connected to the Workload API has executed another program since it connected: its path and sha256 selectors would describe a program other than the one that holds the connection, so the request is refused'),

  // Node attestation and agent authentication (the server's node API)
  'join-token-invalid': badRequest('the join token is empty or holds characters a SPIFFE ID path cannot carry'),
  'join-token-unknown': badRequest('the join token does not exist or has already been used'),
  'join-token-expired': badRequest('the join token expired before it was used'),
  'node-attestation-unsupported': badRequest('the node attestation type is not supported (use join_token)'),
  'agent-not-attested': denied('the agent has no attestation record (never attested, or evicted): it must attest again'),
  'agent-banned': denied('the agent is banned'),
  'agent-svid-stale': denied('the agent presented an SVID that is no longer its current one (renewed, re-attested or evicted since): it must use the latest SVID or attest again'),

  // Chaos ledger (replayed as the caller, so only the caller may have written it)
  'chaos-ledger-untrusted': denied('the chaos dir or ledger is a symlink, owned by another user, or writable by group/others'),
  'chaos-ledger-step-invalid': denied('a ledger step is not one the project writes for this stack'),
  'chaos-target-invalid': { meaning: 'the experiment names a target this stack cannot serve for the fault (not a server or agent, not running, no socket, entry, key or peer for it in endpoints.json or the server); fix the experiment or the stack', grpc: GrpcStatus.FAILED_PRECONDITION, exit: ExitCode.USAGE, http: 409 },
  'chaos-fault-failed': { meaning: 'a fault, drill or rollback did not take effect (a process did not die or come back, a cgroup or fault relay refused, a drill did not reach its state within its bound); the message names the step', grpc: GrpcStatus.ABORTED, exit: ExitCode.REMOTE, http: 500 },
  'prometheus-query-failed': { meaning: 'Prometheus or Alertmanager refused or failed a query the chaos runner needs (the message names the query)', grpc: GrpcStatus.UNAVAILABLE, exit: ExitCode.REMOTE, http: 502 },

  // General
  'config-invalid': badRequest('the configuration is invalid'),
  'usage': badRequest('the command line is invalid'),
  'io-error': { meaning: 'a file or socket cannot be read or written', grpc: GrpcStatus.UNAVAILABLE, exit: ExitCode.IO, http: 503 },
  'not-found': { meaning: 'the record does not exist', grpc: GrpcStatus.NOT_FOUND, exit: ExitCode.REMOTE, http: 404 },
  'already-exists': { meaning: 'the record exists already', grpc: GrpcStatus.ALREADY_EXISTS, exit: ExitCode.REMOTE, http: 409 },
  'permission-denied': denied('the caller is not authorized for this request'),
  'unauthenticated': { meaning: 'the caller presented no valid credential', grpc: GrpcStatus.UNAUTHENTICATED, exit: ExitCode.REMOTE, http: 401 },
  'unavailable': retryLater('a dependency is unreachable; retry later'),
  'failed-precondition': { meaning: 'the request cannot be served in the current state of the record or service (the message says which)', grpc: GrpcStatus.FAILED_PRECONDITION, exit: ExitCode.REMOTE, http: 409 },
  'aborted': { meaning: 'the request lost a race with a concurrent change; retry', grpc: GrpcStatus.ABORTED, exit: ExitCode.REMOTE, http: 409 },
  'malformed-message': invalid('a protocol message (protobuf) cannot be decoded; the message names the field or the rule'),
  'input-too-large': { meaning: 'an input (file, document, response) is larger than its limit; the message names the limit', grpc: GrpcStatus.INVALID_ARGUMENT, exit: ExitCode.INVALID, http: 413 },
  'unimplemented': { meaning: 'the method is not implemented (the Workload API WIT-SVID methods)', grpc: GrpcStatus.UNIMPLEMENTED, exit: ExitCode.REMOTE, http: 501 },
  'internal': { meaning: 'an unexpected fault; see the logs', grpc: GrpcStatus.INTERNAL, exit: ExitCode.INTERNAL, http: 500 },

  // Server load (admission control of the agent API)
  'server-overloaded': { meaning: 'the server has as many CSRs waiting to be signed as signing_queue_max_csrs allows; retry later', grpc: GrpcStatus.RESOURCE_EXHAUSTED, exit: ExitCode.REMOTE, http: 503 },
  'watch-streams-exhausted': { meaning: 'the server holds as many change streams (WatchChanges) as watch_max_streams allows, or the agent holds its per-agent share; the agent keeps polling and retries later', grpc: GrpcStatus.RESOURCE_EXHAUSTED, exit: ExitCode.REMOTE, http: 503 },
  'watch-slow-consumer': { meaning: 'the agent did not read its change stream (WatchChanges) and its unsent notifications reached the per-stream bound; the server closed it and the agent reconnects', grpc: GrpcStatus.RESOURCE_EXHAUSTED, exit: ExitCode.REMOTE, http: 503 },
  'deadline-expired': { meaning: 'the call\'s deadline passed (or it was cancelled) before the server began the work; nothing was done', grpc: GrpcStatus.DEADLINE_EXCEEDED, exit: ExitCode.REMOTE, http: 504 },
  'signing-worker-failed': retryLater('the signing worker thread serving the batch stopped before it answered (it is restarted); nothing of that batch was issued, retry'),

  // Datastore
  'bundle-sequence-regressed': { meaning: 'the bundle sequence number is lower than the stored one', grpc: GrpcStatus.FAILED_PRECONDITION, exit: ExitCode.REMOTE, http: 409 },
  'entry-revision-conflict': { meaning: 'the entry changed since the revision the update was based on', grpc: GrpcStatus.ABORTED, exit: ExitCode.REMOTE, http: 409 },
} as const satisfies Record<string, CatalogRow>;

export type ErrorCode = keyof typeof errorCatalog;
export const errorCodes = Object.keys(errorCatalog) as ErrorCode[];

/**
 * The inverse of the catalogue's gRPC column, for a peer that answered with a status and no code
 * trailer (another SPIFFE implementation, a transport failure): the generic code each status
 * stands for. Every status a catalogue row uses has one, so a row's status reads back as itself;
 * deadlines and cancellations read as `unavailable` (retry later), anything
 * else as `internal`. This is the one status-to-code table; clients do not keep their own.
 */
const CODE_FOR_STATUS: Partial<Record<GrpcStatusCode, ErrorCode>> = {
  [GrpcStatus.INVALID_ARGUMENT]: 'usage',
  [GrpcStatus.NOT_FOUND]: 'not-found',
  [GrpcStatus.ALREADY_EXISTS]: 'already-exists',
  [GrpcStatus.PERMISSION_DENIED]: 'permission-denied',
  [GrpcStatus.UNAUTHENTICATED]: 'unauthenticated',
  [GrpcStatus.FAILED_PRECONDITION]: 'failed-precondition',
  [GrpcStatus.ABORTED]: 'aborted',
  [GrpcStatus.UNIMPLEMENTED]: 'unimplemented',
  [GrpcStatus.UNAVAILABLE]: 'unavailable',
  // A deadline is the caller's patience running out on a slow or wedged endpoint: retryable.
  [GrpcStatus.DEADLINE_EXCEEDED]: 'unavailable',
  [GrpcStatus.CANCELLED]: 'unavailable',
  [GrpcStatus.INTERNAL]: 'internal',
  // The peer refused for load or a limit: retry later (our own server answers so when its signing queue is full).
  [GrpcStatus.RESOURCE_EXHAUSTED]: 'server-overloaded',
};

export function codeForGrpcStatus(status: number): ErrorCode {
  return CODE_FOR_STATUS[status as GrpcStatusCode] ?? 'internal';
}

/** The base of every error svidscope throws on purpose: a stable `code`, a rule-naming message, the cause kept aside. */
export class SvidscopeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SvidscopeError';
    this.code = code;
  }
  get grpcStatus(): GrpcStatusCode {
    return errorCatalog[this.code].grpc;
  }
  get exitCode(): ExitCodeValue {
    return errorCatalog[this.code].exit;
  }
  get httpStatus(): number {
    return errorCatalog[this.code].http;
  }
}

export function isSvidscopeError(err: unknown): err is SvidscopeError {
  return err instanceof SvidscopeError;
}

/** Returns a thrower bound to an area prefix, go-spiffe style: `fail('leaf-is-ca', 'leaf certificate must not have CA flag set to true')`. */
export function errorFactory(area: string) {
  return (code: ErrorCode, message: string, cause?: unknown): SvidscopeError =>
    new SvidscopeError(code, `${area}: ${message}`, cause === undefined ? undefined : { cause });
}
