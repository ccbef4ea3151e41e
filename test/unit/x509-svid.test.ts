import { createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BundleSet, createX509Bundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { certificateFacts, parseCertificates, parsePrivateKey } from '../../src/identity-plane/spiffe/x509/index.js';
import { parseAndVerifyX509Svid, parseX509Svid, verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { readFixture } from '../support/conformance.js';
import { codeOf } from '../support/errors.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

const gen = (f: string) => readFixture(`fixtures/x509svid/generated/${f}`);
const certs = (f: string) => parseCertificates(gen(f));
const now = { now: new Date('2025-01-01T00:00:00Z') };
const domain1 = new BundleSet([createX509Bundle(mustTrustDomain('domain1.test'), certs('domain1-root.pem'))]);
const example = new BundleSet([createX509Bundle(EXAMPLE_ORG, certs('example-root.pem'))]);

describe('x509svid beyond the vectors', () => {
  it('builds the path whatever the order of the intermediates', () => {
    const out = verifyX509Svid(certs('example-chain-leaf-int1-int2-misordered.pem'), example, now);
    expect(out.id.toString()).toBe('spiffe://example.org/test');
    expect(out.verifiedChain).toHaveLength(4);
  });

  it('applies every leaf rule in verify too', () => {
    expect(codeOf(() => verifyX509Svid(certs('domain1-leaf-ca-true.pem'), domain1, now))).toBe('leaf-is-ca');
    expect(codeOf(() => verifyX509Svid(certs('domain1-leaf-no-keyusage-ext.pem'), domain1, now))).toBe('leaf-no-digital-signature');
    expect(codeOf(() => verifyX509Svid([], domain1, now))).toBe('empty-chain');
    expect(codeOf(() => verifyX509Svid(certs('domain1-leaf.pem'), new BundleSet(), now))).toBe('no-bundle-for-trust-domain');
  });

  it('accepts DNS SANs beside the one URI SAN and reports them', () => {
    const [leaf] = certs('domain1-leaf-with-dns-sans.pem');
    expect(verifyX509Svid([leaf], domain1, now).id.toString()).toBe('spiffe://domain1.test/workload');
    expect(certificateFacts(leaf).dnsSans).toEqual(['domain1.test', 'workload.domain1.test']);
  });

  it('treats the validity bounds as inclusive, to the millisecond', () => {
    const chain = certs('domain1-leaf-2030-one-hour.pem');
    const { notBefore, notAfter } = certificateFacts(chain[0]);
    expect(verifyX509Svid(chain, domain1, { now: notBefore }).id.toString()).toBe('spiffe://domain1.test/short');
    expect(verifyX509Svid(chain, domain1, { now: notAfter }).id.toString()).toBe('spiffe://domain1.test/short');
    expect(codeOf(() => verifyX509Svid(chain, domain1, { now: new Date(notAfter.getTime() + 1) }))).toBe('expired');
    expect(codeOf(() => verifyX509Svid(chain, domain1, { now: new Date(notBefore.getTime() - 1) }))).toBe('not-yet-valid');
  });

  it('parses and verifies a list of DER certificates', () => {
    const der = certs('example-chain-leaf-int2-int1.pem').map((c) => c.raw);
    expect(parseAndVerifyX509Svid(der, example, now).verifiedChain).toHaveLength(4);
    expect(codeOf(() => parseAndVerifyX509Svid(der, undefined, now))).toBe('bundle-required');
  });

  it('reads SEC1 and PKCS#1 PEM keys as well as PKCS#8', () => {
    const pkcs8 = createPrivateKey(gen('domain1-leaf.key.pem'));
    const sec1 = Buffer.from(pkcs8.export({ format: 'pem', type: 'sec1' }) as string);
    expect(parseX509Svid(gen('domain1-leaf.pem'), sec1).id.toString()).toBe('spiffe://domain1.test/workload');
    const rsa = parsePrivateKey(readFixture('fixtures/x509svid/go-spiffe/key-pkcs8-rsa.pem'));
    const pkcs1 = Buffer.from(rsa.export({ format: 'pem', type: 'pkcs1' }) as string);
    expect(parsePrivateKey(pkcs1).asymmetricKeyType).toBe('rsa');
    expect(codeOf(() => parsePrivateKey(Buffer.alloc(0)))).toBe('no-private-key');
  });

  it('decodes certificate facts once per certificate', () => {
    const [leaf] = certs('domain1-leaf.pem');
    expect(certificateFacts(leaf)).toBe(certificateFacts(leaf));
    expect(certificateFacts(leaf).keyUsage.digitalSignature).toBe(true);
    expect(certificateFacts(certs('domain1-root.pem')[0]).isCA).toBe(true);
  });
});
