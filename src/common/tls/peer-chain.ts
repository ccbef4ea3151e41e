import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';

/**
 * The chain a TLS peer presented, leaf first, from Node's linked `issuerCertificate` form
 * (`getPeerCertificate(true)`, or the certificate `checkServerIdentity` receives). Stops at a
 * certificate already seen: Node links a self-signed root to itself.
 */
export function peerCertificateChain(cert: PeerCertificate | undefined): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let cur = cert as DetailedPeerCertificate | undefined;
  while (cur?.raw && !seen.has(cur.fingerprint256)) {
    seen.add(cur.fingerprint256);
    chain.push(new X509Certificate(cur.raw));
    cur = cur.issuerCertificate;
  }
  return chain;
}
