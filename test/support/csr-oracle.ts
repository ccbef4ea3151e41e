/**
 * The reference CSR parser: the server's former path, decoding with @peculiar/asn1-csr's full
 * object model. The server now uses the minimal DER walk in `src/identity-plane/spiffe/mint/csr.ts`
 * (the library decode was most of issuance's CPU); this one stays as the oracle the property test
 * compares it with, on valid and malformed CSRs alike. Kept as it was, apart from its name and
 * the table of accepted signature algorithms, which it shares with the decoder.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Extensions, SubjectAlternativeName } from '@peculiar/asn1-x509';
import { errorFactory, SvidscopeError } from '../../src/common/errors/catalog.js';
import { rememberSpki } from '../../src/identity-plane/spiffe/mint/cert-parts.js';
import { children, raw, readNode } from '../../src/identity-plane/spiffe/mint/der.js';
import { keyTypeOf } from '../../src/identity-plane/spiffe/mint/keys.js';
import { csrDer, SIGNATURE_HASHES } from '../../src/identity-plane/spiffe/mint/csr.js';

const fail = errorFactory('mint');

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const SUBJECT_ALT_NAME = '2.5.29.17';

interface ParsedCsr {
  readonly publicKey: KeyObject;
  /** URI SANs requested; the issuer decides whether to honour them. */
  readonly uriSans: string[];
  readonly dnsNames: string[];
}

/** Parses a PEM or DER CSR and verifies its self-signature; any failure is `csr-invalid`. */
export function parseCsrWithLibrary(pemOrDer: Buffer | string): ParsedCsr {
  const der = csrDer(pemOrDer);
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
