/**
 * The server's CSR decoder (a minimal DER walk) against the library decoder it replaced, kept as
 * the oracle in test/support/csr-oracle.ts: on valid CSRs of every key type we issue to and on
 * malformed ones (structurally wrong but properly signed, and byte-mutated), both must give the
 * same key and names, or the same refusal (code and message).
 */
import { createECDH, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isSvidscopeError } from '../../src/common/errors/catalog.js';
import { encodeName, EMPTY_NAME } from '../../src/identity-plane/spiffe/mint/cert-parts.js';
import { parseCsr } from '../../src/identity-plane/spiffe/mint/csr.js';
import { bitString, boolean, derNull, ia5String, integer, octetString, oid, sequence, set, tlv, utf8String } from '../../src/identity-plane/spiffe/mint/der.js';
import { parseCsrWithLibrary } from '../support/csr-oracle.js';
import { seededRandom } from '../support/prng.js';

type Outcome = { ok: true; spki: string; uriSans: string[]; dnsNames: string[] } | { ok: false; code: string; message: string };

function outcome(fn: () => { publicKey: KeyObject; uriSans: string[]; dnsNames: string[] }): Outcome {
  try {
    const r = fn();
    return { ok: true, spki: r.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'), uriSans: r.uriSans, dnsNames: r.dnsNames };
  } catch (err) {
    if (!isSvidscopeError(err)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
}

const ALG = {
  ecdsaSha256: { id: sequence(oid('1.2.840.10045.4.3.2')), hash: 'sha256' },
  ecdsaSha384: { id: sequence(oid('1.2.840.10045.4.3.3')), hash: 'sha384' },
  ecdsaSha512: { id: sequence(oid('1.2.840.10045.4.3.4')), hash: 'sha512' },
  rsaSha256: { id: sequence(oid('1.2.840.113549.1.1.11'), derNull()), hash: 'sha256' },
  rsaSha1: { id: sequence(oid('1.2.840.113549.1.1.5'), derNull()), hash: 'sha1' },
  ecdsaSha1: { id: sequence(oid('1.2.840.10045.4.1')), hash: 'sha1' },
} as const;

const P256 = Array.from({ length: 4 }, () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }));
const P384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
const RSA = generateKeyPairSync('rsa', { modulusLength: 2048 });
const RSA_SHORT = generateKeyPairSync('rsa', { modulusLength: 1024 });
const ED25519 = generateKeyPairSync('ed25519');
const SECP256K1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
const spkiOf = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });

const SAN = oid('2.5.29.17');
const EXT_REQ = oid('1.2.840.113549.1.9.14');

function generalName(pick: () => number, i: number): Buffer {
  switch (Math.floor(pick() * 6)) {
    case 0: return tlv(0x82, Buffer.from(`host${i}.example.org`));
    case 1: return tlv(0x81, Buffer.from('ops@example.org'));
    case 2: return tlv(0x87, Buffer.from([127, 0, 0, 1]));
    case 3: return tlv(0xa4, encodeName([['CN', 'dir']]));
    default: return tlv(0x86, Buffer.from(`spiffe://example.org/w/${i}`));
  }
}

function extensionRequest(pick: () => number, malformed: boolean, note: (s: string) => void = () => undefined): Buffer {
  const names = Array.from({ length: Math.floor(pick() * 4) }, (_, i) => generalName(pick, i));
  let sanValue = sequence(...names);
  let san = sequence(SAN, ...(pick() < 0.5 ? [boolean(true)] : []), octetString(sanValue));
  const other = sequence(oid('2.5.29.19'), octetString(sequence()));
  if (malformed) {
    const variant = Math.floor(pick() * 9);
    note(`extension request variant ${variant}`);
    switch (variant) {
      case 0: sanValue = Buffer.concat([sanValue, Buffer.from([0x05, 0x00])]); break; // trailing bytes after GeneralNames
      case 1: sanValue = sequence(tlv(0x89, Buffer.from('x'))); break; // no such GeneralName
      case 2: sanValue = sequence(tlv(0xa6, ia5String('spiffe://example.org/x'))); break; // URI in constructed form
      case 3: sanValue = octetString(Buffer.from('not a sequence')); break;
      case 4: sanValue = Buffer.from([0x30, 0x05, 0x86, 0x01]); break; // truncated
      case 5: san = sequence(SAN, octetString(sanValue), octetString(sanValue)); break; // three fields, the second not a BOOLEAN
      case 6: san = sequence(SAN); break; // no extnValue
      case 7: return sequence(EXT_REQ, set(octetString(sequence(san)))); // Extensions not a SEQUENCE
      default: return sequence(EXT_REQ, sequence(sequence(san))); // values not a SET
    }
    if (Math.floor(pick() * 9) < 5) san = sequence(SAN, octetString(sanValue));
  }
  const exts = pick() < 0.5 ? [san] : [other, san];
  return sequence(EXT_REQ, set(sequence(...exts)));
}

interface Case {
  readonly name: string;
  readonly der: Buffer;
}

/** One CSR built from parts, each part valid or (with some probability) wrong in one way. ECDSA signatures are randomized, so cases are kept: a mutation then works on the very bytes the other test saw. */
const cases = new Map<number, Case>();
function generated(seed: number): Case {
  let c = cases.get(seed);
  if (!c) cases.set(seed, (c = build(seed)));
  return c;
}

// Each bad(p) draws a fresh number from the seeded PRNG, so chained `else if (bad(…))` conditions differ.
/* eslint-disable no-dupe-else-if */
function build(seed: number): Case {
  const pick = seededRandom(seed);
  const bad = (p: number) => pick() < p;
  const notes: string[] = [];
  const note = (s: string) => notes.push(s);

  const keyChoice = Math.floor(pick() * 10);
  const key = keyChoice < 5 ? P256[keyChoice % P256.length] : keyChoice === 5 ? P384 : keyChoice === 6 ? RSA : keyChoice === 7 ? RSA_SHORT : keyChoice === 8 ? ED25519 : SECP256K1;
  let alg: { id: Buffer; hash: string } = key === RSA || key === RSA_SHORT ? ALG.rsaSha256 : key === P384 ? ALG.ecdsaSha384 : ALG.ecdsaSha256;
  note(`key ${keyChoice}`);

  let version = integer(0);
  if (bad(0.05)) { version = octetString(Buffer.from([0])); note('version not INTEGER'); }
  else if (bad(0.05)) { version = tlv(0x02); note('empty version'); }
  else if (bad(0.05)) { version = integer(3); note('version 3'); }

  let subject = pick() < 0.5 ? EMPTY_NAME : encodeName([['C', 'US'], ['O', 'svidscope'], ['CN', `w${seed}`]]);
  if (bad(0.04)) { subject = sequence(sequence(sequence(oid('2.5.4.3'), utf8String('x')))); note('RDN not a SET'); }
  else if (bad(0.04)) { subject = sequence(set(sequence(utf8String('CN'), utf8String('x')))); note('attribute type not an OID'); }
  else if (bad(0.04)) { subject = sequence(set(sequence(oid('2.5.4.3')))); note('attribute without value'); }
  else if (bad(0.04)) { subject = octetString(Buffer.from('subject')); note('subject not a SEQUENCE'); }
  else if (bad(0.04)) { subject = sequence(set(sequence(oid('2.5.4.3'), tlv(0x1e, Buffer.from([0, 0x41]))))); note('BMPString value'); }

  let spki: Buffer = spkiOf(key.publicKey);
  if (key === P256[0] && bad(0.3)) {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from((key.privateKey.export({ format: 'jwk' }).d as string), 'base64url'));
    spki = sequence(spki.subarray(2, 23), bitString(ecdh.getPublicKey(null, 'compressed')));
    note('compressed point');
  } else if (bad(0.03)) {
    spki = Buffer.from(spki);
    spki[spki.length - 1] ^= 0x01;
    note('point off the curve');
  } else if (bad(0.03)) {
    spki = sequence(spki.subarray(2, 23));
    note('SPKI without key bits');
  }

  let attributes: Buffer | undefined = tlv(0xa0);
  const choice = pick();
  if (choice < 0.15) attributes = undefined;
  else if (choice < 0.75) attributes = tlv(0xa0, extensionRequest(pick, bad(0.3), note));
  else if (choice < 0.85) attributes = tlv(0xa0, sequence(oid('1.2.840.113549.1.9.7'), set(utf8String('challenge'))), extensionRequest(pick, false));
  if (bad(0.04)) { attributes = tlv(0xa0, sequence(oid('1.2.840.113549.1.9.7'))); note('attribute without values'); }
  else if (bad(0.04)) { attributes = tlv(0x31, extensionRequest(pick, false)); note('attributes as universal SET'); }
  else if (bad(0.03)) { attributes = tlv(0xa0, octetString(Buffer.from('x'))); note('attribute not a SEQUENCE'); }

  const infoParts = [version, subject, spki, ...(attributes ? [attributes] : [])];
  if (bad(0.03)) { infoParts.push(integer(1)); note('extra CRI field'); }
  if (bad(0.03)) { infoParts.splice(1, 1); note('CRI without subject'); }
  const info = sequence(...infoParts);

  if (bad(0.05)) { alg = key === RSA ? ALG.rsaSha1 : ALG.ecdsaSha1; note('SHA-1'); }
  else if (bad(0.05)) { alg = key === RSA ? ALG.ecdsaSha256 : ALG.rsaSha256; note('family mismatch'); }
  else if (bad(0.05) && key !== RSA) { alg = ALG.ecdsaSha512; note('ECDSA SHA-512'); }
  else if (bad(0.03)) { alg = { id: sequence(oid('1.3.101.112')), hash: 'sha256' }; note('Ed25519 OID'); }
  else if (bad(0.03)) { alg = { id: sequence(oid('1.2.840.10045.4.3.2'), derNull(), derNull()), hash: 'sha256' }; note('three-field AlgorithmIdentifier'); }

  let signature: Buffer;
  try {
    signature = key === ED25519 ? sign(null, info, key.privateKey) : sign(alg.hash, info, key.privateKey);
  } catch {
    signature = Buffer.alloc(64, 7);
  }
  if (bad(0.05)) { signature = sign(alg.hash === 'sha1' ? 'sha256' : alg.hash, info, P256[3].privateKey); note('signed by another key'); }
  let sigField = bitString(signature);
  if (bad(0.03)) { sigField = bitString(signature, 3); note('unused bits in the signature'); }
  else if (bad(0.03)) { sigField = octetString(signature); note('signature not a BIT STRING'); }

  const outer = [info, alg.id, sigField];
  if (bad(0.03)) { outer.push(derNull()); note('extra outer field'); }
  let der = sequence(...outer);
  if (bad(0.03)) { der = Buffer.concat([der, Buffer.from([0])]); note('trailing byte'); }
  return { name: `seed ${seed}: ${notes.join(', ') || 'valid'}`, der };
}
/* eslint-enable no-dupe-else-if */

/** A valid CSR with bytes flipped, cut, or inserted. */
function mutated(seed: number): Case {
  const pick = seededRandom(seed + 1_000_000);
  const base = generated(seed).der;
  const der = Buffer.from(base);
  const at = Math.floor(pick() * der.length);
  switch (Math.floor(pick() * 4)) {
    case 0: der[at] ^= 1 << Math.floor(pick() * 8); return { name: `seed ${seed}: flip at ${at}`, der };
    case 1: return { name: `seed ${seed}: cut at ${at}`, der: der.subarray(0, at) };
    case 2: der[at] = Math.floor(pick() * 256); return { name: `seed ${seed}: byte ${der[at]} at ${at}`, der };
    default: return { name: `seed ${seed}: insert at ${at}`, der: Buffer.concat([der.subarray(0, at), Buffer.from([Math.floor(pick() * 256)]), der.subarray(at)]) };
  }
}

describe('CSR decoder against the library oracle', () => {
  it('agrees on generated CSRs, valid and structurally malformed', () => {
    let accepted = 0;
    const reasons = new Set<string>();
    for (let seed = 1; seed <= 1000; seed++) {
      const c = generated(seed);
      const fast = outcome(() => parseCsr(c.der));
      const oracle = outcome(() => parseCsrWithLibrary(c.der));
      expect(fast, `${c.name} ${c.der.toString('hex')}`).toEqual(oracle);
      if (fast.ok) accepted++;
      else reasons.add(fast.message);
    }
    // The generator must exercise both sides: many CSRs accepted, many refused for different reasons.
    expect(accepted).toBeGreaterThan(250);
    expect(reasons.size).toBeGreaterThanOrEqual(5);
  });

  it('agrees on byte-mutated CSRs: the same answer, or a refusal with the same code', () => {
    let refused = 0;
    // A mutated CSR often breaks two rules at once (its structure and its signature); the two
    // decoders check in a different order, so only the code is compared, not which check spoke.
    const codeOnly = (o: Outcome) => (o.ok ? o : { ok: false, code: o.code });
    for (let seed = 1; seed <= 1000; seed++) {
      const c = mutated(seed);
      const fast = outcome(() => parseCsr(c.der));
      const oracle = outcome(() => parseCsrWithLibrary(c.der));
      expect(codeOnly(fast), `${c.name} ${c.der.toString('hex')}`).toEqual(codeOnly(oracle));
      if (!fast.ok) refused++;
    }
    expect(refused).toBeGreaterThan(500);
  });

  it('reads the names a CSR requests, in order, and only URI and DNS ones', () => {
    const k = P256[1];
    const info = sequence(integer(0), EMPTY_NAME, spkiOf(k.publicKey), tlv(0xa0, sequence(EXT_REQ, set(sequence(sequence(SAN, octetString(sequence(
      tlv(0x86, Buffer.from('spiffe://example.org/a')), tlv(0x82, Buffer.from('a.example.org')), tlv(0x81, Buffer.from('x@example.org')),
      tlv(0x86, Buffer.from('spiffe://example.org/b')),
    ))))))));
    const der = sequence(info, ALG.ecdsaSha256.id, bitString(sign('sha256', info, k.privateKey)));
    const parsed = parseCsr(der);
    expect(parsed.uriSans).toEqual(['spiffe://example.org/a', 'spiffe://example.org/b']);
    expect(parsed.dnsNames).toEqual(['a.example.org']);
    expect(spkiOf(parsed.publicKey)).toEqual(spkiOf(k.publicKey));
  });
});
