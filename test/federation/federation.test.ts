// startFederation end to end in one process: a real bundle endpoint (both profiles) on one side,
// relationships from config and from the admin API on the other, persistence, metrics, config.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FakeClock, systemClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { buildServerConfig } from '../../src/identity-plane/server/config.js';
import { openDatastore } from '../../src/identity-plane/server/datastore/index.js';
import {
  registerFederationMetrics, startFederation, type EndpointCa, type FederationConfig,
} from '../../src/identity-plane/server/federation/index.js';
import { parseSpiffeBundle, type SpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain, parseTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { removeDir, tempDir } from '../support/server.js';
import { bundleJson, bundleOf, testCa, tlsIdentity } from './support/pki.js';

const dir = tempDir('federation');
const caA = testCa('a.test');
const caB = testCa('b.test');
const caB2 = testCa('b.test');
const webCa = testCa('web.test');
const BASE: FederationConfig = { relationships: [], minRefreshSeconds: 1, maxRefreshSeconds: 60, defaultRefreshSeconds: 30, fetchTimeoutSeconds: 5 };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => removeDir(dir));

let n = 0;
async function side(td: string, config: Partial<FederationConfig>, own: { bundle: SpiffeBundle; ca: EndpointCa }) {
  const dataDir = path.join(dir, `${td}-${++n}`);
  const datastore = await openDatastore({ kind: 'sqlite', path: path.join(dir, `${td}-${n}.sqlite3`) });
  const bundles = { current: own.bundle };
  const federation = await startFederation({
    config: { ...BASE, ...config }, trustDomain: parseTrustDomain(td), datastore, ca: own.ca, bundles, clock: systemClock, logger: nullLogger(), dataDir,
  });
  cleanups.push(async () => {
    await federation.stop();
    await datastore.close();
  });
  return { federation, datastore, bundles, dataDir };
}

const sideB = (config: Partial<FederationConfig> = {}, ca: { x509Minter: EndpointCa['x509Minter']; x509ChainTail: Buffer[] } = { x509Minter: caB.minter, x509ChainTail: [] }) =>
  side('b.test', { bundleEndpoint: { bind: '127.0.0.1:0', profile: 'https_spiffe', svidTtlSeconds: 3600, refreshHintSeconds: 7 }, ...config }, { bundle: bundleOf('b.test', [caB], 1n, 300), ca });
const sideA = (config: Partial<FederationConfig> = {}) => side('a.test', config, { bundle: bundleOf('a.test', [caA], 1n, 300), ca: { x509Minter: caA.minter, x509ChainTail: [] } });

function writeFile(name: string, content: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
}

function get(url: string, method = 'GET'): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, rejectUnauthorized: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('bundle endpoint', () => {
  it('serves the current bundle with spiffe_sequence and the configured refresh hint, GET only', async () => {
    const { federation, bundles } = await sideB();
    expect(federation.endpointUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
    expect(federation.endpointSpiffeId).toBe('spiffe://b.test/spire/server');
    const res = await get(federation.endpointUrl!);
    expect(res).toMatchObject({ status: 200, type: 'application/json' });
    const doc = JSON.parse(res.body) as { spiffe_sequence: number; spiffe_refresh_hint: number };
    expect(doc).toMatchObject({ spiffe_sequence: 1, spiffe_refresh_hint: 7 });
    expect(parseSpiffeBundle(mustTrustDomain('b.test'), res.body).x509Authorities[0].cert.fingerprint256).toBe(caB.certificate.fingerprint256);
    bundles.current = bundleOf('b.test', [caB, caB2], 2n, 300);
    expect(JSON.parse((await get(`${federation.endpointUrl!}any/path`)).body)).toMatchObject({ spiffe_sequence: 2, spiffe_refresh_hint: 7 });
    expect((await get(federation.endpointUrl!, 'POST')).status).toBe(405);
  });
});

describe('relationships', () => {
  it('https_spiffe from config: bootstraps, fetches, follows the peer through a CA rotation', async () => {
    const ca = { x509Minter: caB.minter, x509ChainTail: [] as Buffer[] };
    const b = await sideB({}, ca);
    const bundleFile = writeFile('b-bootstrap.json', bundleJson('b.test', [caB], 0n));
    const { federation, datastore } = await sideA({
      relationships: [{ trustDomain: 'b.test', endpointUrl: b.federation.endpointUrl!, profile: 'https_spiffe', endpointSpiffeId: 'spiffe://b.test/spire/server', bundleFile }],
    });
    const status = await federation.refreshNow('b.test');
    expect(status).toMatchObject({ bundleSequence: 1n, refreshHintSeconds: 7, consecutiveFailures: 0 });
    expect(status.relationship.source).toBe('config');

    b.bundles.current = bundleOf('b.test', [caB, caB2], 2n, 300); // B prepares its next CA
    expect((await federation.refreshNow('b.test')).bundleSequence).toBe(2n);
    ca.x509Minter = caB2.minter; // B activates it; its endpoint SVID is now signed by the new CA
    b.bundles.current = bundleOf('b.test', [caB2], 3n, 300);
    expect((await federation.refreshNow('b.test')).bundleSequence).toBe(3n);
    const stored = parseSpiffeBundle(mustTrustDomain('b.test'), (await datastore.getBundle('b.test')).document);
    expect(stored.x509Authorities.map((a) => a.cert.fingerprint256)).toEqual([caB2.certificate.fingerprint256]);
  });

  it('https_spiffe refuses an endpoint presenting another SPIFFE ID', async () => {
    const b = await sideB();
    const bundleFile = writeFile('b-bootstrap-2.json', bundleJson('b.test', [caB], 0n));
    const { federation } = await sideA({
      relationships: [{ trustDomain: 'b.test', endpointUrl: b.federation.endpointUrl!, profile: 'https_spiffe', endpointSpiffeId: 'spiffe://b.test/someone-else', bundleFile }],
    });
    await expect(federation.refreshNow('b.test')).rejects.toMatchObject({ code: 'unavailable', reason: 'authentication' });
    expect(federation.relationship('b.test')).toMatchObject({ bundleSequence: 0n, lastError: { reason: 'authentication' } });
  });

  it('https_web with the operator\'s roots, and refused with roots that do not trust the endpoint', async () => {
    const id = tlsIdentity(webCa, 'spiffe://web.test/endpoint', ['localhost']);
    const b = await sideB({ bundleEndpoint: { bind: '127.0.0.1:0', profile: 'https_web', certFile: writeFile('web.crt', id.cert), keyFile: writeFile('web.key', id.key), svidTtlSeconds: 3600 } });
    const url = b.federation.endpointUrl!.replace('127.0.0.1', 'localhost');
    const { federation } = await sideA({
      relationships: [
        { trustDomain: 'b.test', endpointUrl: url, profile: 'https_web', caFile: writeFile('web-ca.pem', webCa.pem) },
        { trustDomain: 'c.test', endpointUrl: url, profile: 'https_web', caFile: writeFile('other-ca.pem', caA.pem) },
      ],
    });
    expect((await federation.refreshNow('b.test')).bundleSequence).toBe(1n);
    await expect(federation.refreshNow('c.test')).rejects.toMatchObject({ reason: 'tls' });
    expect(federation.relationship('c.test').bundleSequence).toBeUndefined();
  });

  it('admin API relationships: create, refuse duplicates and own domain, persist across restarts, delete', async () => {
    const b = await sideB();
    const a = await sideA();
    const rel = { trustDomain: 'b.test', endpointUrl: b.federation.endpointUrl!, profile: 'https_spiffe' as const, endpointSpiffeId: 'spiffe://b.test/spire/server' };
    await expect(a.federation.create(rel)).rejects.toMatchObject({ code: 'config-invalid' }); // no bundle to authenticate with
    const created = await a.federation.create(rel, { bundle: Buffer.from(caB.pem) });
    expect(created.relationship.source).toBe('api');
    await expect(a.federation.create(rel, { bundle: Buffer.from(caB.pem) })).rejects.toMatchObject({ code: 'already-exists' });
    await expect(a.federation.create({ ...rel, trustDomain: 'a.test' })).rejects.toMatchObject({ code: 'config-invalid' });
    await expect(a.federation.create({ ...rel, trustDomain: 'x.test', endpointUrl: 'http://insecure' })).rejects.toMatchObject({ code: 'config-invalid' });
    expect((await a.federation.refreshNow('b.test')).bundleSequence).toBe(1n);
    const file = path.join(a.dataDir, 'federation', 'relationships.json');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ version: 1, relationships: [{ trustDomain: 'b.test', profile: 'https_spiffe' }] });

    // A restart (same data dir and datastore) resumes the relationship.
    await a.federation.stop();
    const again = await startFederation({
      config: BASE, trustDomain: parseTrustDomain('a.test'), datastore: a.datastore, ca: { x509Minter: caA.minter, x509ChainTail: [] },
      bundles: { current: bundleOf('a.test', [caA], 1n) }, clock: systemClock, logger: nullLogger(), dataDir: a.dataDir,
    });
    cleanups.push(() => again.stop());
    expect(again.relationships().map((s) => [s.relationship.trustDomain, s.relationship.source, s.bundleSequence])).toEqual([['b.test', 'api', 1n]]);
    await again.delete('b.test');
    expect(again.relationships()).toEqual([]);
    await expect(a.datastore.getBundle('b.test')).rejects.toMatchObject({ code: 'not-found' });
    expect(JSON.parse(readFileSync(file, 'utf8')).relationships).toEqual([]);
    await expect(again.delete('b.test')).rejects.toMatchObject({ code: 'not-found' });
  });

  it('config relationships cannot be deleted through the API; --keep-bundle keeps the stored bundle', async () => {
    const b = await sideB();
    const a = await sideA({ relationships: [{ trustDomain: 'b.test', endpointUrl: b.federation.endpointUrl!, profile: 'https_web' }] });
    await expect(a.federation.delete('b.test')).rejects.toMatchObject({ code: 'config-invalid' });
    await a.federation.create({ trustDomain: 'c.test', endpointUrl: 'https://127.0.0.1:1/', profile: 'https_web' });
    await a.datastore.setBundle({ trustDomain: 'c.test', document: Buffer.from(bundleJson('c.test', [caA], 4n)), sequence: 4n, updatedAt: new Date() });
    await a.federation.delete('c.test', { keepBundle: true });
    expect((await a.datastore.getBundle('c.test')).sequence).toBe(4n);
    expect(existsSync(path.join(a.dataDir, 'federation', 'relationships.json'))).toBe(true);
  });

  it('parses each relationship\'s trust domain where it enters: spiffe:// in the config keys by the bare name, a broken stored one is skipped', async () => {
    const dataDir = path.join(dir, `parsed-${++n}`);
    mkdirSync(path.join(dataDir, 'federation'), { recursive: true });
    const nowhere = 'https://127.0.0.1:1/';
    writeFileSync(path.join(dataDir, 'federation', 'relationships.json'), JSON.stringify({ version: 1, relationships: [
      { trustDomain: 'Not A Domain', endpointUrl: nowhere, profile: 'https_web' },
      { trustDomain: 'd.test', endpointUrl: nowhere, profile: 'https_web' },
    ] }));
    const datastore = await openDatastore({ kind: 'sqlite', path: path.join(dir, `parsed-${n}.sqlite3`) });
    const federation = await startFederation({
      config: { ...BASE, relationships: [{ trustDomain: 'spiffe://c.test', endpointUrl: nowhere, profile: 'https_web' }] },
      trustDomain: parseTrustDomain('a.test'), datastore, ca: { x509Minter: caA.minter, x509ChainTail: [] },
      bundles: { current: bundleOf('a.test', [caA], 1n) }, clock: systemClock, logger: nullLogger(), dataDir,
    });
    cleanups.push(async () => {
      await federation.stop();
      await datastore.close();
    });
    expect(federation.relationships().map((s) => [s.relationship.trustDomain, s.relationship.source])).toEqual([['c.test', 'config'], ['d.test', 'api']]);
    expect(federation.relationship('c.test').relationship.source).toBe('config');
  });
});

describe('metrics', () => {
  it('exposes sequence, last refresh, age, authority expiry and errors by reason, read at scrape time', async () => {
    const b = await sideB();
    const bundleFile = writeFile('b-bootstrap-m.json', bundleJson('b.test', [caB], 0n));
    const a = await sideA({ relationships: [{ trustDomain: 'b.test', endpointUrl: b.federation.endpointUrl!, profile: 'https_spiffe', endpointSpiffeId: 'spiffe://b.test/spire/server', bundleFile }] });
    await a.federation.refreshNow('b.test');
    const clock = new FakeClock(Date.now() + 42_000);
    const registry = new Registry();
    registerFederationMetrics(registry, a.federation, clock);
    await b.federation.stop();
    await expect(a.federation.refreshNow('b.test')).rejects.toMatchObject({ reason: 'connect' });
    const text = await registry.metrics();
    const value = (name: string, labels = 'trust_domain="b.test"') => {
      const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : undefined;
    };
    const s = a.federation.relationship('b.test');
    expect(value('svidscope_federation_bundle_sequence')).toBe(1);
    expect(value('svidscope_federation_bundle_last_refresh_timestamp_seconds')).toBe(s.lastSuccessMs! / 1000);
    expect(value('svidscope_federation_bundle_age_seconds')).toBeCloseTo((clock.nowMs() - s.lastSuccessMs!) / 1000, 3);
    expect(value('svidscope_federation_bundle_authority_expiry_timestamp_seconds')).toBe(new Date(caB.certificate.validTo).getTime() / 1000);
    // The explicit refresh above, and possibly the scheduled one that raced it.
    expect(value('svidscope_federation_bundle_refresh_errors_total', 'trust_domain="b.test",reason="connect"')).toBe(s.errors.get('connect'));
    expect(s.errors.get('connect')).toBeGreaterThanOrEqual(1);
    expect(text).toContain('# TYPE svidscope_federation_bundle_refresh_errors_total counter');
  });
});

describe('config', () => {
  const build = (federation: unknown) => buildServerConfig({ trust_domain: 'a.test', data_dir: dir, federation });

  it('reads the federation section', () => {
    const c = build({
      bundle_endpoint: { bind: '0.0.0.0:8443', profile: 'https_spiffe', refresh_hint: '1m' },
      refresh_min: '2s', refresh_max: '10m',
      relationships: [
        { trust_domain: 'b.test', endpoint_url: 'https://b.test:8443', profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://b.test/spire/server', bundle_file: 'b.json' },
        { trust_domain: 'c.test', endpoint_url: 'https://c.example/bundle', profile: 'https_web', ca_file: 'roots.pem' },
      ],
    });
    expect(c.federation).toMatchObject({
      bundleEndpoint: { bind: '0.0.0.0:8443', profile: 'https_spiffe', refreshHintSeconds: 60, svidTtlSeconds: 3600 },
      minRefreshSeconds: 2, maxRefreshSeconds: 600, defaultRefreshSeconds: 300, fetchTimeoutSeconds: 10,
      relationships: [
        { trustDomain: 'b.test', profile: 'https_spiffe', endpointSpiffeId: 'spiffe://b.test/spire/server', bundleFile: path.resolve('b.json') },
        { trustDomain: 'c.test', profile: 'https_web', caFile: path.resolve('roots.pem') },
      ],
    });
    expect(buildServerConfig({ trust_domain: 'a.test', data_dir: dir }).federation).toMatchObject({ bundleEndpoint: undefined, relationships: [] });
  });

  it.each([
    [{ bundle_endpoint: { bind: 'nope' } }, 'federation.bundle_endpoint.bind'],
    [{ bundle_endpoint: { bind: '127.0.0.1:1', profile: 'https_web' } }, 'federation.bundle_endpoint.cert_file: https_web needs cert_file and key_file'],
    [{ bundle_endpoint: { bind: '127.0.0.1:1', colour: 'red' } }, 'federation.bundle_endpoint.colour: unknown key'],
    [{ relationships: [{ trust_domain: 'b.test', endpoint_url: 'https://b', profile: 'https_spiffe' }] }, 'federation.relationships[0].endpoint_spiffe_id: is required with profile https_spiffe'],
    [{ relationships: [{ trust_domain: 'b.test', endpoint_url: 'http://b', profile: 'https_web' }] }, 'federation.relationships[0].endpoint_url: the bundle endpoint URL must use https'],
    [{ relationships: [{ trust_domain: 'b.test', endpoint_url: 'https://u:p@b', profile: 'https_web' }] }, 'must not carry userinfo'],
    [{ relationships: [{ trust_domain: 'B!', endpoint_url: 'https://b', profile: 'https_web' }] }, 'federation.relationships[0].trust_domain'],
    [{ relationships: [{ trust_domain: 'b.test', endpoint_url: 'https://b', profile: 'https_web', ca_file: 'x', extra: 1 }] }, 'federation.relationships[0].extra: unknown key'],
    [{ relationships: [{ trust_domain: 'b.test', endpoint_url: 'https://b', profile: 'https_web' }, { trust_domain: 'b.test', endpoint_url: 'https://b', profile: 'https_web' }] }, 'appears twice'],
    [{ refresh_min: '10s', refresh_max: '5s' }, 'federation.refresh_max: must be at least refresh_min'],
  ])('refuses %j', (federation, message) => {
    expect(() => build(federation)).toThrow(message);
  });
});
