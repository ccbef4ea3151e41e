// Each source against a real counterpart: files on disk, an HTTPS bundle endpoint (both
// profiles), and the fake Workload API (a real gRPC server on a Unix socket).
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { buildExporterConfig, createExporter, METRIC, type Exporter } from '../../src/exporter/index.js';
import { createSpiffeBundle, spiffeBundleToJson } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseSpiffeId, mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../../src/identity-plane/spiffe/mint/index.js';
import { startFakeWorkloadApi, type FakeWorkloadApi } from '../support/fake-workload-api.js';
import { waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { valueOf } from '../support/metrics.js';
import { renderSamples } from './support.js';

const TD = 'example.org';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ca = createSelfSignedCa({ trustDomain: TD, ttlSeconds: 86400, now: new Date() });
const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });

function mintPem(id: string, ttlSeconds = 3600, dnsNames?: string[]): { cert: string; key: string; serial: string } {
  const key = generateKeyPair('ec-p256');
  const svid = minter.mint({ id: parseSpiffeId(id), publicKey: key.publicKey, ttlSeconds, now: new Date(), dnsNames });
  return { cert: encodePem('CERTIFICATE', svid.der), key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, serial: new X509Certificate(svid.der).serialNumber.toLowerCase() };
}

function start(sources: object[], clock: FakeClock): Exporter {
  const ex = createExporter(buildExporterConfig({ sources }), { clock, processMetrics: false });
  ex.start();
  cleanups.push(() => ex.stop());
  return ex;
}

const until = <T>(what: string, fn: () => Promise<T | undefined | false>) => waitFor(what, fn, 10_000);

describe('files source', () => {
  it('reads SVID and bundle files recursively, re-reads changed ones and counts unreadable ones', async () => {
    const dir = tempDir('exporter-files');
    cleanups.push(() => removeDir(dir));
    mkdirSync(path.join(dir, 'web'));
    mkdirSync(path.join(dir, 'db'));
    const web = mintPem(`spiffe://${TD}/web`, 600);
    writeFileSync(path.join(dir, 'web', 'svid.pem'), web.cert);
    writeFileSync(path.join(dir, 'web', 'svid.key'), web.key);
    writeFileSync(path.join(dir, 'web', 'bundle.pem'), encodePem('CERTIFICATE', ca.der));
    writeFileSync(path.join(dir, 'db', 'svid.pem'), mintPem(`spiffe://${TD}/db`, 7200).cert);
    writeFileSync(path.join(dir, 'federated.json'), spiffeBundleToJson(createSpiffeBundle({ trustDomain: mustTrustDomain('other.org'), x509Authorities: [createSelfSignedCa({ trustDomain: 'other.org', ttlSeconds: 3600, now: new Date() }).certificate], sequenceNumber: 4n, refreshHintSeconds: 60 })));
    writeFileSync(path.join(dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    const clock = new FakeClock(Date.now());
    const ex = start([{ name: 'disk', type: 'files', paths: [dir], interval: '10s' }], clock);

    let s = await until('first poll', async () => ex.state.ready().ok && (await renderSamples(ex)).series);
    expect(valueOf(s, `${METRIC.remainingLifetime}_count`, { source: 'disk', kind: 'x509_svid', trust_domain: TD })).toBe(2);
    expect(valueOf(s, `${METRIC.remainingLifetime}_bucket`, { source: 'disk', kind: 'x509_svid', le: '900' })).toBe(1);
    expect(valueOf(s, METRIC.bundleAuthorities, { source: 'disk', trust_domain: TD, kind: 'ca' })).toBe(1);
    expect(valueOf(s, METRIC.bundleSequence, { source: 'disk', trust_domain: 'other.org' })).toBe(4);
    expect(valueOf(s, METRIC.sourceErrors, { source: 'disk', reason: 'parse' })).toBe(1);

    writeFileSync(path.join(dir, 'web', 'svid.pem'), mintPem(`spiffe://${TD}/web`, 600).cert);
    clock.advance(10_000);
    s = await until('rotation seen', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, METRIC.rotations, { source: 'disk', kind: 'x509_svid' }) === 1 && x;
    });
    expect(valueOf(s, METRIC.sourceErrors, { source: 'disk', reason: 'parse' })).toBe(1); // the broken file did not change
    expect(valueOf(s, `${METRIC.remainingLifetime}_count`, { source: 'disk', kind: 'x509_svid' })).toBe(2);
  });

  it('is down with reason io when its path does not exist', async () => {
    const clock = new FakeClock(Date.now());
    const ex = start([{ name: 'disk', type: 'files', paths: ['/nonexistent/svids'] }], clock);
    const s = await until('error counted', async () => {
      const x = (await renderSamples(ex)).series;
      return (valueOf(x, METRIC.sourceErrors, { source: 'disk', reason: 'io' }) ?? 0) > 0 && x;
    });
    expect(valueOf(s, METRIC.sourceUp, { source: 'disk' })).toBe(0);
  });
});

describe('bundle endpoint source', () => {
  async function endpoint(): Promise<{ url: (host: string) => string; setSequence(n: number): void; setStatus(n: number): void }> {
    const serverSvid = mintPem(`spiffe://${TD}/bundle-endpoint`, 3600, ['localhost']);
    let sequence = 1;
    let status = 200;
    const server: Server = createServer({ cert: serverSvid.cert, key: serverSvid.key }, (_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(spiffeBundleToJson(createSpiffeBundle({ trustDomain: mustTrustDomain(TD), x509Authorities: [ca.certificate], sequenceNumber: BigInt(sequence), refreshHintSeconds: 300 })));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as { port: number }).port;
    return { url: (host) => `https://${host}:${port}/bundle`, setSequence: (n) => void (sequence = n), setStatus: (n) => void (status = n) };
  }

  it('fetches with https_spiffe (server SVID checked against the bootstrap bundle) and tracks freshness', async () => {
    const ep = await endpoint();
    const dir = tempDir('exporter-ep');
    cleanups.push(() => removeDir(dir));
    writeFileSync(path.join(dir, 'bootstrap.pem'), encodePem('CERTIFICATE', ca.der));
    const clock = new FakeClock(Date.now());
    const ex = start([{
      name: 'own', type: 'bundle_endpoint', url: ep.url('127.0.0.1'), trust_domain: TD, profile: 'https_spiffe',
      endpoint_spiffe_id: `spiffe://${TD}/bundle-endpoint`, bundle_file: path.join(dir, 'bootstrap.pem'), interval: '5s',
    }, {
      name: 'wrong-id', type: 'bundle_endpoint', url: ep.url('127.0.0.1'), trust_domain: TD, profile: 'https_spiffe',
      endpoint_spiffe_id: `spiffe://${TD}/someone-else`, bundle_file: path.join(dir, 'bootstrap.pem'),
    }], clock);
    let s = await until('first fetch', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, METRIC.bundleSequence, { source: 'own' }) === 1 && (valueOf(x, METRIC.sourceErrors, { source: 'wrong-id', reason: 'tls' }) ?? 0) > 0 && x;
    });
    expect(valueOf(s, METRIC.bundleRefreshHint, { source: 'own', trust_domain: TD })).toBe(300);
    expect(valueOf(s, METRIC.sourceUp, { source: 'wrong-id' })).toBe(0);
    const firstChange = valueOf(s, METRIC.bundleLastChange, { source: 'own' });

    ep.setStatus(503);
    clock.advance(5_000);
    s = await until('http error', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, METRIC.sourceErrors, { source: 'own', reason: 'http_status' }) === 1 && x;
    });
    expect(valueOf(s, METRIC.sourceUp, { source: 'own' })).toBe(0);
    ep.setStatus(200);
    ep.setSequence(2);
    clock.advance(5_000);
    s = await until('new sequence', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, METRIC.bundleSequence, { source: 'own' }) === 2 && x;
    });
    expect(valueOf(s, METRIC.bundleLastChange, { source: 'own' })).toBe(firstChange! + 10);
  });

  it('fetches with https_web against a private CA file, and fails without it', async () => {
    const ep = await endpoint();
    const dir = tempDir('exporter-ep');
    cleanups.push(() => removeDir(dir));
    writeFileSync(path.join(dir, 'ca.pem'), encodePem('CERTIFICATE', ca.der));
    const clock = new FakeClock(Date.now());
    const ex = start([
      { name: 'web', type: 'bundle_endpoint', url: ep.url('localhost'), trust_domain: TD, ca_file: path.join(dir, 'ca.pem') },
      { name: 'untrusted', type: 'bundle_endpoint', url: ep.url('localhost'), trust_domain: TD },
    ], clock);
    const s = await until('fetches', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, METRIC.bundleSequence, { source: 'web' }) === 1 && (valueOf(x, METRIC.sourceErrors, { source: 'untrusted', reason: 'tls' }) ?? 0) > 0 && x;
    });
    expect(valueOf(s, METRIC.bundleAuthorities, { source: 'web', kind: 'ca' })).toBe(1);
  });
});

describe('workload API source', () => {
  let api: FakeWorkloadApi | undefined;
  afterEach(async () => {
    await api?.stop();
    api = undefined;
  });

  it('watches SVIDs and bundles, sees a pushed rotation, and redacts on a live PermissionDenied', async () => {
    api = await startFakeWorkloadApi({ ids: [`spiffe://${TD}/a`, `spiffe://${TD}/b`] });
    const fake = api;
    const clock = new FakeClock(Date.now());
    const ex = start([{ name: 'agent', type: 'workload_api', address: fake.address }], clock);
    let s = await until('first messages', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, METRIC.bundleAuthorities, { source: 'agent', trust_domain: TD, kind: 'jwt_authority' }) === 1 && x;
    });
    expect(valueOf(s, `${METRIC.remainingLifetime}_count`, { source: 'agent', kind: 'x509_svid', trust_domain: TD })).toBe(2);
    expect(valueOf(s, `${METRIC.remainingLifetime}_count`, { source: 'agent', kind: 'ca', trust_domain: 'other.org' })).toBe(1);

    fake.pushX509Update();
    s = await until('rotation', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, METRIC.rotations, { source: 'agent', kind: 'x509_svid' }) === 2 && x;
    });
    expect(valueOf(s, `${METRIC.rotationRemainingLifetime}_bucket`, { source: 'agent', kind: 'x509_svid', le: '3600' })).toBe(2);

    fake.refuse(grpc.status.PERMISSION_DENIED, 'no identity issued');
    fake.failStreams(grpc.status.PERMISSION_DENIED, 'no identity issued');
    s = await until('redacted', async () => {
      const x = (await renderSamples(ex)).series;
      return valueOf(x, `${METRIC.remainingLifetime}_count`, { source: 'agent', kind: 'x509_svid' }) === undefined && x;
    });
    expect(valueOf(s, METRIC.sourceUp, { source: 'agent' })).toBe(0);
    expect(valueOf(s, METRIC.sourceErrors, { source: 'agent', reason: 'permission_denied' })).toBeGreaterThan(0);

    fake.clearRefusals();
    clock.advance(3_000); // the retry backoff runs on the injected clock
    s = await until('back', async () => {
      clock.advance(1_000);
      const x = (await renderSamples(ex)).series;
      return valueOf(x, `${METRIC.remainingLifetime}_count`, { source: 'agent', kind: 'x509_svid' }) === 2 && x;
    });
    expect(valueOf(s, METRIC.sourceUp, { source: 'agent' })).toBe(1);
  });
});
