// The server under an operator's upstream CA: it signs with an intermediate, the bundle holds the
// upstream root, and SVIDs carry the intermediate — verified by our verifier and by openssl.
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { BundleSet } from '../../src/identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/ca.js';
import { verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { attestAgent, removeDir, startTestServer, tempDir, type TestServer } from '../support/server.js';

const dir = tempDir('upstream');
let t: TestServer | undefined;
afterAll(async () => {
  await t?.stop();
  removeDir(dir);
});

describe('upstream CA', () => {
  it('signs with an intermediate under the operator CA, published as the root of the bundle', async () => {
    const upstream = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p256', ttlSeconds: 7 * 86400, now: new Date() });
    const certFile = path.join(dir, 'upstream.pem');
    const keyFile = path.join(dir, 'upstream.key');
    writeFileSync(certFile, encodePem('CERTIFICATE', upstream.der));
    writeFileSync(keyFile, upstream.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    t = await startTestServer({ ca: { upstream: { cert_file: certFile, key_file: keyFile }, ttl: '24h' } }, {}, path.join(dir, 'server'));

    const bundle = t.server.bundles.current;
    expect(bundle.x509Authorities.map((a) => a.cert.fingerprint256)).toEqual([upstream.certificate.fingerprint256]);
    const agent = await attestAgent(t);
    expect(agent.chainDer).toHaveLength(2); // leaf + the server's intermediate
    const chain = agent.chainDer.map((d) => new X509Certificate(d));
    expect(chain[1].ca).toBe(true);
    expect(chain[0].checkIssued(chain[1])).toBe(true); // leaf issued by the intermediate
    expect(chain[1].checkIssued(upstream.certificate)).toBe(true); // intermediate issued by the upstream CA
    expect(verifyX509Svid(chain, new BundleSet([bundle]), { now: new Date() }).id.toString()).toBe(agent.spiffeId);

    writeFileSync(path.join(dir, 'leaf.pem'), encodePem('CERTIFICATE', agent.chainDer[0]));
    writeFileSync(path.join(dir, 'intermediate.pem'), encodePem('CERTIFICATE', agent.chainDer[1]));
    const r = await execa('openssl', ['verify', '-CAfile', certFile, '-untrusted', path.join(dir, 'intermediate.pem'), path.join(dir, 'leaf.pem')], { reject: false });
    expect(`${r.stdout}${r.stderr}`).toContain('OK');
    expect(r.exitCode).toBe(0);
  });

  it('refuses to start with a key that does not match the upstream certificate', async () => {
    const a = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p256', ttlSeconds: 86400, now: new Date() });
    const b = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p256', ttlSeconds: 86400, now: new Date() });
    writeFileSync(path.join(dir, 'a.pem'), encodePem('CERTIFICATE', a.der));
    writeFileSync(path.join(dir, 'b.key'), b.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    await expect(startTestServer({ ca: { upstream: { cert_file: path.join(dir, 'a.pem'), key_file: path.join(dir, 'b.key') } } }, {}, path.join(dir, 'bad'))).rejects.toMatchObject({ code: 'ca-key-mismatch' });
  });
});
