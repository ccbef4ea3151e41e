import type { X509Certificate } from 'node:crypto';
import type { TrustDomain } from '../id/index.js';
import { encodePem, parseCertificates } from '../x509/index.js';
import type { X509Authority, X509Bundle } from './types.js';

export function x509Authority(cert: X509Certificate): X509Authority {
  return { der: cert.raw, cert };
}

/** Builds an X.509 bundle; an authority given twice (same DER) is kept once. */
export function createX509Bundle(trustDomain: TrustDomain, authorities: Iterable<X509Certificate | X509Authority> = []): X509Bundle {
  return { trustDomain, x509Authorities: dedupeAuthorities(authorities) };
}

export function dedupeAuthorities(authorities: Iterable<X509Certificate | X509Authority>): X509Authority[] {
  const seen = new Set<string>();
  const out: X509Authority[] = [];
  for (const a of authorities) {
    const auth = 'der' in a ? a : x509Authority(a);
    const key = auth.der.toString('base64');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(auth);
  }
  return out;
}

/**
 * Parses PEM (or, when the input is not PEM, concatenated DER) into an X.509 bundle. Unlike
 * go-spiffe, an input with no certificate (empty, or a key only) is `no-certificates`, as java-spiffe
 * and py-spiffe decide: a bundle file that names no authority is almost always a mistake. CA-ness is
 * not checked: the bundle is the trust decision.
 */
export function parseX509Bundle(trustDomain: TrustDomain, input: Buffer): X509Bundle {
  return createX509Bundle(trustDomain, parseCertificates(input, { area: 'x509bundle' }));
}

/** Parses concatenated DER certificates (the Workload API bundle encoding). */
export function parseX509BundleRaw(trustDomain: TrustDomain, der: Buffer): X509Bundle {
  return createX509Bundle(trustDomain, parseCertificates(der, { area: 'x509bundle', format: 'der' }));
}

/** The authorities as concatenated PEM blocks. */
export function x509BundleToPem(bundle: X509Bundle): string {
  return bundle.x509Authorities.map((a) => encodePem('CERTIFICATE', a.der)).join('');
}

/** The authorities as concatenated DER, as the Workload API carries them. */
export function x509BundleToDer(bundle: X509Bundle): Buffer {
  return Buffer.concat(bundle.x509Authorities.map((a) => a.der));
}
