import { createHash } from 'node:crypto';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import { createSpiffeBundle, parseSpiffeBundle, parseX509Bundle, publicKeyToJwk, spiffeBundleToJson, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import type { TrustDomain } from '../../spiffe/id/index.js';
import { isPem } from '../../spiffe/x509/index.js';

/**
 * A bundle of a foreign trust domain given by the operator (config `bundle_file` or the admin API):
 * a SPIFFE bundle document, or PEM CA certificates (X.509 authorities only).
 */
export function parseBootstrapBundle(trustDomain: TrustDomain, data: Buffer): SpiffeBundle {
  try {
    if (isPem(data)) return createSpiffeBundle({ trustDomain, x509Authorities: parseX509Bundle(trustDomain, data).x509Authorities });
    return parseSpiffeBundle(trustDomain, data);
  } catch (err) {
    throw new SvidscopeError('config-invalid', `federation: the bootstrap bundle of ${trustDomain} is neither a SPIFFE bundle nor PEM certificates: ${(err as Error).message}`, { cause: err });
  }
}

/** A digest of the authorities alone (order-free, sequence and hint left out), to tell a content change. */
export function authoritiesDigest(bundle: SpiffeBundle): string {
  const x509 = bundle.x509Authorities.map((a) => createHash('sha256').update(a.der).digest('hex')).sort();
  const jwt = [...bundle.jwtAuthorities.values()].map((a) => `${a.keyId}=${JSON.stringify(publicKeyToJwk(a.publicKey))}`).sort();
  return createHash('sha256').update(JSON.stringify({ x509, jwt })).digest('hex');
}

/** The latest notAfter of the X.509 authorities (ms): past it no X509-SVID of the domain verifies. */
export function latestAuthorityExpiryMs(bundle: SpiffeBundle): number | undefined {
  if (bundle.x509Authorities.length === 0) return undefined;
  return Math.max(...bundle.x509Authorities.map((a) => new Date(a.cert.validTo).getTime()));
}

/** The document to store for `bundle` with `sequence` (used when the peer's document carries none). */
export function documentWithSequence(bundle: SpiffeBundle, sequence: bigint): Buffer {
  return Buffer.from(spiffeBundleToJson(createSpiffeBundle({ ...bundle, jwtAuthorities: bundle.jwtAuthorities, sequenceNumber: sequence })));
}
