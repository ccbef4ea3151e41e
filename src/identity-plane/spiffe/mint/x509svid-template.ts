/**
 * The X509-SVID minter: issuance is the identity plane's busiest path, and a general-purpose
 * certificate generator spends far more on ASN.1 object trees than on the signature. Here every
 * part that is fixed for a CA is encoded once, when the minter is created, and each call only
 * encodes the few variable fields and splices them between the fixed byte runs.
 *
 * The splice is safe because DER is a plain concatenation of complete TLVs: a TLV's bytes do not
 * depend on where it sits, only its enclosing SEQUENCEs' length headers do, and those are
 * recomputed per call from the actual parts (`tlv` measures its parts before writing the header).
 */
import { randomFillSync, type KeyObject, type X509Certificate } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import type { SpiffeId } from '../id/index.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  EMPTY_NAME,
  encodeName,
  extKeyUsageServerClient,
  keyUsage,
  KeyUsageBit,
  readCertificateInfo,
  signTbs,
  spkiOf,
  subjectAltName,
  subjectKeyIdentifier,
  VERSION_V3,
  type DistinguishedName,
} from './cert-parts.js';
import { time, tlv, unsignedIntegerContent } from './der.js';
import { keyTypeOf, signatureAlgorithmFor } from './keys.js';

const fail = errorFactory('mint');

/** SPIRE's `NotBeforeCushion`: backdating absorbs small clock skew between issuer and relying parties. */
export const NOT_BEFORE_BACKDATE_SECONDS = 10;
/** SPIRE's default X509-SVID subject when the entry names no DNS names. */
export const DEFAULT_SVID_SUBJECT: DistinguishedName = [
  ['C', 'US'],
  ['O', 'SPIRE'],
];

export interface MintRequest {
  readonly id: SpiffeId;
  readonly publicKey: KeyObject;
  readonly ttlSeconds: number;
  readonly now: Date;
  /** Extra dNSName SANs; as in SPIRE, the first also becomes the subject CN unless `subject` is given. */
  readonly dnsNames?: readonly string[];
  /** A positive serial of at most 20 octets; by default 128 random bits. */
  readonly serial?: Buffer | bigint;
  /** The subject: a DN, or a DER-encoded Name; `[]` means an empty subject (then the SAN is critical). */
  readonly subject?: DistinguishedName | Buffer;
}

export interface MintedX509Svid {
  readonly der: Buffer;
  readonly serial: bigint;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface X509SvidMinter {
  mint(request: MintRequest): MintedX509Svid;
  /** The CA's notAfter: no SVID this minter issues outlives it. */
  readonly caNotAfter: Date;
}

export interface X509SvidMinterConfig {
  readonly caCertificate: X509Certificate;
  readonly caPrivateKey: KeyObject;
}

export function createX509SvidMinter({ caCertificate, caPrivateKey }: X509SvidMinterConfig): X509SvidMinter {
  if (!caCertificate.ca) throw fail('signing-cert-not-ca', 'the signing certificate is not a CA');
  if (!caCertificate.checkPrivateKey(caPrivateKey)) throw fail('ca-key-mismatch', 'the CA private key does not match the CA certificate');
  const alg = signatureAlgorithmFor(caPrivateKey);
  const ca = readCertificateInfo(caCertificate.raw);
  const caNotAfterMs = ca.notAfter.getTime();
  const caTrustDomain = /(?:^|, )URI:spiffe:\/\/([^/,\s]+)/.exec(caCertificate.subjectAltName ?? '')?.[1];

  // Fixed byte runs, encoded once per CA.
  const versionBytes = VERSION_V3;
  const algAndIssuer = Buffer.concat([alg.algorithmIdentifier, ca.subject]);
  const fixedExtensions = Buffer.concat([
    basicConstraints(false),
    keyUsage([KeyUsageBit.digitalSignature, KeyUsageBit.keyEncipherment, KeyUsageBit.keyAgreement]),
    extKeyUsageServerClient(),
    // Like Go's x509, an issuer without an SKI yields no AKI rather than an invented one.
    ...(ca.subjectKeyId ? [authorityKeyIdentifier(ca.subjectKeyId)] : []),
  ]);
  const defaultSubject = encodeName(DEFAULT_SVID_SUBJECT);
  const serials = new SerialPool();
  const notBeforeTime = lastTime();
  const notAfterTime = lastTime();

  function mint(req: MintRequest): MintedX509Svid {
    if (req.id.isRoot) throw fail('leaf-root-path', 'an X509-SVID SPIFFE ID must have a path');
    if (caTrustDomain !== undefined && req.id.trustDomain.name !== caTrustDomain) {
      throw fail('invalid-spiffe-id', `${req.id.toString()} is not in the CA's trust domain ${caTrustDomain}`);
    }
    if (!(req.ttlSeconds > 0) || !Number.isFinite(req.ttlSeconds)) throw fail('ttl-invalid', 'the TTL must be a positive number of seconds');
    const nowMs = req.now.getTime();
    if (!Number.isFinite(nowMs)) throw fail('config-invalid', 'now is not a valid date');
    keyTypeOf(req.publicKey); // throws unsupported-key for anything SPIRE would not issue to
    if (req.publicKey.type !== 'public') throw fail('unsupported-key', 'the workload key must be a public key');

    // Whole seconds: X.509 times carry no fractions, so what we return is what the certificate says.
    const notBefore = new Date(Math.floor(nowMs / 1000 - NOT_BEFORE_BACKDATE_SECONDS) * 1000);
    const notAfter = new Date(Math.min(Math.floor(nowMs / 1000 + req.ttlSeconds) * 1000, caNotAfterMs));
    if (notAfter.getTime() <= nowMs) throw fail('expired', 'the CA certificate expires before the SVID would be valid');

    const serialContent = req.serial === undefined ? serials.next() : checkedSerial(req.serial);
    const dnsNames = req.dnsNames ?? [];
    const subject = subjectFor(req.subject, dnsNames, defaultSubject);
    const { spki, keyId } = spkiOf(req.publicKey);
    const san = subjectAltName([req.id.toString()], dnsNames, subject.length === EMPTY_NAME.length);

    const tbs = tlv(0x30,
      versionBytes,
      tlv(0x02, serialContent),
      algAndIssuer,
      tlv(0x30, notBeforeTime(notBefore), notAfterTime(notAfter)),
      subject,
      spki,
      tlv(0xa3, tlv(0x30, fixedExtensions, subjectKeyIdentifier(keyId), san)),
    );
    const der = signTbs(tbs, caPrivateKey, alg);
    return { der, serial: BigInt('0x' + serialContent.toString('hex')), notBefore, notAfter };
  }

  return { mint, caNotAfter: new Date(caNotAfterMs) };
}

function subjectFor(subject: MintRequest['subject'], dnsNames: readonly string[], defaultSubject: Buffer): Buffer {
  if (Buffer.isBuffer(subject)) return subject;
  if (subject !== undefined) return subject.length === 0 ? EMPTY_NAME : encodeName(subject);
  // SPIRE: with DNS names, CN = the first of them; otherwise the fixed default subject.
  return dnsNames.length > 0 ? encodeName([...DEFAULT_SVID_SUBJECT, ['CN', dnsNames[0]]]) : defaultSubject;
}

function checkedSerial(serial: Buffer | bigint): Buffer {
  const c = unsignedIntegerContent(serial);
  // RFC 5280 4.1.2.2: positive, at most 20 octets.
  if ((c.length === 1 && c[0] === 0) || c.length > 20) throw fail('config-invalid', 'the serial must be a positive integer of at most 20 octets');
  return c;
}


/**
 * Memoises the last encoded time: at thousands of SVIDs per second most calls fall in the same
 * second as the previous one. Safe because `tlv` copies the bytes and never writes into them.
 */
function lastTime(): (d: Date) => Buffer {
  let ms = NaN;
  let encoded: Buffer = Buffer.alloc(0);
  return (d) => {
    if (d.getTime() !== ms) {
      ms = d.getTime();
      encoded = time(d);
    }
    return encoded;
  };
}

/**
 * 128-bit serials drawn from a refilled random block: one CSPRNG call per 256 serials instead of
 * one per certificate. Each serial is used once, so pooling changes cost, not unpredictability.
 */
class SerialPool {
  private block = Buffer.alloc(0);
  private offset = 0;
  next(): Buffer {
    for (;;) {
      if (this.offset + 16 > this.block.length) {
        this.block = randomFillSync(Buffer.allocUnsafe(4096));
        this.offset = 0;
      }
      const raw = this.block.subarray(this.offset, (this.offset += 16));
      // unsignedIntegerContent adds the 0x00 a set top bit needs, so the serial stays positive.
      const c = unsignedIntegerContent(Buffer.from(raw));
      if (!(c.length === 1 && c[0] === 0)) return c;
    }
  }
}
