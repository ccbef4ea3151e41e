// Server, agent, a sample workload and the exporter as real processes (plus a bundle endpoint
// served from this process): issuance, SVID rotation on short TTLs and a forced CA rotation move
// the exporter's families, and promtool accepts its exposition.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';
import { METRIC } from '../../src/exporter/index.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../../src/identity-plane/spiffe/mint/index.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { promtoolRun, scrape as scrapeUrl, valueOf, type Sample } from '../support/metrics.js';

const dir = tempDir('exporter-e2e');
const socketPath = path.join(dir, 'agent', 'public', 'api.sock');
const svidDir = path.join(dir, 'workload-svids');
const TD = 'example.org';
const SHORT_TTL = 10;

type Proc = ReturnType<typeof spawnCli>;
const procs: Proc[] = [];
let admin: AdminClient;
let endpoint: Server;
let exporterUrl: string;
let exporter: Proc;

function spawnExporter(config: string): Proc {
  return spawnCli(['exporter', 'run', '--config', config]);
}

async function scrape() {
  const { text, samples, contentType } = await scrapeUrl(`${exporterUrl}/metrics`);
  expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  return { body: text, series: samples };
}

/** Scrapes until `check` holds; returns that scrape. */
function scrapeUntil(what: string, check: (s: Sample[]) => boolean, timeoutMs = 25_000) {
  return waitFor(what, async () => {
    const s = await scrape();
    return check(s.series) && s;
  }, timeoutMs, () => exporter.logs());
}

/** An HTTPS bundle endpoint (https_web, private CA) serving the server's current bundle document. */
async function startBundleEndpoint(): Promise<{ server: Server; port: number; caPem: string }> {
  const ca = createSelfSignedCa({ trustDomain: 'endpoint.test', ttlSeconds: 3600, now: new Date() });
  const key = generateKeyPair('ec-p256');
  const cert = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey })
    .mint({ id: parseSpiffeId('spiffe://endpoint.test/bundle'), publicKey: key.publicKey, ttlSeconds: 3600, now: new Date(), dnsNames: ['localhost'] });
  const server = createServer({ cert: encodePem('CERTIFICATE', cert.der), key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) }, (_req, res) => {
    admin.call<{ document: Buffer }>('GetBundle', {}).then(
      (b) => res.writeHead(200, { 'content-type': 'application/json' }).end(b.document),
      () => res.writeHead(503).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port, caPem: encodePem('CERTIFICATE', ca.der) };
}

beforeAll(async () => {
  const ports = { server: await freePort(), serverHealth: await freePort(), agentHealth: await freePort(), exporter: await freePort() };
  writeFileSync(path.join(dir, 'server.yaml'), [
    `trust_domain: ${TD}`, `data_dir: ${path.join(dir, 'server')}`, `bind: 127.0.0.1:${ports.server}`,
    `health_bind: 127.0.0.1:${ports.serverHealth}`, 'cache_reload_interval: 1s',
  ].join('\n'));
  const server = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')]);
  procs.push(server);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${ports.serverHealth}/ready`), 30_000, server.logs);
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const { token, agentId } = await bootstrapAgent(admin, { dir, trustDomain: TD, serverPort: ports.server, healthPort: ports.agentHealth, socketPath });
  const entry = (id: string, uid: number, ttl: number) => admin.call('CreateEntry', {
    entry: { spiffe_id: `spiffe://${TD}${id}`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }], x509_svid_ttl: ttl },
  });
  // The workload and the exporter both run as this uid: both get /web and /db (the workload writes
  // whichever comes first, so both rotate quickly). Nobody runs as 4242.
  await entry('/web', process.getuid?.() ?? 0, SHORT_TTL);
  await entry('/db', process.getuid?.() ?? 0, 2 * SHORT_TTL);
  await entry('/unserved', 4242, 3600);
  const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), '--join-token', token]);
  procs.push(agent);
  const ep = await startBundleEndpoint();
  endpoint = ep.server;
  writeFileSync(path.join(dir, 'endpoint-ca.pem'), ep.caPem);
  await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${ports.agentHealth}/ready`), 30_000, agent.logs);

  mkdirSync(svidDir, { recursive: true });
  procs.push(spawnCli(['workload', 'sample', '--socket-path', socketPath, '--write', svidDir, '--name', 'web']));
  writeFileSync(path.join(dir, 'exporter.yaml'), [
    `listen: 127.0.0.1:${ports.exporter}`,
    'log_level: warn',
    'sources:',
    `  - { name: server, type: server_admin, socket: ${path.join(dir, 'server', 'admin.sock')}, interval: 1s }`,
    `  - { name: agent, type: workload_api, address: "unix://${socketPath}" }`,
    `  - { name: svid-files, type: files, paths: [${svidDir}], interval: 1s }`,
    `  - { name: endpoint, type: bundle_endpoint, url: "https://localhost:${ep.port}/bundle", trust_domain: ${TD}, ca_file: ${path.join(dir, 'endpoint-ca.pem')}, interval: 1s }`,
  ].join('\n'));
  exporter = spawnExporter(path.join(dir, 'exporter.yaml'));
  procs.push(exporter);
  exporterUrl = `http://127.0.0.1:${ports.exporter}`;
  await waitFor('exporter ready', () => httpOk(`${exporterUrl}/ready`), 40_000, exporter.logs);
}, 120_000);

afterAll(async () => {
  admin?.close();
  endpoint?.close();
  for (const p of procs.reverse()) {
    p.child.kill('SIGTERM');
    await p.child;
  }
  removeDir(dir);
}, 30_000);

describe('exporter against a running identity plane', () => {
  it('shows the SVIDs, bundles and registrations that exist, and moves with rotations and a CA rotation', async () => {
    expect(await httpOk(`${exporterUrl}/healthz`)).toBe(true);
    // Issuance: both uid-0 SVIDs through the Workload API, the workload's file, the agent's SVID at the server.
    let { series } = await scrapeUntil('SVIDs and coverage', (s) =>
      valueOf(s, `${METRIC.remainingLifetime}_count`, { source: 'agent', kind: 'x509_svid' }) === 2
      && valueOf(s, `${METRIC.remainingLifetime}_count`, { source: 'svid-files', kind: 'x509_svid' }) === 1
      && valueOf(s, METRIC.entriesWithoutSvid, { source: 'server' }) === 1);
    const bucket = (source: string, le: string) => valueOf(series, `${METRIC.remainingLifetime}_bucket`, { source, kind: 'x509_svid', le });
    expect(bucket('agent', '0')).toBe(0); // nothing expired is held
    expect(bucket('agent', '5')).toBeUndefined(); // not a bucket boundary: minutes to days
    expect(bucket('agent', '60')).toBe(2); // /web 10 s, /db 20 s
    expect(valueOf(series, `${METRIC.remainingLifetime}_bucket`, { source: 'server', kind: 'x509_svid', le: '60' })).toBe(0); // the agent's SVID: 1 h
    expect(valueOf(series, `${METRIC.remainingLifetime}_bucket`, { source: 'server', kind: 'x509_svid', le: '3600' })).toBe(1);
    expect(valueOf(series, `${METRIC.remainingLifetime}_count`, { source: 'server', kind: 'x509_svid' })).toBe(1); // the agent's own SVID
    expect(valueOf(series, `${METRIC.remainingLifetime}_count`, { source: 'agent', kind: 'ca', trust_domain: TD })).toBe(1);
    expect(valueOf(series, METRIC.earliestExpiry, { source: 'agent', kind: 'x509_svid' })).toBeLessThan(Date.now() / 1000 + SHORT_TTL + 1);
    expect(valueOf(series, METRIC.registrationEntries, { source: 'server' })).toBe(3);
    expect(valueOf(series, METRIC.agents, { source: 'server', status: 'active' })).toBe(1);
    expect(valueOf(series, METRIC.bundleAuthorities, { source: 'agent', kind: 'jwt_authority' })).toBe(1);
    expect(valueOf(series, METRIC.bundleRefreshHint, { source: 'endpoint' })).toBe(300);
    for (const source of ['server', 'agent', 'svid-files', 'endpoint']) expect(valueOf(series, METRIC.sourceUp, { source })).toBe(1);
    const seq0 = valueOf(series, METRIC.bundleSequence, { source: 'server', trust_domain: TD })!;
    expect(valueOf(series, METRIC.bundleSequence, { source: 'agent', trust_domain: TD })).toBe(seq0);
    expect(valueOf(series, METRIC.bundleSequence, { source: 'svid-files', trust_domain: TD })).toBe(seq0);
    const updates0 = valueOf(series, METRIC.sourceUpdates, { source: 'agent' })!;
    // Counted from this scrape: on a slow machine the first rotation (5 s in) can come before it.
    const rotations0 = (source: string) => valueOf(series, METRIC.rotations, { source, kind: 'x509_svid' }) ?? 0;
    const [agentRotations0, fileRotations0] = [rotations0('agent'), rotations0('svid-files')];

    // SVID rotation at half of the 10 s TTL, seen on the stream and in the workload's file.
    ({ series } = await scrapeUntil('SVID rotations', (s) =>
      valueOf(s, METRIC.rotations, { source: 'agent', kind: 'x509_svid' })! > agentRotations0 && valueOf(s, METRIC.rotations, { source: 'svid-files', kind: 'x509_svid' })! > fileRotations0));
    expect(valueOf(series, `${METRIC.rotationRemainingLifetime}_count`, { source: 'agent', kind: 'x509_svid' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, `${METRIC.rotationRemainingLifetime}_bucket`, { source: 'agent', kind: 'x509_svid', le: '60' }))
      .toBe(valueOf(series, `${METRIC.rotationRemainingLifetime}_count`, { source: 'agent', kind: 'x509_svid' }));
    expect(valueOf(series, METRIC.sourceUpdates, { source: 'agent' })).toBeGreaterThan(updates0);
    expect(valueOf(series, `${METRIC.remainingLifetime}_count`, { source: 'agent', kind: 'x509_svid' })).toBe(2); // rotated, not added

    // CA rotation: the server's sequence moves, and each downstream source shows it after a measured lag.
    await admin.call('RotateCa', { kind: 'x509' });
    ({ series } = await scrapeUntil('CA rotation propagated', (s) =>
      ['agent', 'svid-files', 'endpoint'].every((source) => valueOf(s, `${METRIC.propagationLag}_count`, { source })! >= 1)));
    const seq1 = valueOf(series, METRIC.bundleSequence, { source: 'server', trust_domain: TD })!;
    expect(seq1).toBeGreaterThan(seq0);
    for (const source of ['agent', 'svid-files', 'endpoint']) {
      expect(valueOf(series, METRIC.bundleSequence, { source, trust_domain: TD })).toBe(seq1);
      expect(valueOf(series, `${METRIC.propagationLag}_sum`, { source })).toBeLessThan(20);
    }
    expect(valueOf(series, METRIC.rotations, { source: 'agent', kind: 'ca' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, METRIC.rotations, { source: 'server', kind: 'ca' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(series, `${METRIC.remainingLifetime}_count`, { source: 'server', kind: 'ca' })).toBe(2);

    const { body } = await scrape();
    expect(await promtoolRun(body)).toEqual({ code: 0, output: '' });
  }, 60_000);
});
