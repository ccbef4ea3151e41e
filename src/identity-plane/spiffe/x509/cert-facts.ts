import type { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  KeyUsage,
  KeyUsageFlags,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import { errorFactory } from '../../../common/errors/catalog.js';

export interface KeyUsageBits {
  /** False when the certificate has no keyUsage extension (then every bit below is false). */
  readonly present: boolean;
  readonly digitalSignature: boolean;
  readonly nonRepudiation: boolean;
  readonly keyEncipherment: boolean;
  readonly dataEncipherment: boolean;
  readonly keyAgreement: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
  readonly encipherOnly: boolean;
  readonly decipherOnly: boolean;
}

/** What SVID rules and path building need from a certificate, decoded once. */
export interface CertificateFacts {
  readonly version: number;
  readonly uriSans: readonly string[];
  readonly dnsSans: readonly string[];
  /** basicConstraints present with cA=true. */
  readonly isCA: boolean;
  readonly hasBasicConstraints: boolean;
  readonly pathLenConstraint?: number;
  readonly keyUsage: KeyUsageBits;
  /** Millisecond precision from the ASN.1 times (X509Certificate.validTo is a second-granular string). */
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Exact DER of the subject and issuer Names, as path building compares them bytewise (as Go does). */
  readonly subject: Buffer;
  readonly issuer: Buffer;
  /** subjectKeyIdentifier, lower-case hex; undefined when absent. */
  readonly subjectKeyId?: string;
  /** The keyIdentifier of authorityKeyIdentifier (the issuer's SKI), lower-case hex; undefined when absent. */
  readonly authorityKeyId?: string;
}

const fail = errorFactory('x509');
// Verification runs per handshake; decoding extensions once per certificate object keeps it cheap.
const cache = new WeakMap<X509Certificate, CertificateFacts>();

export function certificateFacts(cert: X509Certificate): CertificateFacts {
  let facts = cache.get(cert);
  if (facts === undefined) {
    facts = decodeFacts(cert.raw);
    cache.set(cert, facts);
  }
  return facts;
}

function decodeFacts(der: Buffer): CertificateFacts {
  let parsed: Certificate;
  try {
    parsed = AsnConvert.parse(der, Certificate);
  } catch (err) {
    throw fail('malformed-certificate', 'cannot decode certificate extensions', err);
  }
  const tbs = parsed.tbsCertificate;
  const uriSans: string[] = [];
  const dnsSans: string[] = [];
  let isCA = false;
  let hasBasicConstraints = false;
  let pathLenConstraint: number | undefined;
  let ku = 0;
  let kuPresent = false;
  let subjectKeyId: string | undefined;
  let authorityKeyId: string | undefined;
  for (const ext of tbs.extensions ?? []) {
    try {
      if (ext.extnID === id_ce_subjectAltName) {
        for (const name of AsnConvert.parse(ext.extnValue, SubjectAlternativeName)) {
          if (name.uniformResourceIdentifier !== undefined) uriSans.push(name.uniformResourceIdentifier);
          if (name.dNSName !== undefined) dnsSans.push(name.dNSName);
        }
      } else if (ext.extnID === id_ce_basicConstraints) {
        const bc = AsnConvert.parse(ext.extnValue, BasicConstraints);
        hasBasicConstraints = true;
        isCA = bc.cA === true;
        pathLenConstraint = bc.pathLenConstraint;
      } else if (ext.extnID === id_ce_keyUsage) {
        kuPresent = true;
        ku = AsnConvert.parse(ext.extnValue, KeyUsage).toNumber();
      } else if (ext.extnID === id_ce_subjectKeyIdentifier) {
        subjectKeyId = Buffer.from(AsnConvert.parse(ext.extnValue, SubjectKeyIdentifier).buffer).toString('hex');
      } else if (ext.extnID === id_ce_authorityKeyIdentifier) {
        const aki = AsnConvert.parse(ext.extnValue, AuthorityKeyIdentifier).keyIdentifier;
        if (aki) authorityKeyId = Buffer.from(aki.buffer).toString('hex');
      }
    } catch (err) {
      throw fail('malformed-certificate', `cannot decode certificate extension ${ext.extnID}`, err);
    }
  }
  const names = rawNames(der);
  return {
    version: tbs.version + 1,
    uriSans,
    dnsSans,
    isCA,
    hasBasicConstraints,
    pathLenConstraint,
    keyUsage: keyUsageBits(kuPresent, ku),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    subject: names.subject,
    issuer: names.issuer,
    subjectKeyId,
    authorityKeyId,
  };
}

function keyUsageBits(present: boolean, v: number): KeyUsageBits {
  const has = (f: KeyUsageFlags) => (v & f) !== 0;
  return {
    present,
    digitalSignature: has(KeyUsageFlags.digitalSignature),
    nonRepudiation: has(KeyUsageFlags.nonRepudiation),
    keyEncipherment: has(KeyUsageFlags.keyEncipherment),
    dataEncipherment: has(KeyUsageFlags.dataEncipherment),
    keyAgreement: has(KeyUsageFlags.keyAgreement),
    keyCertSign: has(KeyUsageFlags.keyCertSign),
    cRLSign: has(KeyUsageFlags.cRLSign),
    encipherOnly: has(KeyUsageFlags.encipherOnly),
    decipherOnly: has(KeyUsageFlags.decipherOnly),
  };
}

/** Reads one DER TLV header at `at`: where its content starts and where the element ends. */
export function derElement(buf: Buffer, at: number): { tag: number; contentStart: number; end: number } {
  if (at + 2 > buf.length) throw fail('malformed-certificate', 'truncated DER element');
  const tag = buf[at];
  let len = buf[at + 1];
  let contentStart = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || contentStart + n > buf.length) throw fail('malformed-certificate', 'bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[contentStart + i];
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > buf.length) throw fail('malformed-certificate', 'truncated DER element');
  return { tag, contentStart, end };
}

/** Slices issuer and subject out of the TBSCertificate without re-encoding them. */
function rawNames(der: Buffer): { issuer: Buffer; subject: Buffer } {
  const tbs = derElement(der, derElement(der, 0).contentStart);
  let at = tbs.contentStart;
  const next = () => {
    const start = at;
    at = derElement(der, start).end;
    return der.subarray(start, at);
  };
  if (der[at] === 0xa0) next(); // [0] version
  next(); // serialNumber
  next(); // signature algorithm
  const issuer = next();
  next(); // validity
  const subject = next();
  return { issuer: Buffer.from(issuer), subject: Buffer.from(subject) };
}
