/**
 * PKCS#10 certificate signing requests (RFC 2986). A CSR is only proof of possession when its
 * self-signature verifies, so parseCsr never returns a key whose signature it has not checked.
 *
 * The signature covers the certificationRequestInfo bytes exactly as received, so those are cut
 * out of the input with the DER reader rather than re-encoded from the decoded object: a
 * re-encoding would differ from the signed bytes for any non-canonical input and hide tampering
 * or break honest requests.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Extensions, SubjectAlternativeName } from '@peculiar/asn1-x509';
import { errorFactory, SvidscopeError } from '../../../common/errors/catalog.js';
import { rememberSpki } from './cert-parts.js';
import { children, raw, readNode } from './der.js';
import { keyTypeOf } from './keys.js';

const fail = errorFactory('mint');

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const SUBJECT_ALT_NAME = '2.5.29.17';

/** Signature algorithms accepted on a CSR: ECDSA and RSA PKCS#1 v1.5 with SHA-2 (SHA-1 is refused). */
const SIGNATURE_HASHES: Record<string, { hash: string; family: 'ec' | 'rsa' }> = {
  '1.2.840.10045.4.3.2': { hash: 'sha256', family: 'ec' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', family: 'ec' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', family: 'ec' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', family: 'rsa' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', family: 'rsa' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', family: 'rsa' },
};

export interface ParsedCsr {
  readonly publicKey: KeyObject;
  /** URI SANs requested; the issuer decides whether to honour them. */
  readonly uriSans: string[];
  readonly dnsNames: string[];
}

/** Parses a PEM or DER CSR and verifies its self-signature; any failure is `csr-invalid`. */
export function parseCsr(pemOrDer: Buffer | string): ParsedCsr {
  const der = toDer(pemOrDer);
  let csr: CertificationRequest;
  let info: Buffer;
  let publicKey: KeyObject;
  try {
    const top = readNode(der);
    if (top.end !== der.length) throw new RangeError('trailing bytes after the CSR');
    const infoNode = children(der, top)[0];
    info = raw(der, infoNode);
    csr = AsnConvert.parse(der, CertificationRequest);
    // The key, like the signed bytes, comes from the input itself: CRI = { version, subject, spki, [0] attributes }.
    const spki = raw(der, children(der, infoNode)[2]);
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    rememberSpki(publicKey, spki);
  } catch (err) {
    throw fail('csr-invalid', 'the CSR cannot be decoded', err);
  }

  const alg = SIGNATURE_HASHES[csr.signatureAlgorithm.algorithm];
  if (!alg) throw fail('csr-invalid', `the CSR signature algorithm ${csr.signatureAlgorithm.algorithm} is not supported`);
  if (publicKey.asymmetricKeyType !== alg.family) throw fail('csr-invalid', 'the CSR signature algorithm does not match its key');
  let ok: boolean;
  try {
    ok = verify(alg.hash, info, publicKey, Buffer.from(csr.signature));
  } catch (err) {
    throw fail('csr-invalid', 'the CSR signature does not verify', err);
  }
  if (!ok) throw fail('csr-invalid', 'the CSR signature does not verify');
  keyTypeOf(publicKey); // a verified CSR with a key we never issue to is still refused (unsupported-key)

  const { uriSans, dnsNames } = requestedNames(csr);
  return { publicKey, uriSans, dnsNames };
}

function requestedNames(csr: CertificationRequest): { uriSans: string[]; dnsNames: string[] } {
  const uriSans: string[] = [];
  const dnsNames: string[] = [];
  try {
    for (const attr of csr.certificationRequestInfo.attributes ?? []) {
      if (attr.type !== EXTENSION_REQUEST) continue;
      for (const value of attr.values) {
        for (const ext of AsnConvert.parse(value, Extensions)) {
          if (ext.extnID !== SUBJECT_ALT_NAME) continue;
          for (const name of AsnConvert.parse(ext.extnValue.buffer, SubjectAlternativeName)) {
            if (name.uniformResourceIdentifier !== undefined) uriSans.push(name.uniformResourceIdentifier);
            if (name.dNSName !== undefined) dnsNames.push(name.dNSName);
          }
        }
      }
    }
  } catch (err) {
    if (err instanceof SvidscopeError) throw err;
    throw fail('csr-invalid', 'the CSR extension request cannot be decoded', err);
  }
  return { uriSans, dnsNames };
}

function toDer(input: Buffer | string): Buffer {
  // DER always opens with a SEQUENCE tag; anything else is read as PEM text.
  if (typeof input !== 'string' && input[0] === 0x30) return input;
  const text = typeof input === 'string' ? input : input.toString('latin1');
  const m = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(text);
  if (!m) throw fail('csr-invalid', 'the input is neither DER nor a PEM CERTIFICATE REQUEST');
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}
