import { createECDH, createPublicKey, generateKeyPairSync, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import {
  createSelfSignedCa,
  createX509SvidMinter,
  generateKeyPair,
  parseCsr,
  signIntermediateCa,
  type KeyType,
  type MintRequest,
  type SelfSignedCa,
} from '../../src/identity-plane/spiffe/mint/index.js';
import { rememberSpki, spkiOf as mintSpkiOf } from '../../src/identity-plane/spiffe/mint/cert-parts.js';
import { codeOf } from '../support/errors.js';
import { ecdsaKeyPair } from '../support/webcrypto-keys.js';

await import('reflect-metadata'); // @peculiar/x509 2.x needs the Reflect metadata polyfill
const x509 = await import('@peculiar/x509');

const NOW = new Date('2030-03-01T12:00:00.250Z');
const ID = parseSpiffeId('spiffe://example.org/ns/prod/sa/web');

function mintWith(ca: SelfSignedCa, over: Partial<MintRequest> & { keyType?: KeyType } = {}) {
  const publicKey = over.publicKey ?? generateKeyPair(over.keyType ?? 'ec-p256').publicKey;
  const minted = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey }).mint({ id: ID, ttlSeconds: 3600, now: NOW, ...over, publicKey });
  return { minted, node: new X509Certificate(minted.der), peculiar: new x509.X509Certificate(minted.der), publicKey };
}

describe('X509-SVID minting', () => {
  let ca: SelfSignedCa;
  beforeAll(() => {
    ca = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p256', ttlSeconds: 86_400, now: NOW });
  });

  it('writes the fields SPIRE writes and nothing the spec forbids', () => {
    const { minted, node, peculiar, publicKey } = mintWith(ca);
    expect(node.verify(ca.publicKey)).toBe(true);
    expect(node.checkIssued(ca.certificate)).toBe(true);
    expect(node.ca).toBe(false);
    expect(node.subjectAltName).toBe('URI:spiffe://example.org/ns/prod/sa/web');
    expect(node.subject).toBe('C=US\nO=SPIRE');
    expect(node.issuer).toBe(ca.certificate.subject);
    expect(peculiar.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-256' } });

    const bc = peculiar.getExtension(x509.BasicConstraintsExtension)!;
    expect([bc.critical, bc.ca]).toEqual([true, false]);
    const ku = peculiar.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.critical).toBe(true);
    expect(ku.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement);
    expect(peculiar.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    const san = peculiar.getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.critical).toBe(false);
    expect(san.names.items.map((n) => [n.type, n.value])).toEqual([['url', ID.toString()]]);
    const caSki = new x509.X509Certificate(ca.der).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
    expect(peculiar.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId).toBe(caSki);
    expect(peculiar.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId).toMatch(/^[0-9a-f]{40}$/);

    // The hand-built SPKI is the one node itself would export.
    expect(node.publicKey.export({ type: 'spki', format: 'der' })).toEqual(publicKey.export({ type: 'spki', format: 'der' }));
    expect(BigInt('0x' + node.serialNumber)).toBe(minted.serial);
  });

  it('backdates notBefore by 10 s, ends at now + TTL in whole seconds, and never outlives the CA', () => {
    const { minted, node } = mintWith(ca, { ttlSeconds: 600 });
    expect(minted.notBefore.toISOString()).toBe('2030-03-01T11:59:50.000Z');
    expect(minted.notAfter.toISOString()).toBe('2030-03-01T12:10:00.000Z');
    expect(new Date(node.validFrom).getTime()).toBe(minted.notBefore.getTime());
    expect(new Date(node.validTo).getTime()).toBe(minted.notAfter.getTime());

    const long = mintWith(ca, { ttlSeconds: 7 * 86_400 });
    expect(long.minted.notAfter.getTime()).toBe(new Date(ca.certificate.validTo).getTime());
    expect(new Date(long.node.validTo).getTime()).toBeLessThanOrEqual(new Date(ca.certificate.validTo).getTime());
  });

  it('draws positive, unique serials of at most 128 bits, and honours an explicit serial', () => {
    const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
    const { publicKey } = generateKeyPair();
    const serials = new Set<bigint>();
    for (let i = 0; i < 500; i++) {
      const { serial, der } = minter.mint({ id: ID, publicKey, ttlSeconds: 60, now: NOW });
      expect(serial > 0n && serial < 2n ** 128n).toBe(true);
      expect(BigInt('0x' + new X509Certificate(der).serialNumber)).toBe(serial);
      serials.add(serial);
    }
    expect(serials.size).toBe(500);
    expect(minter.mint({ id: ID, publicKey, ttlSeconds: 60, now: NOW, serial: 0xff01n }).serial).toBe(0xff01n);
    expect(codeOf(() => minter.mint({ id: ID, publicKey, ttlSeconds: 60, now: NOW, serial: 0n }))).toBe('config-invalid');
    expect(codeOf(() => minter.mint({ id: ID, publicKey, ttlSeconds: 60, now: NOW, serial: 2n ** 160n }))).toBe('config-invalid');
  });

  it('adds DNS SANs after the one URI SAN, with the first as CN, and makes the SAN critical for an empty subject', () => {
    const { node, peculiar } = mintWith(ca, { dnsNames: ['web.example.org', 'web'] });
    expect(node.subjectAltName).toBe('URI:spiffe://example.org/ns/prod/sa/web, DNS:web.example.org, DNS:web');
    expect(node.subject).toBe('C=US\nO=SPIRE\nCN=web.example.org');
    expect(peculiar.getExtension(x509.SubjectAlternativeNameExtension)!.names.items.filter((n) => n.type === 'url')).toHaveLength(1);

    const empty = mintWith(ca, { subject: [] });
    expect(empty.node.subject ?? '').toBe(''); // node reports an empty Name as undefined
    expect(empty.peculiar.getExtension(x509.SubjectAlternativeNameExtension)!.critical).toBe(true);
    expect(empty.node.verify(ca.publicKey)).toBe(true);
  });

  it.each([
    ['ec-p384', 'ECDSA', 'SHA-384'],
    ['rsa-2048', 'RSASSA-PKCS1-v1_5', 'SHA-256'],
  ] as const)('signs with a %s CA', (keyType, name, hash) => {
    const other = createSelfSignedCa({ trustDomain: 'example.org', keyType, ttlSeconds: 86_400, now: NOW });
    for (const leafType of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
      const { node, peculiar, publicKey } = mintWith(other, { keyType: leafType });
      expect(node.verify(other.publicKey)).toBe(true);
      expect(peculiar.signatureAlgorithm).toMatchObject({ name, hash: { name: hash } });
      expect(node.publicKey.export({ type: 'spki', format: 'der' })).toEqual(publicKey.export({ type: 'spki', format: 'der' }));
    }
  });

  it('mints through an intermediate capped at its parent', () => {
    const inter = generateKeyPair('ec-p256');
    const signed = signIntermediateCa({ parentCert: ca.certificate, parentKey: ca.privateKey, trustDomain: 'example.org', publicKey: inter.publicKey, ttlSeconds: 10 * 86_400, now: NOW });
    expect(signed.certificate.ca).toBe(true);
    expect(signed.certificate.verify(ca.publicKey)).toBe(true);
    expect(signed.certificate.validTo).toBe(ca.certificate.validTo);
    const minter = createX509SvidMinter({ caCertificate: signed.certificate, caPrivateKey: inter.privateKey });
    const leaf = new X509Certificate(minter.mint({ id: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: 60, now: NOW }).der);
    expect(leaf.checkIssued(signed.certificate) && leaf.verify(inter.publicKey)).toBe(true);
  });

  it('switches to GeneralizedTime from 2050 (RFC 5280 4.1.2.5)', () => {
    const now = new Date('2049-12-31T23:30:00Z');
    const late = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86_400, now });
    const { minted, node } = mintWith(late, { now, ttlSeconds: 3600 });
    expect(minted.notAfter.toISOString()).toBe('2050-01-01T00:30:00.000Z');
    expect(new Date(node.validTo).toISOString()).toBe('2050-01-01T00:30:00.000Z');
    expect(minted.der.includes(Buffer.from('20500101003000Z'))).toBe(true);
    expect(minted.der.includes(Buffer.from('491231232950Z'))).toBe(true);
  });

  it('refuses what SPIRE refuses', () => {
    const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
    const { publicKey } = generateKeyPair();
    const req = { id: ID, publicKey, ttlSeconds: 60, now: NOW };
    expect(codeOf(() => minter.mint({ ...req, ttlSeconds: 0 }))).toBe('ttl-invalid');
    expect(codeOf(() => minter.mint({ ...req, ttlSeconds: -5 }))).toBe('ttl-invalid');
    expect(codeOf(() => minter.mint({ ...req, ttlSeconds: Number.NaN }))).toBe('ttl-invalid');
    expect(codeOf(() => minter.mint({ ...req, id: parseSpiffeId('spiffe://example.org') }))).toBe('leaf-root-path');
    expect(codeOf(() => minter.mint({ ...req, id: parseSpiffeId('spiffe://other.org/web') }))).toBe('invalid-spiffe-id');
    expect(codeOf(() => minter.mint({ ...req, publicKey: generateKeyPairSync('ed25519').publicKey }))).toBe('unsupported-key');
    expect(codeOf(() => minter.mint({ ...req, publicKey: generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey }))).toBe('unsupported-key');
    expect(codeOf(() => minter.mint({ ...req, dnsNames: ['bad name'] }))).toBe('config-invalid');
    expect(codeOf(() => minter.mint({ ...req, now: new Date('2030-03-03T00:00:00Z') }))).toBe('expired');
    expect(codeOf(() => createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: generateKeyPair().privateKey }))).toBe('ca-key-mismatch');
    const leaf = mintWith(ca);
    expect(codeOf(() => createX509SvidMinter({ caCertificate: leaf.node, caPrivateKey: ca.privateKey }))).toBe('signing-cert-not-ca');
    expect(codeOf(() => createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 0, now: NOW }))).toBe('ttl-invalid');
  });
});

describe('CSR parsing', () => {
  async function makeCsr(names: { type: 'url' | 'dns'; value: string }[]) {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = await ecdsaKeyPair();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: alg,
      extensions: names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [],
    });
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    return { der: Buffer.from(csr.rawData), pem: csr.toString('pem'), spki };
  }
  const spkiOf = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });

  it('round-trips key and requested names from DER and PEM, and the key mints', async () => {
    const csr = await makeCsr([
      { type: 'url', value: 'spiffe://example.org/agent' },
      { type: 'dns', value: 'agent.example.org' },
    ]);
    for (const input of [csr.der, Buffer.from(csr.pem)]) {
      const parsed = parseCsr(input);
      expect(spkiOf(parsed.publicKey)).toEqual(csr.spki);
      expect(parsed.uriSans).toEqual(['spiffe://example.org/agent']);
      expect(parsed.dnsNames).toEqual(['agent.example.org']);
    }
    const bare = parseCsr((await makeCsr([])).der);
    expect([bare.uriSans, bare.dnsNames]).toEqual([[], []]);
    const ca = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 3600, now: NOW });
    const { der } = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey }).mint({ id: ID, publicKey: bare.publicKey, ttlSeconds: 60, now: NOW });
    expect(spkiOf(new X509Certificate(der).publicKey)).toEqual(spkiOf(bare.publicKey));
  });

  it('refuses a tampered signature, tampered content, and garbage with csr-invalid', async () => {
    const { der } = await makeCsr([{ type: 'url', value: 'spiffe://example.org/agent' }]);
    const badSig = Buffer.from(der);
    badSig[badSig.length - 5] ^= 0x01;
    expect(codeOf(() => parseCsr(badSig))).toBe('csr-invalid');
    const badInfo = Buffer.from(der);
    const at = badInfo.indexOf(Buffer.from('spiffe://example.org/agent'));
    badInfo[at + 'spiffe://example.org/'.length] = 'b'.charCodeAt(0); // agent -> bgent
    expect(codeOf(() => parseCsr(badInfo))).toBe('csr-invalid');
    expect(codeOf(() => parseCsr(der.subarray(0, der.length - 10)))).toBe('csr-invalid');
    expect(codeOf(() => parseCsr(Buffer.from('not a csr')))).toBe('csr-invalid');
    expect(codeOf(() => parseCsr(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])))).toBe('csr-invalid');
  });

  it('reuses CSR SPKI bytes only in canonical form (a compressed point is re-encoded)', () => {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const head = Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex');
    const compressedSpki = Buffer.concat([head, ecdh.getPublicKey(undefined, 'compressed')]);
    const key = createPublicKey({ key: compressedSpki, format: 'der', type: 'spki' });
    rememberSpki(key, compressedSpki);
    const { spki } = mintSpkiOf(key);
    const uncompressedHead = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
    expect(spki).toEqual(Buffer.concat([uncompressedHead, ecdh.getPublicKey()]));
  });
});
