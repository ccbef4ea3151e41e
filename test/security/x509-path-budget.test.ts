// Issue 14, item 2: exponential X.509 path building. The report's chain (a leaf and 11
// intermediates with one name and key) took the CLI 46 s, froze the prober and pinned a federating
// server. Path building now collapses copies of one CA (same subject and key) and runs within a
// budget of signature checks, visited certificates and chain length; hitting the budget is the
// catalogue code `x509-path-budget`, counted in the limit-refusal metrics.
// This file drives the library and the CLI; x509-path-budget-processes.test.ts drives the prober and a
// federating server against a hostile TLS endpoint.
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleSet, createSpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseSpiffeId, mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, signIntermediateCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { PathBudgetError, verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { cliProcess } from '../support/cli.js';
import { removeDir, tempDir } from '../support/server.js';
import { loopChain, signatureBudgetChain, type HostileChain } from './support/hostile-chain.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const NOW = new Date();
const TD = 'evil.test';
const ID = 'spiffe://evil.test/workload';
// The bound is 100 ms; asserted with a margin for a loaded 2-core CI machine, and logged.
const BOUND_MS = 1000;

let unreachable: HostileChain;
let reachable: HostileChain;
let budget: HostileChain;

beforeAll(async () => {
  [unreachable, reachable, budget] = await Promise.all([
    loopChain({ id: ID, trustDomain: TD, now: NOW, reachable: false }),
    loopChain({ id: ID, trustDomain: TD, now: NOW, reachable: true }),
    signatureBudgetChain({ id: ID, trustDomain: TD, now: NOW }),
  ]);
});

function timed<T>(label: string, fn: () => T): { value?: T; error?: unknown; ms: number } {
  const start = performance.now();
  try {
    const value = fn();
    return { value, ms: log(label, performance.now() - start) };
  } catch (error) {
    return { error, ms: log(label, performance.now() - start) };
  }
}

function log(label: string, ms: number): number {
  console.log(`[x509-path-budget] ${label}: ${ms.toFixed(1)} ms`);
  return ms;
}

const bundlesOf = (h: HostileChain) => new BundleSet([createSpiffeBundle({ trustDomain: mustTrustDomain(TD), x509Authorities: [h.root] })]);

describe('path building through the library', () => {
  it('the report\'s chain (11 copies of one CA, no path to the bundle) fails fast as unknown-authority', () => {
    expect(unreachable.chain).toHaveLength(12);
    const r = timed('11 copies, unreachable', () => verifyX509Svid(unreachable.chain, bundlesOf(unreachable), { now: NOW }));
    expect(r.error).toMatchObject({ code: 'unknown-authority' });
    expect(r.ms).toBeLessThan(BOUND_MS);
  });

  it('with a valid copy behind ten expired ones, it verifies fast through the valid copy', () => {
    const r = timed('11 copies, one valid', () => verifyX509Svid(reachable.chain, bundlesOf(reachable), { now: NOW }));
    expect(r.error).toBeUndefined();
    expect(r.value!.id.toString()).toBe(ID);
    expect(r.value!.verifiedChain.map((c) => c.fingerprint256)).toEqual([reachable.chain[0], reachable.chain[11], reachable.root].map((c) => c.fingerprint256));
    expect(r.ms).toBeLessThan(BOUND_MS);
  });

  it('a chain that needs more than 100 signature checks stops at the budget with x509-path-budget', () => {
    expect(budget.chain).toHaveLength(16);
    const r = timed('signature budget', () => verifyX509Svid(budget.chain, bundlesOf(budget), { now: NOW }));
    expect(r.error).toBeInstanceOf(PathBudgetError);
    expect(r.error).toMatchObject({ code: 'x509-path-budget', limit: 'x509_path_signature_checks' });
    expect((r.error as Error).message).toContain('more than 100 signature checks (x509_path_signature_checks)');
    expect(r.ms).toBeLessThan(BOUND_MS);
    // The limit is an option: with a larger budget the same chain verifies through its valid intermediate.
    const roomy = verifyX509Svid(budget.chain, bundlesOf(budget), { now: NOW, limits: { maxSignatureChecks: 200 } });
    expect(roomy.verifiedChain).toHaveLength(3);
  });

  it('refuses more certificates than the chain-length limit before building anything, and bounds visited certificates', () => {
    const long = [...budget.chain, reachable.chain[1]]; // 17 distinct certificates
    expect(() => verifyX509Svid(long, bundlesOf(budget), { now: NOW })).toThrow(expect.objectContaining({ code: 'x509-path-budget', limit: 'x509_path_chain_length' }));
    // A root placed in the chain (as TLS stacks append it) is an authority, not counted.
    expect(verifyX509Svid([...reachable.chain, reachable.root], bundlesOf(reachable), { now: NOW }).verifiedChain).toHaveLength(3);
    expect(() => verifyX509Svid(reachable.chain, bundlesOf(reachable), { now: NOW, limits: { maxVisitedCertificates: 3 } }))
      .toThrow(expect.objectContaining({ code: 'x509-path-budget', limit: 'x509_path_visited_certificates' }));
  });

  it('a legitimate chain with three intermediates still verifies', () => {
    const root = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86_400, now: new Date(NOW.getTime() - 60_000) });
    let parent = { certificate: root.certificate, privateKey: root.privateKey };
    const intermediates = [];
    for (let i = 0; i < 3; i++) {
      const keys = generateKeyPair('ec-p256');
      const ca = signIntermediateCa({ parentCert: parent.certificate, parentKey: parent.privateKey, trustDomain: 'example.org', publicKey: keys.publicKey, ttlSeconds: 3600, now: new Date(NOW.getTime() - 30_000) });
      intermediates.push(ca.certificate);
      parent = { certificate: ca.certificate, privateKey: keys.privateKey };
    }
    const leafKey = generateKeyPair('ec-p256');
    const leaf = createX509SvidMinter({ caCertificate: parent.certificate, caPrivateKey: parent.privateKey })
      .mint({ id: parseSpiffeId('spiffe://example.org/web'), publicKey: leafKey.publicKey, ttlSeconds: 600, now: NOW });
    const chain = [new X509Certificate(leaf.der), ...intermediates.reverse()];
    const verified = verifyX509Svid(chain, new BundleSet([createSpiffeBundle({ trustDomain: EXAMPLE_ORG, x509Authorities: [root.certificate] })]), { now: NOW });
    expect(verified.id.toString()).toBe('spiffe://example.org/web');
    expect(verified.verifiedChain).toHaveLength(5);
  });
});

describe('path building through the CLI (svidscope x509-svid verify, a real process)', () => {
  const dir = tempDir('x509-path-budget-cli');
  afterAll(() => removeDir(dir));

  async function verifyCli(name: string, h: HostileChain) {
    const chain = path.join(dir, `${name}.pem`);
    const bundle = path.join(dir, `${name}-bundle.pem`);
    writeFileSync(chain, h.chainPem);
    writeFileSync(bundle, encodePem('CERTIFICATE', h.root.raw));
    const start = performance.now();
    const r = await cliProcess('x509-svid', 'verify', '--chain', chain, '--bundle', bundle, '--json');
    log(`CLI ${name} (whole process)`, performance.now() - start);
    return r;
  }

  it('fails the report\'s chain with unknown-authority and the budget chain with x509-path-budget, each within seconds', async () => {
    const a = await verifyCli('unreachable', unreachable);
    expect(a.code).toBe(1);
    expect(JSON.parse(a.stdout)).toMatchObject({ valid: false, error: 'unknown-authority' });
    const b = await verifyCli('budget', budget);
    expect(b.code).toBe(1);
    expect(JSON.parse(b.stdout)).toMatchObject({ valid: false, error: 'x509-path-budget' });
    expect(JSON.parse(b.stdout).message).toContain('x509_path_signature_checks');
  }, 60_000);
});
