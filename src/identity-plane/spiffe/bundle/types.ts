import type { KeyObject, X509Certificate } from 'node:crypto';
import type { TrustDomain } from '../id/index.js';

/**
 * The trust bundle model. Parsing and serialisation live beside this file (x509-bundle.ts,
 * jwt-bundle.ts, spiffe-bundle.ts); consumers depend on the one-method Source interfaces so that
 * files, bundle endpoints and the Workload API are interchangeable.
 */

/** An X.509 authority: the certificate (DER kept for cheap re-encoding) of a root or intermediate CA. */
export interface X509Authority {
  readonly der: Buffer;
  readonly cert: X509Certificate;
}

/** A JWT authority: a public key and its key id. */
export interface JwtAuthority {
  readonly keyId: string;
  readonly publicKey: KeyObject;
}

export interface X509Bundle {
  readonly trustDomain: TrustDomain;
  readonly x509Authorities: readonly X509Authority[];
}

export interface JwtBundle {
  readonly trustDomain: TrustDomain;
  /** By key id; key ids are unique within a bundle. */
  readonly jwtAuthorities: ReadonlyMap<string, JwtAuthority>;
}

/** A SPIFFE bundle: both kinds of authority plus the document's sequence number and refresh hint. */
export interface SpiffeBundle extends X509Bundle, JwtBundle {
  /** `spiffe_sequence`; a uint64, so a bigint. */
  readonly sequenceNumber?: bigint;
  /** `spiffe_refresh_hint`, in seconds. */
  readonly refreshHintSeconds?: number;
}

export interface X509BundleSource {
  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined;
}

export interface JwtBundleSource {
  getJwtBundleForTrustDomain(td: TrustDomain): JwtBundle | undefined;
}
