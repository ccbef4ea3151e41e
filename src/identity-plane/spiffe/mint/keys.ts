/**
 * Key types SPIRE offers for workloads and CAs (`workload_x509_svid_key_type`, `ca_key_type`),
 * generation, and the mapping from a signing key to its X.509 signature algorithm.
 */
import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
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

/** How Node generates each key type. */
const GENERATION: Record<KeyType, { kind: 'ec' | 'rsa'; options: object }> = {
  'ec-p256': { kind: 'ec', options: { namedCurve: 'prime256v1' } },
  'ec-p384': { kind: 'ec', options: { namedCurve: 'secp384r1' } },
  'rsa-2048': { kind: 'rsa', options: { modulusLength: 2048 } },
};

/**
 * A new key pair whose KeyObjects share their key with nothing else.
 *
 * Why not the KeyObjects `generateKeyPairSync` returns (Node 20): they share their key, and its
 * lock, with the generation job that made them. The job lingers unreachable until a garbage
 * collection destroys it, and its destructor takes that lock. Exporting such a key as a JWK holds
 * the lock while it allocates strings; when that allocation starts the collection that destroys
 * the job, the thread waits on itself for good. An agent minting 10,000 SVIDs stopped that way,
 * twice (gdb: `ExportJWKEcKey` → GC → `~KeyGenJob` → `pthread_mutex_lock`), and a loop of
 * `generateKeyPairSync` and `export({ format: 'jwk' })` alone hangs within a few thousand keys.
 * So the key leaves the job inside the job (as a JWK, the cheap encoding), and the KeyObjects
 * handed out are made from it.
 */
export function generateKeyPair(type: KeyType = DEFAULT_KEY_TYPE): KeyPair {
  if (!Object.hasOwn(GENERATION, type)) throw fail('unsupported-key', `key type ${String(type)} is not supported`);
  const jwk = { format: 'jwk' } as const;
  // @types/node types no JWK encodings for key generation; Node has them.
  const generate = generateKeyPairSync as unknown as (kind: string, options: object) => { privateKey: JsonWebKey };
  const { kind, options } = GENERATION[type];
  const material = generate(kind, { ...options, publicKeyEncoding: jwk, privateKeyEncoding: jwk }).privateKey;
  const privateKey = createPrivateKey({ key: material, format: 'jwk' });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/** A workload key and its PKCS#8 DER, which the agent keeps per SVID. */
export interface WorkloadKey extends KeyPair {
  /**
   * Built when asked, not with the key. The result may come from Node's Buffer pool: a caller
   * that keeps it for long copies it out (the agent keeps it with its certificate, ownedPair in
   * agent/manager/svid-parts.ts), or it pins a pool slab of other garbage.
   */
  pkcs8(): Buffer;
}

/**
 * The key of a workload SVID; nothing else shares its KeyObjects (see `generateKeyPair`). P-256,
 * the default and the one minted by the thousand, comes from Node's ECDH, which uses no generation
 * job and hands over the private scalar and public point: its PKCS#8 is built from them, with no
 * export and without OpenSSL's PKCS#8 encoder (≈ 100 µs). Other types export theirs once, before
 * the key signs anything.
 */
export function generateWorkloadKey(type: KeyType = DEFAULT_KEY_TYPE): WorkloadKey {
  if (type !== 'ec-p256') {
    const pair = generateKeyPair(type);
    const pkcs8 = privateKeyPkcs8(pair.privateKey);
    return { ...pair, pkcs8: () => pkcs8 };
  }
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  // The scalar comes without its leading zero bytes (about one key in 128 is shorter than 32 bytes).
  const scalar = ecdh.getPrivateKey();
  const d = scalar.length === 32 ? scalar : Buffer.concat([Buffer.alloc(32 - scalar.length), scalar]);
  const point = ecdh.getPublicKey();
  const [x, y] = [point.subarray(1, 33), point.subarray(33, 65)];
  const privateKey = createPrivateKey({ key: { kty: 'EC', crv: 'P-256', d: d.toString('base64url'), x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
  return { privateKey, publicKey: createPublicKey(privateKey), pkcs8: () => p256Pkcs8(d, x, y) };
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
 * call). Other keys take Node's export. Only for keys from `generateKeyPair` or imported ones
 * (see there why a KeyObject straight from `generateKeyPairSync` must not be exported as a JWK).
 */
export function privateKeyPkcs8(privateKey: KeyObject): Buffer {
  if (privateKey.asymmetricKeyType === 'ec') {
    const jwk = privateKey.export({ format: 'jwk' });
    if (jwk.crv === 'P-256' && jwk.d && jwk.x && jwk.y) {
      const [d, x, y] = [jwk.d, jwk.x, jwk.y].map((v) => Buffer.from(v, 'base64url'));
      if (d.length === 32 && x.length === 32 && y.length === 32) return p256Pkcs8(d, x, y);
    }
  }
  return privateKey.export({ type: 'pkcs8', format: 'der' });
}

/** PKCS#8 of a P-256 key from its 32-byte scalar and coordinates, byte-equal to OpenSSL 3's. */
function p256Pkcs8(d: Buffer, x: Buffer, y: Buffer): Buffer {
  const ecPrivateKey = sequence(integer(1), octetString(d), tlv(0xa1, bitString(Buffer.concat([Buffer.from([0x04]), x, y]))));
  return sequence(integer(0), P256_ALGORITHM, octetString(ecPrivateKey));
}
