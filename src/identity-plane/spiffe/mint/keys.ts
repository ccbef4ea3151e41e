/**
 * Key types SPIRE offers for workloads and CAs (`workload_x509_svid_key_type`, `ca_key_type`),
 * generation, and the mapping from a signing key to its X.509 signature algorithm.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import { derNull, oid, sequence } from './der.js';

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
