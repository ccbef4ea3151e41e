import type { X509Certificate } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import { parseSpiffeId, type SpiffeId } from '../id/index.js';
import { certificateFacts } from '../x509/index.js';

export const fail = errorFactory('x509svid');

/**
 * The SPIFFE ID of a certificate: its one URI SAN, parsed strictly. Other SAN types (DNS, IP) are
 * allowed beside it; a second URI of any scheme is not (X509-SVID §2).
 */
export function idFromCertificate(cert: X509Certificate): SpiffeId {
  const uris = certificateFacts(cert).uriSans;
  if (uris.length === 0) throw fail('missing-uri-san', 'certificate contains no URI SAN');
  if (uris.length > 1) throw fail('multiple-uri-sans', 'certificate contains more than one URI SAN');
  try {
    return parseSpiffeId(uris[0]);
  } catch (err) {
    throw fail('invalid-spiffe-id', `unable to parse ID: ${(err as Error).message}`, err);
  }
}

/**
 * The leaf rules of X509-SVID §4.1 and §5, in go-spiffe's Parse order so that a certificate breaking
 * several rules reports the same one: non-root path, cA=false, digitalSignature present (a missing
 * keyUsage extension has none), no keyCertSign, no cRLSign. Verify applies the same rules.
 */
export function checkLeaf(leaf: X509Certificate): SpiffeId {
  const id = idFromCertificate(leaf);
  if (id.isRoot) throw fail('leaf-root-path', 'leaf certificate SPIFFE ID must have a non-root path');
  const facts = certificateFacts(leaf);
  if (facts.isCA) throw fail('leaf-is-ca', 'leaf certificate must not have CA flag set to true');
  if (!facts.keyUsage.digitalSignature) throw fail('leaf-no-digital-signature', 'leaf certificate must have digitalSignature as key usage');
  if (facts.keyUsage.keyCertSign) throw fail('leaf-key-cert-sign', 'leaf certificate must not have KeyCertSign as key usage');
  if (facts.keyUsage.cRLSign) throw fail('leaf-crl-sign', 'leaf certificate must not have KeyCrlSign as key usage');
  return id;
}

/** Every certificate after the leaf must be a CA allowed to sign certificates (X509-SVID §4.1). */
export function checkSigningCertificates(intermediates: readonly X509Certificate[]): void {
  for (const cert of intermediates) {
    const facts = certificateFacts(cert);
    if (!facts.isCA) throw fail('signing-cert-not-ca', 'signing certificate must have CA flag set to true');
    if (!facts.keyUsage.keyCertSign) throw fail('signing-cert-no-key-cert-sign', 'signing certificate must have keyCertSign as key usage');
  }
}

/** True when a certificate may sign others: cA=true and keyCertSign (the SPIFFE rule for signing certificates). */
export function canSignCertificates(cert: X509Certificate): boolean {
  const facts = certificateFacts(cert);
  return facts.isCA && facts.keyUsage.keyCertSign;
}
