// How the agent decides that an SVID was signed by a tainted authority: by key identifier for
// the CAs svidscope makes (self-signed, or an intermediate under an upstream CA), by the
// certificates themselves when a CA has no subject key identifier (made here by openssl).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { chainAuthorityIds, TaintedAuthorities } from '../../src/identity-plane/agent/manager/taint.js';
import { boundedHoldings, MAX_AUTHORITY_SERIES } from '../../src/identity-plane/agent/telemetry.js';
import { mustSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { certificateFacts } from '../../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, signIntermediateCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { removeDir, tempDir } from '../support/server.js';

const now = new Date();
const id = mustSpiffeId('spiffe://example.org/w');
const dir = tempDir('taint');
afterAll(() => removeDir(dir));

function leafOf(ca: X509Certificate, key: ReturnType<typeof generateKeyPair>['privateKey']): Buffer {
  return createX509SvidMinter({ caCertificate: ca, caPrivateKey: key }).mint({ id, publicKey: generateKeyPair('ec-p256').publicKey, ttlSeconds: 60, now }).der;
}
const check = (taint: TaintedAuthorities, chain: Buffer[]) => taint.chainIsTainted(chainAuthorityIds(chain.map((d) => new X509Certificate(d))), chain);
const tainted = (...cas: X509Certificate[]) => TaintedAuthorities.fromMessage({ x509_authorities: cas.map((c) => c.raw), jwt_key_ids: [] });

describe('tainted authority matching', () => {
  const oldCa = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 3600, now });
  const newCa = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 3600, now });

  it('matches a leaf by its authority key identifier, and nothing the other CA signed', () => {
    const oldLeaf = leafOf(oldCa.certificate, oldCa.privateKey);
    const newLeaf = leafOf(newCa.certificate, newCa.privateKey);
    expect(chainAuthorityIds([new X509Certificate(oldLeaf)])).toEqual([certificateFacts(oldCa.certificate).subjectKeyId]);
    expect(check(tainted(oldCa.certificate), [oldLeaf])).toBe(true);
    expect(check(tainted(oldCa.certificate), [newLeaf])).toBe(false);
    expect(check(TaintedAuthorities.none, [oldLeaf])).toBe(false);
    expect(TaintedAuthorities.fromMessage(null).empty).toBe(true);
  });

  it('matches a chain through a tainted intermediate (upstream mode), not one through its sibling', () => {
    const interKey = generateKeyPair('ec-p256');
    const inter = signIntermediateCa({ parentCert: oldCa.certificate, parentKey: oldCa.privateKey, trustDomain: 'example.org', publicKey: interKey.publicKey, ttlSeconds: 600, now });
    const siblingKey = generateKeyPair('ec-p256');
    const sibling = signIntermediateCa({ parentCert: oldCa.certificate, parentKey: oldCa.privateKey, trustDomain: 'example.org', publicKey: siblingKey.publicKey, ttlSeconds: 600, now });
    const chain = [leafOf(inter.certificate, interKey.privateKey), inter.der];
    const siblingChain = [leafOf(sibling.certificate, siblingKey.privateKey), sibling.der];
    expect(check(tainted(inter.certificate), chain)).toBe(true);
    expect(check(tainted(inter.certificate), siblingChain)).toBe(false);
    // The root above both is named by the intermediates' authority key identifiers.
    expect(check(tainted(oldCa.certificate), siblingChain)).toBe(true);
  });

  it('falls back to the certificates when the CA has no key identifiers', async () => {
    const make = async (name: string) => {
      const r = await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, `${name}.key`), '-out', path.join(dir, `${name}.pem`),
        '-subj', `/CN=${name}`, '-days', '1', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
        '-addext', 'subjectKeyIdentifier=none', '-addext', 'authorityKeyIdentifier=none'], { reject: false, all: true });
      expect(r.exitCode, r.all).toBe(0);
      return { cert: new X509Certificate(readFileSync(path.join(dir, `${name}.pem`))), key: createPrivateKey(readFileSync(path.join(dir, `${name}.key`))) };
    };
    const [a, b] = await Promise.all([make('plain-a'), make('plain-b')]);
    expect(certificateFacts(a.cert).subjectKeyId).toBeUndefined();
    const leafA = leafOf(a.cert, a.key);
    expect(chainAuthorityIds([new X509Certificate(leafA)])).toEqual(['']);
    expect(check(tainted(a.cert), [leafA])).toBe(true); // signature checked with the tainted CA's key
    expect(check(tainted(b.cert), [leafA])).toBe(false);
    expect(check(tainted(a.cert), [leafOf(b.cert, b.key), a.cert.raw])).toBe(true); // the CA itself in the chain
    // An intermediate under a root without key identifiers names no signer, though its leaf does:
    // the chain still passes through the tainted root (an upstream authority outside the chain).
    const interKey = generateKeyPair('ec-p256');
    const inter = signIntermediateCa({ parentCert: a.cert, parentKey: a.key, trustDomain: 'example.org', publicKey: interKey.publicKey, ttlSeconds: 600, now });
    const chain = [leafOf(inter.certificate, interKey.privateKey), inter.der];
    expect(chainAuthorityIds(chain.map((d) => new X509Certificate(d)))[0]).toBe(certificateFacts(inter.certificate).subjectKeyId);
    expect(check(tainted(a.cert), chain)).toBe(true);
    expect(check(tainted(b.cert), chain)).toBe(false);
  });

  it('keeps the authority_key_id label bounded: unknown for none, other past the cap', () => {
    const many = Array.from({ length: MAX_AUTHORITY_SERIES + 3 }, (_, i) => ({ kind: 'x509' as const, authorityKeyId: `k${i}`, count: 100 - i, oldestIssuedAtMs: 1000 + i }));
    const out = boundedHoldings([...many, { kind: 'jwt', authorityKeyId: '', count: 2, oldestIssuedAtMs: 5 }]);
    expect(out.filter((h) => h.kind === 'x509')).toHaveLength(MAX_AUTHORITY_SERIES + 1);
    expect(out.find((h) => h.authorityKeyId === 'other')).toMatchObject({ count: (100 - 16) + (100 - 17) + (100 - 18), oldestIssuedAtMs: 1016 });
    expect(out.find((h) => h.kind === 'jwt')).toMatchObject({ authorityKeyId: 'unknown', count: 2 });
  });
});
