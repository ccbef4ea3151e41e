// The https_spiffe bundle endpoint after a key-compromise response: a CA rotation alone does not
// re-mint its X509-SVID (peers that have not fetched the new CA still authenticate it), but once
// its CA is revoked it presents an SVID of the active CA, before a peer can fetch the bundle that no
// longer holds the old one. Otherwise the peer, verifying against that bundle, could never refresh
// again until the SVID's half-life (the key-compromise drill found it: the peer stuck at the revoke).
import { X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import { afterAll, expect, it } from 'vitest';
import { certificateFacts } from '../../src/identity-plane/spiffe/x509/index.js';
import { removeDir, startTestServer, type TestServer } from '../support/server.js';

let t: TestServer | undefined;
afterAll(async () => {
  await t?.stop();
  if (t) removeDir(t.dir);
});

/** The authority key id of the certificate the endpoint presents now. */
function presentedSigner(url: string): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), rejectUnauthorized: false }, () => {
      const der = socket.getPeerCertificate().raw;
      socket.end();
      resolve(certificateFacts(new X509Certificate(der)).authorityKeyId);
    });
    socket.on('error', reject);
  });
}

it('re-mints the endpoint SVID when its CA is revoked, not on the rotation itself', async () => {
  t = await startTestServer({ federation: { bundle_endpoint: { bind: '127.0.0.1:0', profile: 'https_spiffe' } } });
  const url = t.server.bundleEndpointUrl!;
  type Slots = { slots: { kind: string; phase: string; key_id: string }[] };
  const lifecycle = (operation: string, keyId = '') => t!.admin.call<Slots>('AuthorityLifecycle', { kind: 'x509', operation, key_id: keyId });
  const old = (await t.admin.call<Slots>('CaStatus', {})).slots.find((s) => s.kind === 'x509' && s.phase === 'active')!.key_id;
  expect(await presentedSigner(url)).toBe(old);

  const next = (await lifecycle('prepare')).slots.find((s) => s.kind === 'x509' && s.phase === 'prepared')!.key_id;
  await lifecycle('activate', next);
  expect(await presentedSigner(url)).toBe(old); // a rotation alone keeps it: peers may not have the new CA yet
  await lifecycle('taint', old);
  await lifecycle('revoke', old);
  expect(await presentedSigner(url)).toBe(next);
}, 30_000);
