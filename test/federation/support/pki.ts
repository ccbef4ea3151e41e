import type { X509Certificate } from 'node:crypto';
import { createSpiffeBundle, spiffeBundleToJson, type SpiffeBundle } from '../../../src/identity-plane/spiffe/bundle/index.js';
import { parseSpiffeId, mustTrustDomain } from '../../../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../../../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, type SelfSignedCa, type X509SvidMinter } from '../../../src/identity-plane/spiffe/mint/index.js';

/** A throwaway CA of trust domain `td` and a minter for leaf certificates under it. */
export interface TestCa {
  ca: SelfSignedCa;
  minter: X509SvidMinter;
  certificate: X509Certificate;
  pem: string;
}

export function testCa(td: string, now = new Date()): TestCa {
  const ca = createSelfSignedCa({ trustDomain: td, ttlSeconds: 86_400, now: new Date(now.getTime() - 60_000) });
  return { ca, minter: createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey }), certificate: ca.certificate, pem: encodePem('CERTIFICATE', ca.der) };
}

/** A TLS identity (PEM chain and key) for `id`, signed by `ca`; `dnsNames` make it usable for https_web. */
export function tlsIdentity(ca: TestCa, id: string, dnsNames: string[] = [], now = new Date()): { cert: string; key: string } {
  const key = generateKeyPair('ec-p256');
  const minted = ca.minter.mint({ id: parseSpiffeId(id), publicKey: key.publicKey, ttlSeconds: 3600, now: new Date(now.getTime() - 60_000), dnsNames });
  return { cert: encodePem('CERTIFICATE', minted.der), key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

export function bundleOf(td: string, cas: TestCa[], sequence?: bigint, refreshHintSeconds?: number): SpiffeBundle {
  return createSpiffeBundle({ trustDomain: mustTrustDomain(td), x509Authorities: cas.map((c) => c.certificate), sequenceNumber: sequence, refreshHintSeconds });
}

export function bundleJson(td: string, cas: TestCa[], sequence?: bigint, refreshHintSeconds?: number): string {
  return spiffeBundleToJson(bundleOf(td, cas, sequence, refreshHintSeconds));
}
