/**
 * X.509 CA certificates as SPIRE makes them: a self-signed root for a standalone server, or an
 * intermediate signed by an operator's upstream CA. Not a hot path (one per `ca_ttl`), but it
 * reuses the same DER pieces as the SVID template so both stay byte-compatible.
 */
import { randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import { parseTrustDomain, type TrustDomain } from '../id/index.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  encodeName,
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
import { explicit, integer, sequence, time, unsignedIntegerContent } from './der.js';
import { DEFAULT_KEY_TYPE, generateKeyPair, signatureAlgorithmFor, type KeyType } from './keys.js';
import { NOT_BEFORE_BACKDATE_SECONDS } from './x509svid-template.js';

const fail = errorFactory('mint');

/** SPIRE's default `ca_subject`; the subject serialNumber is set to the certificate serial, as SPIRE does. */
export const DEFAULT_CA_SUBJECT: DistinguishedName = [
  ['C', 'US'],
  ['O', 'SPIFFE'],
];

export interface CaCertificate {
  readonly certificate: X509Certificate;
  readonly der: Buffer;
}

export interface SelfSignedCa extends CaCertificate {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export interface SelfSignedCaOptions {
  readonly trustDomain: TrustDomain | string;
  readonly keyType?: KeyType;
  readonly ttlSeconds: number;
  readonly now: Date;
  readonly subject?: DistinguishedName;
}

export function createSelfSignedCa(opts: SelfSignedCaOptions): SelfSignedCa {
  const { publicKey, privateKey } = generateKeyPair(opts.keyType ?? DEFAULT_KEY_TYPE);
  const validity = validityFor(opts.now, opts.ttlSeconds, undefined);
  // A self-signed root needs no AKI (RFC 5280 4.2.1.1): its issuer is identified by its own subject.
  const der = buildCaDer({ ...opts, ...validity, publicKey, signingKey: privateKey, issuer: undefined });
  return { certificate: new X509Certificate(der), der, privateKey, publicKey };
}

export interface IntermediateCaOptions {
  readonly parentCert: X509Certificate;
  readonly parentKey: KeyObject;
  readonly trustDomain: TrustDomain | string;
  readonly publicKey: KeyObject;
  readonly ttlSeconds: number;
  readonly now: Date;
  readonly subject?: DistinguishedName;
}

/** Signs an intermediate CA for the upstream-CA mode; its notAfter is capped at the parent's. */
export function signIntermediateCa(opts: IntermediateCaOptions): CaCertificate {
  if (!opts.parentCert.ca) throw fail('signing-cert-not-ca', 'the parent certificate is not a CA');
  if (!opts.parentCert.checkPrivateKey(opts.parentKey)) throw fail('ca-key-mismatch', 'the parent private key does not match the parent certificate');
  const parent = readCertificateInfo(opts.parentCert.raw);
  const validity = validityFor(opts.now, opts.ttlSeconds, parent.notAfter);
  const der = buildCaDer({ ...opts, ...validity, signingKey: opts.parentKey, issuer: { name: parent.subject, keyId: parent.subjectKeyId } });
  return { certificate: new X509Certificate(der), der };
}

function validityFor(now: Date, ttlSeconds: number, capAt: Date | undefined): { notBefore: Date; notAfter: Date } {
  if (!(ttlSeconds > 0) || !Number.isFinite(ttlSeconds)) throw fail('ttl-invalid', 'the CA TTL must be a positive number of seconds');
  const nowS = Math.floor(now.getTime() / 1000);
  if (!Number.isFinite(nowS)) throw fail('config-invalid', 'now is not a valid date');
  let notAfterMs = (nowS + Math.floor(ttlSeconds)) * 1000;
  if (capAt && capAt.getTime() < notAfterMs) notAfterMs = capAt.getTime();
  if (notAfterMs <= now.getTime()) throw fail('expired', 'the parent CA expires before the new CA would be valid');
  return { notBefore: new Date((nowS - NOT_BEFORE_BACKDATE_SECONDS) * 1000), notAfter: new Date(notAfterMs) };
}

interface BuildCaInput {
  readonly trustDomain: TrustDomain | string;
  readonly subject?: DistinguishedName;
  readonly publicKey: KeyObject;
  readonly signingKey: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The issuer's subject Name DER and SKI; undefined for a self-signed certificate. */
  readonly issuer: { name: Buffer; keyId: Buffer | undefined } | undefined;
}

function buildCaDer(input: BuildCaInput): Buffer {
  const td = typeof input.trustDomain === 'string' ? parseTrustDomain(input.trustDomain) : input.trustDomain;
  const alg = signatureAlgorithmFor(input.signingKey);
  const serial = unsignedIntegerContent(randomBytes(16));
  const subject = encodeName([...(input.subject ?? DEFAULT_CA_SUBJECT), ['serialNumber', BigInt('0x' + serial.toString('hex')).toString(10)]]);
  const { spki, keyId } = spkiOf(input.publicKey);
  const issuerKeyId = input.issuer ? input.issuer.keyId : undefined;
  const extensions = [
    basicConstraints(true),
    keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
    subjectKeyIdentifier(keyId),
    ...(issuerKeyId ? [authorityKeyIdentifier(issuerKeyId)] : []),
    // The CA's URI SAN is the trust domain ID (SPIFFE X509-SVID 4.1); the subject is not empty, so non-critical.
    subjectAltName([td.idString], [], false),
  ];
  const tbs = sequence(
    VERSION_V3,
    integer(serial),
    alg.algorithmIdentifier,
    input.issuer ? input.issuer.name : subject,
    sequence(time(input.notBefore), time(input.notAfter)),
    subject,
    spki,
    explicit(3, sequence(...extensions)),
  );
  return signTbs(tbs, input.signingKey, alg);
}
