// The bundle_endpoint module against a small HTTPS server started here (the federation endpoint
// is not ours to start): both SPIFFE Federation profiles, and each way an endpoint can fail.
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSpiffeBundle, jwtAuthority, spiffeBundleToJson, x509BundleToPem, createX509Bundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, type SelfSignedCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { buildModule, buildProberConfig, runProbe, startProber, type ProbeResult } from '../../src/probes/index.js';
import { freePort } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { promtoolRun } from '../support/metrics.js';
import { probeCli } from './support/cli.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const dir = tempDir('bundle-endpoint');
const ENDPOINT_ID = 'spiffe://example.org/spire/server';
const failed = (r: ProbeResult) => `${r.reason}: ${r.message}`;
let root: SelfSignedCa;
let server: https.Server;
let base: string;
let files: { ca: string; bundle: string; otherBundle: string };

function document(authority: SelfSignedCa): string {
  const jwtKey = generateKeyPair('ec-p256');
  return spiffeBundleToJson(createSpiffeBundle({
    trustDomain: EXAMPLE_ORG, x509Authorities: [authority.certificate], jwtAuthorities: [jwtAuthority('k1', jwtKey.publicKey)],
    sequenceNumber: 7, refreshHintSeconds: 300,
  }));
}

beforeAll(async () => {
  const now = Date.now();
  root = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 2 * 86400, now: new Date(now - 3600_000) });
  const expired = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 3600, now: new Date(now - 2 * 86400_000) });
  const key = generateKeyPair('ec-p256');
  const leaf = createX509SvidMinter({ caCertificate: root.certificate, caPrivateKey: root.privateKey })
    .mint({ id: parseSpiffeId(ENDPOINT_ID), publicKey: key.publicKey, ttlSeconds: 3600, now: new Date(), dnsNames: ['localhost'] });
  files = { ca: path.join(dir, 'ca.pem'), bundle: path.join(dir, 'bundle.pem'), otherBundle: path.join(dir, 'other.json') };
  writeFileSync(files.ca, encodePem('CERTIFICATE', root.der));
  writeFileSync(files.bundle, x509BundleToPem(createX509Bundle(EXAMPLE_ORG, [root.certificate])));
  writeFileSync(files.otherBundle, document(createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86400, now: new Date() })));
  const routes: Record<string, [number, string]> = {
    '/bundle': [200, document(root)],
    '/malformed': [200, '{"keys": 5}'],
    '/not-json': [200, '<html>hello</html>'],
    '/stale': [200, document(expired)],
    '/error': [503, 'down for maintenance'],
  };
  server = https.createServer({ cert: encodePem('CERTIFICATE', leaf.der), key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) }, (req, res) => {
    const [status, body] = routes[req.url ?? ''] ?? [404, 'not found'];
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://localhost:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  removeDir(dir);
});

const web = (extra: Record<string, unknown> = {}) => buildModule('b', 'bundle_endpoint', { trust_domain: 'example.org', ca_file: files.ca, ...extra });
const spiffe = (extra: Record<string, unknown> = {}) => buildModule('b', 'bundle_endpoint', { trust_domain: 'example.org', profile: 'https_spiffe', endpoint_spiffe_id: ENDPOINT_ID, bundle_file: files.bundle, ...extra });

describe('bundle_endpoint', () => {
  it('https_web: verifies the server against the CA file, reports sequence, refresh hint, age and authority expiry', async () => {
    const r = await runProbe(web(), `${base}/bundle`);
    expect(r.success, failed(r)).toBe(true);
    const g = Object.fromEntries(r.gauges.map((x) => [x.name, x.value]));
    expect(g.probe_svid_bundle_sequence).toBe(7);
    expect(g.probe_svid_bundle_refresh_hint_seconds).toBe(300);
    expect(g.probe_svid_bundle_x509_authorities).toBe(1);
    expect(g.probe_svid_bundle_jwt_authorities).toBe(1);
    expect(g.probe_svid_bundle_authority_expiry_timestamp_seconds).toBe(new Date(root.certificate.validTo).getTime() / 1000);
    expect(g.probe_svid_bundle_age_seconds).toBeGreaterThan(3600);
    expect(g.probe_http_status_code).toBe(200);
    expect(r.phases.map(([p]) => p)).toEqual(['connect', 'tls', 'processing', 'transfer', 'validate']);
  });

  it('https_web: a server certificate the roots do not vouch for is untrusted_authority', async () => {
    const r = await runProbe(buildModule('b', 'bundle_endpoint', { trust_domain: 'example.org' }), `${base}/bundle`);
    expect(r.reason, failed(r)).toBe('untrusted_authority');
  });

  it('https_spiffe: verifies the endpoint SVID against the bundle held for its trust domain, and its SPIFFE ID', async () => {
    const r = await runProbe(spiffe(), `https://127.0.0.1:${new URL(base).port}/bundle`);
    expect(r.success, failed(r)).toBe(true);
    expect(r.checks.find((c) => c.name === 'endpoint X509-SVID')?.detail).toContain(ENDPOINT_ID);
    expect((await runProbe(spiffe({ endpoint_spiffe_id: 'spiffe://example.org/someone-else' }), `${base}/bundle`)).reason).toBe('wrong_spiffe_id');
    expect((await runProbe(spiffe({ bundle_file: files.otherBundle }), `${base}/bundle`)).reason).toBe('untrusted_authority');
  });

  it('endpoint_down: nothing listening, or a non-2xx answer', async () => {
    const closed = await runProbe(web(), `https://localhost:${await freePort()}/bundle`);
    expect(closed.reason, failed(closed)).toBe('endpoint_down');
    const r503 = await runProbe(web(), `${base}/error`);
    expect(r503.reason, failed(r503)).toBe('endpoint_down');
    expect(r503.gauges).toContainEqual(expect.objectContaining({ name: 'probe_http_status_code', value: 503 }));
  });

  it('malformed_bundle: a document that is not a SPIFFE bundle', async () => {
    expect((await runProbe(web(), `${base}/malformed`)).reason).toBe('malformed_bundle');
    expect((await runProbe(spiffe(), `${base}/not-json`)).reason).toBe('malformed_bundle');
  });

  it('stale_bundle: no authority valid now, or the newest older than max_age', async () => {
    const r = await runProbe(web(), `${base}/stale`);
    expect(r.reason, failed(r)).toBe('stale_bundle');
    const old = await runProbe(web({ max_age: '30m' }), `${base}/bundle`);
    expect(old.reason, failed(old)).toBe('stale_bundle');
  });

  it('refuses configurations the federation standard forbids: no trust domain, not https', async () => {
    await expect(runProbe(buildModule('b', 'bundle_endpoint', {}), `${base}/bundle`)).rejects.toMatchObject({ code: 'config-invalid' });
    await expect(runProbe(web(), 'http://localhost/bundle')).rejects.toMatchObject({ code: 'config-invalid' });
    expect(() => buildModule('b', 'bundle_endpoint', { trust_domain: 'example.org', profile: 'https_spiffe' })).toThrow(/endpoint_spiffe_id/);
  });

  it('CLI and /probe: exit codes, and promtool-clean output', async () => {
    const ok = await probeCli('probe', 'bundle_endpoint', '--target', `${base}/bundle`, '--trust-domain', 'example.org', '--ca-file', files.ca);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/pass {2}SPIFFE bundle of example\.org/);
    const bad = await probeCli('probe', 'bundle_endpoint', '--target', `${base}/stale`, '--trust-domain', 'example.org', '--ca-file', files.ca, '--json');
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ valid: false, reason: 'stale_bundle' });
    const usage = await probeCli('probe', 'bundle_endpoint', '--target', `${base}/bundle`, '--audience', 'x', '--trust-domain', 'example.org');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--audience does not apply to the bundle_endpoint module/);

    const prober = await startProber(buildProberConfig({
      listen: '127.0.0.1:0',
      modules: { federation: { prober: 'bundle_endpoint', bundle_endpoint: { trust_domain: 'example.org', ca_file: files.ca } } },
      targets: [{ name: 'example-org', module: 'federation', target: `${base}/bundle`, interval: '1s' }],
    }));
    try {
      for (const route of ['bundle', 'stale', 'malformed']) {
        const body = await (await fetch(`${prober.url}/probe?module=federation&target=${encodeURIComponent(`${base}/${route}`)}`)).text();
        expect(body).toMatch(route === 'bundle' ? /^probe_success 1$/m : /^probe_success 0$/m);
        expect(await promtoolRun(body)).toEqual({ code: 0, output: '' });
      }
      const json = await (await fetch(`${prober.url}/probe?module=federation&format=json&target=${encodeURIComponent(`${base}/bundle`)}`)).json() as Record<string, unknown>;
      expect(json).toMatchObject({ success: true, facts: { sequence: 7, refreshHintSeconds: 300 } });
      const debug = await (await fetch(`${prober.url}/probe?module=federation&debug=true&target=${encodeURIComponent(`${base}/bundle`)}`)).text();
      expect(debug).toMatch(/^probe federation \(bundle_endpoint\) https:.*: SUCCESS/);
      await new Promise((r) => setTimeout(r, 300));
      const metrics = await (await fetch(`${prober.url}/metrics`)).text();
      expect(metrics).toMatch(/^svidscope_prober_bundle_sequence\{module="federation",target="example-org"\} 7$/m);
      expect(await promtoolRun(metrics)).toEqual({ code: 0, output: '' });
    } finally {
      await prober.stop();
    }
  });
});
