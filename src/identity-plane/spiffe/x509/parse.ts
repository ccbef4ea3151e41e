import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { errorFactory, SvidscopeError } from '../../../common/errors/catalog.js';
import { derElement } from './cert-facts.js';
import { isPem, scanPem } from './pem.js';

export { certificateFacts, type CertificateFacts, type KeyUsageBits } from './cert-facts.js';

/** `pem` accepts only PEM, `der` only DER, `auto` (the default) looks at the input. */
export type InputFormat = 'pem' | 'der' | 'auto';

export interface ParseOptions {
  readonly format?: InputFormat;
  /** The area prefix of error messages (`x509svid`, `x509bundle`…). */
  readonly area?: string;
}

const KEY_BLOCKS: Record<string, 'pkcs8' | 'sec1' | 'pkcs1'> = {
  'PRIVATE KEY': 'pkcs8',
  'EC PRIVATE KEY': 'sec1',
  'RSA PRIVATE KEY': 'pkcs1',
};

function pickFormat(input: Buffer, format: InputFormat): 'pem' | 'der' {
  if (format !== 'auto') return format;
  // A DER certificate or key starts with a SEQUENCE tag; anything else that is not PEM is reported as not PEM.
  return isPem(input) || input[0] !== 0x30 ? 'pem' : 'der';
}

/** Splits concatenated DER elements (the Workload API encoding of chains and bundles). */
export function splitDer(input: Buffer, area = 'x509'): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < input.length; ) {
    let end: number;
    try {
      end = derElement(input, at).end;
    } catch (err) {
      throw errorFactory(area)('malformed-certificate', 'unable to parse certificate: malformed DER', err);
    }
    out.push(input.subarray(at, end));
    at = end;
  }
  return out;
}

function toCertificate(der: Buffer, area: string): X509Certificate {
  try {
    // OpenSSL ignores bytes after the certificate; Go's parser (and so the vectors) does not.
    if (derElement(der, 0).end !== der.length) throw new SvidscopeError('malformed-certificate', 'trailing data after certificate');
    return new X509Certificate(der);
  } catch (err) {
    throw errorFactory(area)('malformed-certificate', 'unable to parse certificate: x509: malformed certificate', err);
  }
}

/**
 * Parses one or more certificates: PEM `CERTIFICATE` blocks (other blocks such as keys are skipped,
 * so a cert-and-key file works) or concatenated DER. Empty input or PEM without a certificate block
 * is `no-certificates`.
 */
export function parseCertificates(input: Buffer, opts: ParseOptions = {}): X509Certificate[] {
  const area = opts.area ?? 'x509';
  const fail = errorFactory(area);
  if (input.length === 0) throw fail('no-certificates', 'no certificates found');
  if (pickFormat(input, opts.format ?? 'auto') === 'der') {
    return splitDer(input, area).map((der) => toCertificate(der, area));
  }
  const blocks = scanPem(input);
  if (blocks.length === 0) throw fail('not-pem', 'unable to parse certificates: no PEM blocks found');
  const certs = blocks.filter((b) => b.type === 'CERTIFICATE').map((b) => toCertificate(b.der, area));
  if (certs.length === 0) throw fail('no-certificates', 'no certificates found');
  return certs;
}

/**
 * Parses a private key: the first PEM key block (PKCS#8, SEC1 or PKCS#1) or DER PKCS#8. Encrypted
 * keys are not supported (SVID keys are delivered in the clear over the Workload API).
 */
export function parsePrivateKey(input: Buffer, opts: ParseOptions = {}): KeyObject {
  const area = opts.area ?? 'x509';
  const fail = errorFactory(area);
  if (input.length === 0) throw fail('no-private-key', 'no private key found');
  let der: Buffer;
  let type: 'pkcs8' | 'sec1' | 'pkcs1' = 'pkcs8';
  if (pickFormat(input, opts.format ?? 'auto') === 'der') {
    der = input;
  } else {
    const blocks = scanPem(input);
    if (blocks.length === 0) throw fail('not-pem', 'unable to parse private key: no PEM blocks found');
    const block = blocks.find((b) => b.type in KEY_BLOCKS);
    if (block === undefined) throw fail('no-private-key', 'no private key found');
    der = block.der;
    type = KEY_BLOCKS[block.type];
  }
  try {
    return createPrivateKey({ key: der, format: 'der', type });
  } catch (err) {
    throw fail('malformed-private-key', `unable to parse ${type} private key`, err);
  }
}

/** True when two keys have the same public half (SPKI DER equality); private keys are reduced first. */
export function samePublicKey(a: KeyObject, b: KeyObject): boolean {
  const spki = (k: KeyObject) => (k.type === 'private' ? createPublicKey(k) : k).export({ format: 'der', type: 'spki' });
  return spki(a).equals(spki(b));
}
