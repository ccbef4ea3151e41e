/**
 * The pieces of an X.509 certificate (RFC 5280) shared by the SVID template and the CA builder:
 * Names, the extensions SPIFFE needs, SPKI handling, reading a CA certificate, and signing.
 */
import { createHash, hash, sign, type KeyObject } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import {
  bitString,
  boolean,
  children,
  content,
  derNull,
  explicit,
  implicitPrimitive,
  namedBits,
  octetString,
  oid,
  parseTime,
  printableString,
  raw,
  readNode,
  sequence,
  set,
  utf8String,
} from './der.js';
import type { SignatureAlgorithm } from './keys.js';

const fail = errorFactory('mint');

/** `[0] EXPLICIT INTEGER 2`: every certificate minted here is v3 because it carries extensions. */
export const VERSION_V3 = explicit(0, Buffer.from([0x02, 0x01, 0x02]));

// ---- Names -------------------------------------------------------------------------------------

export type NameAttribute = 'C' | 'ST' | 'L' | 'O' | 'OU' | 'CN' | 'serialNumber';
/** A distinguished name in order, one attribute per RDN, e.g. `[['C', 'US'], ['O', 'SPIRE']]`. */
export type DistinguishedName = ReadonlyArray<readonly [NameAttribute, string]>;

const NAME_OIDS: Record<NameAttribute, Buffer> = {
  C: oid('2.5.4.6'),
  ST: oid('2.5.4.8'),
  L: oid('2.5.4.7'),
  O: oid('2.5.4.10'),
  OU: oid('2.5.4.11'),
  CN: oid('2.5.4.3'),
  serialNumber: oid('2.5.4.5'),
};

/** Encodes a Name; country and serialNumber are PrintableString by definition (X.520), the rest UTF8String. */
export function encodeName(dn: DistinguishedName): Buffer {
  const rdns = dn.map(([type, value]) => {
    const printable = type === 'C' || type === 'serialNumber';
    if (printable && !/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value)) {
      throw fail('config-invalid', `subject ${type} must be a PrintableString`);
    }
    return set(sequence(NAME_OIDS[type], printable ? printableString(value) : utf8String(value)));
  });
  return sequence(...rdns);
}

/** An empty Name (`SEQUENCE {}`), which obliges a critical SAN (RFC 5280 4.1.2.6). */
export const EMPTY_NAME = Buffer.from([0x30, 0x00]);

// ---- Extensions --------------------------------------------------------------------------------

// OIDs are encoded once at load: the SKI and SAN extensions are rebuilt for every SVID.
const OID_BASIC_CONSTRAINTS = oid('2.5.29.19');
const OID_KEY_USAGE = oid('2.5.29.15');
const OID_EXT_KEY_USAGE = oid('2.5.29.37');
const OID_AUTHORITY_KEY_ID = oid('2.5.29.35');
export const OID_SUBJECT_KEY_ID = oid('2.5.29.14');
const OID_SUBJECT_ALT_NAME = oid('2.5.29.17');
const CRITICAL = boolean(true);

/** Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE (so omitted when false), extnValue OCTET STRING }. */
export function extension(extnId: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(extnId, CRITICAL, octetString(value)) : sequence(extnId, octetString(value));
}

// cA defaults to FALSE, and DER forbids encoding a default value, so CA:FALSE is an empty SEQUENCE.
export const basicConstraints = (ca: boolean): Buffer => extension(OID_BASIC_CONSTRAINTS, true, ca ? sequence(CRITICAL) : sequence());

export const KeyUsageBit = { digitalSignature: 0, keyEncipherment: 2, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 } as const;
export const keyUsage = (bits: readonly number[]): Buffer => extension(OID_KEY_USAGE, true, namedBits(bits));

const SERVER_AUTH = oid('1.3.6.1.5.5.7.3.1');
const CLIENT_AUTH = oid('1.3.6.1.5.5.7.3.2');
export const extKeyUsageServerClient = (): Buffer => extension(OID_EXT_KEY_USAGE, false, sequence(SERVER_AUTH, CLIENT_AUTH));

/** AuthorityKeyIdentifier with only `[0] keyIdentifier`, which is what path builders match on. */
export const authorityKeyIdentifier = (keyId: Buffer): Buffer => extension(OID_AUTHORITY_KEY_ID, false, sequence(implicitPrimitive(0, keyId)));

// The SKI extension value is an OCTET STRING inside the extnValue OCTET STRING.
export const subjectKeyIdentifier = (keyId: Buffer): Buffer => extension(OID_SUBJECT_KEY_ID, false, octetString(keyId));

/** SubjectAltName: the URIs first, then `dNSName`s (GeneralName tags [6] and [2], IMPLICIT IA5String). */
export function subjectAltName(uris: readonly string[], dnsNames: readonly string[], critical: boolean): Buffer {
  const names: Buffer[] = [];
  for (const u of uris) names.push(implicitPrimitive(6, ia5(u)));
  for (const d of dnsNames) names.push(implicitPrimitive(2, ia5(d)));
  return extension(OID_SUBJECT_ALT_NAME, critical, sequence(...names));
}

function ia5(s: string): Buffer {
  // IA5String is 7-bit ASCII; refusing anything else keeps a Unicode host name from being mangled.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) throw fail('config-invalid', `SAN value ${JSON.stringify(s)} is not printable ASCII`);
  }
  if (s.length === 0) throw fail('config-invalid', 'SAN values cannot be empty');
  return Buffer.from(s, 'latin1');
}

// ---- SubjectPublicKeyInfo ----------------------------------------------------------------------

// Fixed SPKI heads (RFC 5480 for EC, RFC 3279 for RSA). Node's `export({ type: 'spki' })` goes
// through OpenSSL 3's generic encoder lookup and costs ~100 µs, five times an ECDSA signature;
// the JWK and PKCS#1 exports read the key directly (~1-3 µs), and the rest is fixed bytes.
export const EC_P256_HEAD = sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7'));
const EC_P384_HEAD = sequence(oid('1.2.840.10045.2.1'), oid('1.3.132.0.34'));
const RSA_HEAD = sequence(oid('1.2.840.113549.1.1.1'), derNull());
const UNCOMPRESSED = Buffer.from([0x04]);

/**
 * SPKI bytes already in hand for a key, e.g. cut from a CSR by parseCsr: the server's hot path
 * mints from exactly those keys, so it skips the export. Keyed weakly, and sound because a
 * KeyObject is immutable and the bytes were the ones it was created from.
 */
const knownSpki = new WeakMap<KeyObject, Buffer>();
export function rememberSpki(publicKey: KeyObject, spki: Buffer): void {
  // Only the canonical encodings the export path writes: an explicit-parameters or compressed-point
  // SPKI is a valid request but must not be copied into SVIDs that verifiers may not parse.
  try {
    const top = readNode(spki);
    const [alg, bits, extra] = children(spki, top);
    if (top.end !== spki.length || extra !== undefined || bits.tag !== 0x03 || spki[bits.contentStart] !== 0) return;
    const head = raw(spki, alg);
    const bitsLength = bits.end - bits.contentStart - 1;
    const point = spki[bits.contentStart + 1];
    const canonical =
      (head.equals(EC_P256_HEAD) && point === 0x04 && bitsLength === 65) ||
      (head.equals(EC_P384_HEAD) && point === 0x04 && bitsLength === 97) ||
      head.equals(RSA_HEAD);
    if (canonical) knownSpki.set(publicKey, Buffer.from(spki));
  } catch {
    // not cacheable; spkiOf will export the key instead
  }
}

/** SPKI DER of a public key, and its key identifier (RFC 5280 4.2.1.2 method 1: SHA-1 of the key bits). */
export function spkiOf(publicKey: KeyObject): { spki: Buffer; keyId: Buffer } {
  const known = knownSpki.get(publicKey);
  if (known) return { spki: known, keyId: keyIdOfSpki(known) };
  let head: Buffer;
  let keyBits: Buffer;
  if (publicKey.asymmetricKeyType === 'ec') {
    const jwk = publicKey.export({ format: 'jwk' });
    head = jwk.crv === 'P-256' ? EC_P256_HEAD : jwk.crv === 'P-384' ? EC_P384_HEAD : Buffer.alloc(0);
    if (head.length === 0) throw fail('unsupported-key', `EC curve ${String(jwk.crv)} is not supported`);
    keyBits = Buffer.concat([UNCOMPRESSED, Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  } else if (publicKey.asymmetricKeyType === 'rsa') {
    head = RSA_HEAD;
    keyBits = publicKey.export({ type: 'pkcs1', format: 'der' });
  } else {
    throw fail('unsupported-key', `key algorithm ${String(publicKey.asymmetricKeyType)} is not supported`);
  }
  return { spki: sequence(head, bitString(keyBits)), keyId: sha1(keyBits) };
}

export function keyIdOfSpki(spki: Buffer): Buffer {
  const [, bits] = children(spki, readNode(spki));
  // Skip the unused-bits octet: the identifier hashes the key bits only.
  return sha1(spki.subarray(bits.contentStart + 1, bits.end));
}

// crypto.hash (node >= 20.12) skips the Hash object; fall back for older 20.x.
const sha1 = (data: Buffer): Buffer => (typeof hash === 'function' ? hash('sha1', data, 'buffer') : createHash('sha1').update(data).digest());

// ---- Reading a CA certificate ------------------------------------------------------------------

export interface CertificateInfo {
  /** The subject Name exactly as encoded, to become the issuer of certificates it signs. */
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The subjectKeyIdentifier extension value, if present. */
  readonly subjectKeyId: Buffer | undefined;
  /** The keyIdentifier of the authorityKeyIdentifier extension (the issuer's subjectKeyIdentifier), if present. */
  readonly authorityKeyId: Buffer | undefined;
}

export function readCertificateInfo(der: Buffer): CertificateInfo {
  const [tbs] = children(der, readNode(der));
  const fields = children(der, tbs);
  const i = fields[0].tag === 0xa0 ? 1 : 0; // the version is optional (v1 certificates omit it)
  const [, , , validity, subject] = fields.slice(i);
  const [nb, na] = children(der, validity);
  let subjectKeyId: Buffer | undefined;
  let authorityKeyId: Buffer | undefined;
  const exts = fields.find((f) => f.tag === 0xa3);
  if (exts) {
    for (const ext of children(der, children(der, exts)[0])) {
      const parts = children(der, ext);
      const extOid = raw(der, parts[0]);
      const inner = content(der, parts[parts.length - 1]);
      if (extOid.equals(OID_SUBJECT_KEY_ID)) {
        subjectKeyId = Buffer.from(content(inner, readNode(inner)));
      } else if (extOid.equals(OID_AUTHORITY_KEY_ID)) {
        const keyId = children(inner, readNode(inner)).find((n) => n.tag === 0x80); // [0] IMPLICIT keyIdentifier
        if (keyId) authorityKeyId = Buffer.from(content(inner, keyId));
      }
    }
  }
  return { subject: Buffer.from(raw(der, subject)), notBefore: parseTime(nb, der), notAfter: parseTime(na, der), subjectKeyId, authorityKeyId };
}

// ---- Signing -----------------------------------------------------------------------------------

/** Signs a complete TBSCertificate TLV and wraps it as a Certificate. */
export function signTbs(tbs: Buffer, key: KeyObject, alg: SignatureAlgorithm): Buffer {
  // For EC keys node emits the DER `Ecdsa-Sig-Value` X.509 wants; for RSA, PKCS#1 v1.5.
  const sig = sign(alg.hash, tbs, key);
  return sequence(tbs, alg.algorithmIdentifier, bitString(sig));
}
