/**
 * Key types SPIRE offers for workloads and CAs (`workload_x509_svid_key_type`, `ca_key_type`),
 * generation, and the mapping from a signing key to its X.509 signature algorithm.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import { bitString, derNull, integer, octetString, oid, sequence, tlv } from './der.js';

const fail = errorFactory('mint');

export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';
export const keyTypes: readonly KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];
/** SPIRE's default for both workload and CA keys. */
export const DEFAULT_KEY_TYPE: KeyType = 'ec-p256';

export interface KeyPair {
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

export function isKeyType(s: string): s is KeyType {
  return (keyTypes as readonly string[]).includes(s);
}

export function generateKeyPair(type: KeyType = DEFAULT_KEY_TYPE): KeyPair {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    default:
      throw fail('unsupported-key', `key type ${String(type)} is not supported`);
  }
}

/**
 * The key type of a public or private key. RSA keys longer than 2048 bits also count as
 * `rsa-2048` (the signature algorithm is the same); shorter RSA keys, other curves, Ed25519
 * and DSA are refused because SPIRE neither issues nor accepts them for SVIDs.
 */
export function keyTypeOf(key: KeyObject): KeyType {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') {
    if (details?.namedCurve === 'prime256v1') return 'ec-p256';
    if (details?.namedCurve === 'secp384r1') return 'ec-p384';
    throw fail('unsupported-key', `EC curve ${String(details?.namedCurve)} is not supported; use P-256 or P-384`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    if ((details?.modulusLength ?? 0) >= 2048) return 'rsa-2048';
    throw fail('unsupported-key', 'RSA keys must have at least 2048 bits');
  }
  throw fail('unsupported-key', `key algorithm ${String(key.asymmetricKeyType)} is not supported`);
}

/** How a CA key signs: the hash to give crypto.sign and the AlgorithmIdentifier to write. */
export interface SignatureAlgorithm {
  readonly hash: 'sha256' | 'sha384';
  /** The complete DER AlgorithmIdentifier, written both in the TBS and after it. */
  readonly algorithmIdentifier: Buffer;
}

// RFC 5758 3.2: ECDSA AlgorithmIdentifiers omit parameters; RFC 4055 5: RSA ones carry NULL.
const ECDSA_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));
const ECDSA_SHA384 = sequence(oid('1.2.840.10045.4.3.3'));
const RSA_SHA256 = sequence(oid('1.2.840.113549.1.1.11'), derNull());

export function signatureAlgorithmFor(signingKey: KeyObject): SignatureAlgorithm {
  switch (keyTypeOf(signingKey)) {
    case 'ec-p256':
      return { hash: 'sha256', algorithmIdentifier: ECDSA_SHA256 };
    case 'ec-p384':
      return { hash: 'sha384', algorithmIdentifier: ECDSA_SHA384 };
    case 'rsa-2048':
      return { hash: 'sha256', algorithmIdentifier: RSA_SHA256 };
  }
}

// PKCS#8 PrivateKeyInfo of a P-256 key as OpenSSL 3 writes it (RFC 5915 ECPrivateKey inside,
// the curve named in the outer AlgorithmIdentifier, the public key included).
const P256_ALGORITHM = sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7'));

/**
 * PKCS#8 DER of a private key. For P-256 it is built from the JWK export (≈ 10 µs) rather than
 * Node's PKCS#8 export (≈ 100 µs on Node 20 with OpenSSL 3, which looks its encoders up on each
 * call): the agent encodes one per workload SVID it mints. Other keys take Node's export.
 */
export function privateKeyPkcs8(privateKey: KeyObject): Buffer {
  if (privateKey.asymmetricKeyType === 'ec') {
    const jwk = privateKey.export({ format: 'jwk' });
    if (jwk.crv === 'P-256' && jwk.d && jwk.x && jwk.y) {
      const [d, x, y] = [jwk.d, jwk.x, jwk.y].map((v) => Buffer.from(v, 'base64url'));
      if (d.length === 32 && x.length === 32 && y.length === 32) {
        const ecPrivateKey = sequence(integer(1), octetString(d), tlv(0xa1, bitString(Buffer.concat([Buffer.from([0x04]), x, y]))));
        return sequence(integer(0), P256_ALGORITHM, octetString(ecPrivateKey));
      }
    }
  }
  return privateKey.export({ type: 'pkcs8', format: 'der' });
}
