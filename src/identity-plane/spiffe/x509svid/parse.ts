import { createPublicKey, type KeyObject, type X509Certificate } from 'node:crypto';
import type { SpiffeId } from '../id/index.js';
import { parseCertificates, parsePrivateKey, samePublicKey } from '../x509/index.js';
import { checkLeaf, checkSigningCertificates, fail } from './leaf.js';

/** An X509-SVID with its private key: the leaf first, then the intermediates up to (not including) the bundle. */
export interface X509Svid {
  readonly id: SpiffeId;
  readonly certificates: X509Certificate[];
  readonly privateKey: KeyObject;
}

// go-spiffe's set: an SVID key must be able to sign for the TLS handshakes the SVID is used in.
const SUPPORTED_KEY_TYPES = new Set(['rsa', 'ec', 'ed25519']);

/**
 * Parses an X509-SVID from PEM: the chain (CERTIFICATE blocks, leaf first) and the private key
 * (PKCS#8, SEC1 or PKCS#1); both may be in the same file. Checks the SVID rules and the key but not
 * the validity dates: checking against `now` is verification's job.
 */
export function parseX509Svid(certsPem: Buffer, keyPem: Buffer): X509Svid {
  const certificates = parseCertificates(certsPem, { format: 'pem', area: 'x509svid' });
  const privateKey = parsePrivateKey(keyPem, { format: 'pem', area: 'x509svid' });
  return newX509Svid(certificates, privateKey);
}

/** Parses an X509-SVID in the Workload API encoding: concatenated DER certificates and a PKCS#8 DER key. */
export function parseX509SvidRaw(certsDer: Buffer, keyDer: Buffer): X509Svid {
  const certificates = parseCertificates(certsDer, { format: 'der', area: 'x509svid' });
  const privateKey = parsePrivateKey(keyDer, { format: 'der', area: 'x509svid' });
  return newX509Svid(certificates, privateKey);
}

/** Builds an SVID from already decoded parts, applying the same rules as the parsers. */
export function newX509Svid(certificates: X509Certificate[], privateKey: KeyObject): X509Svid {
  if (certificates.length === 0) throw fail('empty-chain', 'certificate chain is empty');
  const id = checkLeaf(certificates[0]);
  checkSigningCertificates(certificates.slice(1));
  checkKeyMatches(certificates[0], privateKey);
  return { id, certificates, privateKey };
}

function checkKeyMatches(leaf: X509Certificate, privateKey: KeyObject): void {
  if (privateKey.type !== 'private') throw fail('malformed-private-key', 'expected a private key');
  const type = privateKey.asymmetricKeyType ?? 'unknown';
  if (!SUPPORTED_KEY_TYPES.has(type)) throw fail('key-mismatch', `unsupported private key type ${type}`);
  if (!samePublicKey(createPublicKey(privateKey), leaf.publicKey)) {
    throw fail('key-mismatch', 'leaf certificate public key does not match the private key');
  }
}
