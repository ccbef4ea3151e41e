import type { SvidscopeError } from '../../common/errors/catalog.js';
import type { SpiffeBundle } from '../spiffe/bundle/index.js';

/** Wire shapes of node.proto as proto-loader presents them (keepCase, int64 as strings). */
export interface X509SvidMsg {
  cert_chain: Buffer[];
  spiffe_id: string;
  expires_at: string;
  hint: string;
  entry_id: string;
}

export interface BundleMsg {
  trust_domain: string;
  document: Buffer;
  sequence_number: string;
  /** Unix ms; proto int64 as a string. */
  updated_at_ms?: string;
}

/** node.proto `TaintedAuthorities`: absent from servers that predate it. */
export interface TaintedAuthoritiesMsg {
  x509_authorities: Buffer[];
  jwt_key_ids: string[];
}

export interface EntryMsg {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: { type: string; value: string }[];
  x509_svid_ttl: number;
  federates_with: string[];
  admin: boolean;
  downstream: boolean;
  expires_at: string;
  dns_names: string[];
  revision_number: string;
  jwt_svid_ttl: number;
  hint: string;
  created_at: string;
}

/** The most entries one BatchCreateEntries call takes (one datastore transaction holds them all). */
export const MAX_ENTRY_BATCH = 1000;

/** admin.proto `BatchCreateEntriesResult`: one per requested entry, in order. */
export interface BatchCreateEntriesResultMsg {
  /** gRPC status code; 0 = created. */
  status_code: number;
  status_message: string;
  /** The svidscope error code when refused, '' when created. */
  error_code: string;
  entry?: EntryMsg;
}

/** admin.proto `CaStatusResponse`: the server's signing keys (CaStatus, RotateCa, WithholdAuthority). */
export interface CaStatusMsg {
  slots: {
    kind: string;
    phase: string;
    key_id: string;
    /** Unix seconds; proto int64 as a string. */
    not_before: string;
    not_after: string;
    withheld: boolean;
    tainted?: boolean;
    revoked?: boolean;
    /** Unix ms; '0' (or absent from older servers) = not tainted / not revoked. */
    tainted_at_ms?: string;
    revoked_at_ms?: string;
  }[];
  /** Absent from servers that predate upstream taint. */
  upstream_authorities?: UpstreamAuthorityMsg[];
}

/** admin.proto `CaStatusResponse.Upstream`. */
export interface UpstreamAuthorityMsg {
  subject_key_id: string;
  /** Unix seconds. */
  not_after: string;
  configured: boolean;
  /** Why it cannot be tainted or revoked now; '' = not in use. */
  in_use: string;
  tainted: boolean;
  revoked: boolean;
  tainted_at_ms: string;
  revoked_at_ms: string;
}

/** admin.proto `AuthorityLifecycleRequest`. */
export interface AuthorityLifecycleRequestMsg {
  kind: string;
  operation: string;
  /** activate: empty = the prepared key; taint, revoke: required (unless `upstream`). */
  key_id: string;
  /** taint, revoke of an upstream X.509 authority named by `subject_key_id` (hex). */
  upstream?: boolean;
  subject_key_id?: string;
}

/** admin.proto `WithholdAuthorityRequest`. */
export interface WithholdAuthorityRequestMsg {
  kind: string;
  /** Empty = the active key of `kind`. */
  key_id: string;
  /** true = withhold from the bundle, false = publish again. */
  withhold: boolean;
}

export function bundleMessage(bundle: SpiffeBundle, document: Buffer, updatedAt?: Date): BundleMsg {
  return { trust_domain: bundle.trustDomain.name, document, sequence_number: (bundle.sequenceNumber ?? 0n).toString(), updated_at_ms: String(updatedAt?.getTime() ?? 0) };
}

/** node.proto `SyncAuthorizedEntriesRequest`; the incremental fields are absent from agents that predate them. */
export interface SyncRequestMsg {
  known_revision: string;
  incremental?: boolean;
  known_entries?: { id: string; revision: string }[];
  /**
   * Server side only, never on the wire: why the request's bytes did not decode (sync-request-decoder.ts).
   * grpc-js would answer a decoder's throw with a bare INTERNAL; the handler refuses with this instead.
   */
  undecodable?: SvidscopeError;
}

/** node.proto `SyncAuthorizedEntriesResponse`; servers that predate the incremental protocol never set incremental. */
export interface SyncResponseMsg {
  entries: EntryMsg[];
  revision: string;
  unchanged: boolean;
  incremental?: boolean;
  deleted_ids?: string[];
  digest?: Buffer;
  /** What GetBundles would answer, as a digest (`bundleStateDigest`); empty from a server without it. */
  bundle_state?: Buffer;
}

/** node.proto `ChangeNotification`, one message of the WatchChanges stream. */
export interface ChangeNotificationMsg {
  entries: boolean;
  bundle: boolean;
  initial: boolean;
  /** Act on a bundle change within this many ms (0 or absent: the agent's default). */
  spread_ms?: number;
  /** With `bundle`: the bundle state after the change (`bundleStateDigest`); empty from an older server. */
  bundle_state?: Buffer;
}
