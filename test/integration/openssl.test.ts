/**
 * Minted SVIDs checked by the real `openssl` binary: path validation against the CA we minted
 * with (full chain and -partial_chain), the text dump SPIFFE requires (one URI SAN, CA:FALSE),
 * a wrong CA refused, and a CSR written by `openssl req` accepted (and refused once tampered).
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SvidscopeError } from '../../src/common/errors/catalog.js';
import { parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import {
  createSelfSignedCa,
  createX509SvidMinter,
  generateKeyPair,
  parseCsr,
  signIntermediateCa,
  type KeyType,
  type MintRequest,
} from '../../src/identity-plane/spiffe/mint/index.js';

const ID = parseSpiffeId('spiffe://example.org/ns/prod/sa/api');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'svidscope-openssl-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a certificate as PEM and returns its path. */
function pem(name: string, der: Buffer): string {
  const file = path.join(dir, `${name}.pem`);
  writeFileSync(file, new X509Certificate(der).toString());
  return file;
}

const openssl = (...args: string[]) => execa('openssl', args, { reject: false, all: true });

async function expectVerifies(...args: string[]): Promise<void> {
  const r = await openssl('verify', ...args);
  expect(r.all).toMatch(/: OK$/m);
  expect(r.exitCode).toBe(0);
}

async function expectSvidText(leafPem: string): Promise<void> {
  const r = await openssl('x509', '-in', leafPem, '-text', '-noout');
  expect(r.exitCode).toBe(0);
  expect(r.stdout.match(/URI:spiffe:\/\//g)).toHaveLength(1);
  expect(r.stdout).toContain(`URI:${ID.toString()}`);
  expect(r.stdout).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
  expect(r.stdout).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment, Key Agreement/);
  expect(r.stdout).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
}

function mintLeaf(caCertificate: X509Certificate, caPrivateKey: MintRequest['publicKey'], over: Partial<MintRequest> = {}): Buffer {
  const minter = createX509SvidMinter({ caCertificate, caPrivateKey });
  return minter.mint({ id: ID, publicKey: generateKeyPair().publicKey, ttlSeconds: 3600, now: new Date(), ...over }).der;
}

describe('openssl accepts minted SVIDs', () => {
  it.each(['ec-p256', 'ec-p384', 'rsa-2048'] as const)('from a %s root CA', async (keyType: KeyType) => {
    const root = createSelfSignedCa({ trustDomain: 'example.org', keyType, ttlSeconds: 86_400, now: new Date() });
    const rootPem = pem(`root-${keyType}`, root.der);
    const leafPem = pem(`leaf-${keyType}`, mintLeaf(root.certificate, root.privateKey, { dnsNames: ['api.example.org'] }));
    await expectVerifies('-CAfile', rootPem, leafPem);
    await expectVerifies('-x509_strict', '-purpose', 'sslserver', '-CAfile', rootPem, leafPem);
    await expectVerifies('-x509_strict', '-purpose', 'sslclient', '-partial_chain', '-CAfile', rootPem, leafPem);
    await expectSvidText(leafPem);
  });

  it('through an intermediate (upstream-CA mode), with the full chain and with -partial_chain', async () => {
    const now = new Date();
    const root = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p384', ttlSeconds: 7 * 86_400, now });
    const interKeys = generateKeyPair('ec-p256');
    const inter = signIntermediateCa({ parentCert: root.certificate, parentKey: root.privateKey, trustDomain: 'example.org', publicKey: interKeys.publicKey, ttlSeconds: 86_400, now });
    const rootPem = pem('chain-root', root.der);
    const interPem = pem('chain-inter', inter.der);
    const leafPem = pem('chain-leaf', mintLeaf(inter.certificate, interKeys.privateKey));
    await expectVerifies('-CAfile', rootPem, '-untrusted', interPem, leafPem);
    await expectVerifies('-x509_strict', '-CAfile', rootPem, '-untrusted', interPem, leafPem);
    await expectVerifies('-partial_chain', '-CAfile', interPem, leafPem);
    await expectSvidText(leafPem);
    // Without the intermediate, the root alone cannot vouch for the leaf.
    expect((await openssl('verify', '-CAfile', rootPem, leafPem)).exitCode).not.toBe(0);
  });

  it('with an empty subject, whose critical SAN openssl must understand', async () => {
    const root = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86_400, now: new Date() });
    const leafPem = pem('empty-subject', mintLeaf(root.certificate, root.privateKey, { subject: [] }));
    await expectVerifies('-x509_strict', '-CAfile', pem('empty-subject-root', root.der), leafPem);
    const text = (await openssl('x509', '-in', leafPem, '-text', '-noout')).stdout;
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\//);
  });

  it('but not against a different CA', async () => {
    const root = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86_400, now: new Date() });
    const other = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86_400, now: new Date() });
    const leafPem = pem('wrong-ca-leaf', mintLeaf(root.certificate, root.privateKey));
    const r = await openssl('verify', '-CAfile', pem('wrong-ca-other', other.der), leafPem);
    expect(r.exitCode).not.toBe(0);
    expect(r.all).toMatch(/unable to get local issuer certificate|certificate signature failure/);
    expect((await openssl('verify', '-partial_chain', '-CAfile', pem('wrong-ca-other-2', other.der), leafPem)).exitCode).not.toBe(0);
  });
});

describe('CSRs written by openssl req', () => {
  it.each([
    ['EC P-256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
    ['RSA 2048', ['-newkey', 'rsa:2048']],
  ])('%s: parsed, verified, minted and verified again', async (label, keyArgs) => {
    const base = path.join(dir, `req-${label.replace(/\W/g, '')}`);
    const r = await openssl('req', '-new', ...keyArgs, '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', '/O=test',
      '-addext', `subjectAltName=URI:${ID.toString()},DNS:api.example.org`);
    expect(r.exitCode, r.all).toBe(0);
    const csr = parseCsr(readFileSync(`${base}.csr`));
    expect(csr.uriSans).toEqual([ID.toString()]);
    expect(csr.dnsNames).toEqual(['api.example.org']);

    const root = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86_400, now: new Date() });
    const leafPem = pem(`${path.basename(base)}-leaf`, mintLeaf(root.certificate, root.privateKey, { publicKey: csr.publicKey, dnsNames: csr.dnsNames }));
    await expectVerifies('-CAfile', pem(`${path.basename(base)}-root`, root.der), leafPem);
    // The SVID certifies the key whose private half openssl wrote.
    const modOrPub = await openssl('x509', '-in', leafPem, '-noout', '-pubkey');
    const keyPub = await openssl('pkey', '-in', `${base}.key`, '-pubout');
    expect(modOrPub.stdout).toBe(keyPub.stdout);

    // Not execa's default of stripping a final newline: a DER whose last signature byte is 0x0a (1 in 256) would lose it.
    const der = (await execa('openssl', ['req', '-in', `${base}.csr`, '-outform', 'DER'], { encoding: 'buffer', stripFinalNewline: false })).stdout;
    const tampered = Buffer.from(der);
    tampered[tampered.indexOf(Buffer.from('test'))] ^= 0x20; // O=test -> O=Test: the signature no longer covers it
    expect(() => parseCsr(tampered)).toThrow(SvidscopeError);
    expect(() => parseCsr(tampered)).toThrow(/signature does not verify/);
  });
});
