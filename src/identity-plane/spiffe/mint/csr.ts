/**
 * PKCS#10 certificate signing requests (RFC 2986). A CSR is only proof of possession when its
 * self-signature verifies, so parseCsr never returns a key whose signature it has not checked.
 *
 * This is the issuance hot path (one CSR per SVID), so it is a minimal DER walk over the shape
 * RFC 2986 fixes rather than a general ASN.1 decoder: decoding through @peculiar/asn1-csr's object
 * model cost more CPU than the signature check and the certificate signature together. The walk
 * reads every TLV strictly (definite minimal lengths, no BER), checks the structure the way the
 * library's schema does, and hands the key and signature to node:crypto. The library path is kept
 * as the oracle in `test/support/csr-oracle.ts`; a property test runs both on valid and malformed
 * CSRs and requires the same answers and the same refusals.
 *
 * The signature covers the certificationRequestInfo bytes exactly as received, so those are cut
 * out of the input rather than re-encoded: a re-encoding would differ from the signed bytes for any
 * non-canonical input and hide tampering or break honest requests.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import { EC_P256_HEAD, rememberSpki } from './cert-parts.js';
import { children, content, oid, raw, readNode, type DerNode } from './der.js';
import { keyTypeOf } from './keys.js';

const fail = errorFactory('mint');

/** OID content octets (without tag and length), compared byte for byte. */
const oidContent = (dotted: string): Buffer => oid(dotted).subarray(2);
const EXTENSION_REQUEST = oidContent('1.2.840.113549.1.9.14');
const SUBJECT_ALT_NAME = oidContent('2.5.29.17');

/** Signature algorithms accepted on a CSR: ECDSA and RSA PKCS#1 v1.5 with SHA-2 (SHA-1 is refused). */
export const SIGNATURE_HASHES: Readonly<Record<string, { hash: string; family: 'ec' | 'rsa' }>> = {
  '1.2.840.10045.4.3.2': { hash: 'sha256', family: 'ec' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', family: 'ec' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', family: 'ec' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', family: 'rsa' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', family: 'rsa' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', family: 'rsa' },
};
/** The same table keyed by the OID's DER content, so the hot path compares bytes, not dotted strings. */
const SIGNATURE_BY_CONTENT = new Map(Object.entries(SIGNATURE_HASHES).map(([dotted, alg]) => [oidContent(dotted).toString('latin1'), alg]));

const TAG = { integer: 0x02, bitString: 0x03, octetString: 0x04, oid: 0x06, boolean: 0x01, sequence: 0x30, set: 0x31, attributes: 0xa0 } as const;

export interface ParsedCsr {
  readonly publicKey: KeyObject;
  /** URI SANs requested; the issuer decides whether to honour them. */
  readonly uriSans: string[];
  readonly dnsNames: string[];
}

/** Parses a PEM or DER CSR and verifies its self-signature; any failure is `csr-invalid`. */
export function parseCsr(pemOrDer: Buffer | string): ParsedCsr {
  const der = csrDer(pemOrDer);
  let shape: CsrShape;
  let publicKey: KeyObject;
  try {
    shape = decodeShape(der);
    publicKey = importSpki(shape.spki);
    rememberSpki(publicKey, shape.spki);
  } catch (err) {
    throw fail('csr-invalid', 'the CSR cannot be decoded', err);
  }

  const alg = SIGNATURE_BY_CONTENT.get(shape.signatureOid.toString('latin1'));
  if (!alg) throw fail('csr-invalid', `the CSR signature algorithm ${dottedOid(shape.signatureOid)} is not supported`);
  if (publicKey.asymmetricKeyType !== alg.family) throw fail('csr-invalid', 'the CSR signature algorithm does not match its key');
  let ok: boolean;
  try {
    ok = verify(alg.hash, shape.info, publicKey, shape.signature);
  } catch (err) {
    throw fail('csr-invalid', 'the CSR signature does not verify', err);
  }
  if (!ok) throw fail('csr-invalid', 'the CSR signature does not verify');
  keyTypeOf(publicKey); // a verified CSR with a key we never issue to is still refused (unsupported-key)

  try {
    return { publicKey, ...requestedNames(der, shape.attributes) };
  } catch (err) {
    throw fail('csr-invalid', 'the CSR extension request cannot be decoded', err);
  }
}

interface CsrShape {
  /** certificationRequestInfo, tag to end: the signed bytes. */
  readonly info: Buffer;
  readonly spki: Buffer;
  /** The `[0]` attributes node, when present. */
  readonly attributes: DerNode | undefined;
  /** Content octets of the signature algorithm's OID. */
  readonly signatureOid: Buffer;
  readonly signature: Buffer;
}

/**
 * CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
 * CertificationRequestInfo ::= SEQUENCE { version INTEGER, subject Name, subjectPKInfo, attributes [0] IMPLICIT SET OF Attribute OPTIONAL }
 *
 * Fields after the ones RFC 2986 defines are skipped (a fourth CRI field must still be the
 * attributes), and the version's value is not read: the library decoder this replaced matched
 * SEQUENCEs by prefix and accepted those CSRs, and a change of decoder must not start refusing
 * requests that verify, nor accept ones it refused.
 */
function decodeShape(der: Buffer): CsrShape {
  const top = expect(readNode(der), TAG.sequence);
  if (top.end !== der.length) throw new RangeError('trailing bytes after the CSR');
  const [infoNode, algNode, sigNode] = atLeast(der, top, 3);
  const [version, subject, spkiNode, fourth] = atLeast(der, expect(infoNode, TAG.sequence), 3);
  const attributes = fourth && expect(fourth, TAG.attributes);
  expect(version, TAG.integer);
  checkName(der, expect(subject, TAG.sequence));
  checkAlgorithm(der, exactly(der, expect(spkiNode, TAG.sequence), 2)[0]);
  if (attributes) checkAttributes(der, attributes);
  const signatureOid = checkAlgorithm(der, algNode);
  expect(sigNode, TAG.bitString);
  // The first content octet counts the unused bits of the last one (X.690 8.6.2.2): 0 to 7.
  if (sigNode.end === sigNode.contentStart || der[sigNode.contentStart] > 7) throw new RangeError('malformed signature BIT STRING');
  return {
    info: raw(der, infoNode), spki: raw(der, spkiNode), attributes,
    signatureOid, signature: der.subarray(sigNode.contentStart + 1, sigNode.end),
  };
}

/** Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY } */
function checkName(der: Buffer, name: DerNode): void {
  for (const rdn of children(der, name)) {
    for (const atv of children(der, expect(rdn, TAG.set))) {
      const [type] = exactly(der, expect(atv, TAG.sequence), 2);
      expect(type, TAG.oid);
    }
  }
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }; returns the OID's content. */
function checkAlgorithm(der: Buffer, node: DerNode): Buffer {
  return content(der, expect(atLeast(der, expect(node, TAG.sequence), 1)[0], TAG.oid));
}

/** Attribute ::= SEQUENCE { type OID, values SET OF ANY } */
function checkAttributes(der: Buffer, node: DerNode): void {
  for (const attr of children(der, node)) {
    const [type, values] = atLeast(der, expect(attr, TAG.sequence), 2);
    expect(type, TAG.oid);
    children(der, expect(values, TAG.set));
  }
}

/** The URI and DNS SANs of every extensionRequest attribute (RFC 2985 5.4.2), in order. */
function requestedNames(der: Buffer, attributes: DerNode | undefined): { uriSans: string[]; dnsNames: string[] } {
  const uriSans: string[] = [];
  const dnsNames: string[] = [];
  if (!attributes) return { uriSans, dnsNames };
  for (const attr of children(der, attributes)) {
    const [type, values] = children(der, attr);
    if (!content(der, type).equals(EXTENSION_REQUEST)) continue;
    for (const value of children(der, values)) {
      // Extensions ::= SEQUENCE OF Extension; Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
      for (const ext of children(der, expect(value, TAG.sequence))) {
        // As the library did, fields after extnValue are skipped.
        const fields = atLeast(der, expect(ext, TAG.sequence), 2);
        expect(fields[0], TAG.oid);
        const valueAt = fields[1].tag === TAG.boolean ? 2 : 1;
        if (valueAt >= fields.length) throw new RangeError('an extension without extnValue');
        const extnValue = expect(fields[valueAt], TAG.octetString);
        if (!content(der, fields[0]).equals(SUBJECT_ALT_NAME)) continue;
        generalNames(content(der, extnValue), uriSans, dnsNames);
      }
    }
  }
  return { uriSans, dnsNames };
}

/** GeneralNames ::= SEQUENCE OF GeneralName (RFC 5280 4.2.1.6): keeps [6] URI and [2] dNSName, checks the others' form. */
function generalNames(buf: Buffer, uriSans: string[], dnsNames: string[]): void {
  const seq = expect(readNode(buf), TAG.sequence);
  for (const name of children(buf, seq)) {
    const number = name.tag & 0x1f;
    const constructed = (name.tag & 0x20) !== 0;
    if ((name.tag & 0xc0) !== 0x80 || number > 8) throw new RangeError(`not a GeneralName: tag 0x${name.tag.toString(16)}`);
    // otherName, x400Address, directoryName and ediPartyName are constructed; the strings, iPAddress and registeredID are not.
    if (constructed !== [0, 3, 4, 5].includes(number)) throw new RangeError(`GeneralName [${number}] has the wrong form`);
    // IA5String content: one character per octet.
    if (number === 6) uriSans.push(buf.toString('latin1', name.contentStart, name.end));
    if (number === 2) dnsNames.push(buf.toString('latin1', name.contentStart, name.end));
  }
}

/**
 * The SPKI as a KeyObject. The common case, a P-256 key with an uncompressed point, is imported
 * through its JWK coordinates: OpenSSL 3's DER decoder lookup makes `createPublicKey` on SPKI DER
 * about twice as slow. Both routes check that the point is on the curve; any other SPKI takes the DER route.
 */
function importSpki(spki: Buffer): KeyObject {
  if (spki.length === 91 && spki[0] === 0x30 && spki[1] === 89 && spki.subarray(2, 2 + EC_P256_HEAD.length).equals(EC_P256_HEAD)
    && spki[23] === 0x03 && spki[24] === 66 && spki[25] === 0 && spki[26] === 0x04) {
    return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: spki.toString('base64url', 27, 59), y: spki.toString('base64url', 59, 91) }, format: 'jwk' });
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

function expect(node: DerNode, tag: number): DerNode {
  if (node.tag !== tag) throw new RangeError(`expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)} at ${node.start}`);
  return node;
}

function atLeast(buf: Buffer, node: DerNode, n: number): DerNode[] {
  const kids = children(buf, node);
  if (kids.length < n) throw new RangeError(`expected ${n} fields, found ${kids.length} at ${node.start}`);
  return kids;
}

function exactly(buf: Buffer, node: DerNode, n: number): DerNode[] {
  const kids = children(buf, node);
  if (kids.length !== n) throw new RangeError(`expected ${n} fields, found ${kids.length} at ${node.start}`);
  return kids;
}

/** Dotted form of OID content octets, for error messages only. */
function dottedOid(c: Buffer): string {
  const arcs: number[] = [];
  let v = 0;
  for (const b of c) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  if (arcs.length === 0) return '';
  const first = arcs[0] < 80 ? Math.floor(arcs[0] / 40) : 2;
  return [first, arcs[0] - first * 40, ...arcs.slice(1)].join('.');
}

/** The DER of a CSR given as DER or PEM. */
export function csrDer(input: Buffer | string): Buffer {
  // DER always opens with a SEQUENCE tag; anything else is read as PEM text.
  if (typeof input !== 'string' && input[0] === 0x30) return input;
  const text = typeof input === 'string' ? input : input.toString('latin1');
  const m = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(text);
  if (!m) throw fail('csr-invalid', 'the input is neither DER nor a PEM CERTIFICATE REQUEST');
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}

