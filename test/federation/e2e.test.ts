// Two trust domains as real processes: a server and an agent each for a.test and b.test. A fetches
// B's bundle over https_spiffe (bootstrap bundle from B), B fetches A's over https_web (operator
// roots, relationship created with the CLI). Workloads on both sides complete mTLS, B's CA
// rotation reaches A's workload stream, B's endpoint going down and coming back, and refused
// endpoints (wrong SPIFFE ID, untrusted certificate, malformed or lower-sequence documents).
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain, mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createWorkloadApiClient, type WatchHandle, type WorkloadApiClient, type X509Context } from '../../src/identity-plane/workload-api/index.js';
import { scrapeSeries } from '../support/metrics.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { cliJson, federationCli } from './support/cli.js';
import { FakeBundleEndpoint } from './support/fake-endpoint.js';
import { mtlsExchange } from './support/mtls.js';
import { bundleJson, testCa, tlsIdentity } from './support/pki.js';
import type { ResultPromise } from 'execa';

const dir = tempDir('federation-e2e');
const REFRESH_S = 2; // B's endpoint refresh hint and A's refresh_max: the refresh interval
const A = parseTrustDomain('a.test');
const B = parseTrustDomain('b.test');
const webCa = testCa('web.test');

interface Proc {
  child: ResultPromise;
  logs: () => string;
}
interface Domain {
  td: string;
  ports: { server: number; health: number; agentHealth: number; endpoint: number };
  dataDir: string;
  socket: string;
  fedSocket: string;
  server?: Proc;
  agent?: Proc;
  admin?: AdminClient;
  workload?: WorkloadApiClient;
  watch?: WatchHandle;
  contexts: X509Context[];
  watchError?: unknown;
}

const domains: Record<'a' | 'b', Domain> = { a: undefined as unknown as Domain, b: undefined as unknown as Domain };

async function newDomain(td: string): Promise<Domain> {
  const dataDir = path.join(dir, td);
  return {
    td, dataDir, socket: path.join(dir, `${td}-agent`, 'api.sock'), fedSocket: path.join(dataDir, 'admin.sock'), contexts: [],
    ports: { server: await freePort(), health: await freePort(), agentHealth: await freePort(), endpoint: await freePort() },
  };
}

/** The server (federation included) as a child process: `svidscope server run --config`. */
async function startServerProcess(d: Domain): Promise<void> {
  d.server = spawnCli(['server', 'run', '--config', path.join(dir, `${d.td}-server.yaml`)]);
  await waitFor(`${d.td} server ready`, () => httpOk(`http://127.0.0.1:${d.ports.health}/ready`), 30_000, d.server.logs);
}

async function stopProcess(p: Proc | undefined): Promise<void> {
  if (!p) return;
  p.child.kill('SIGTERM');
  await p.child;
}

function writeServerConfig(d: Domain, federation: string[]): void {
  writeFileSync(path.join(dir, `${d.td}-server.yaml`), [
    `trust_domain: ${d.td}`, `data_dir: ${d.dataDir}`, `bind: 127.0.0.1:${d.ports.server}`, `health_bind: 127.0.0.1:${d.ports.health}`,
    'cache_reload_interval: 1s', 'log_level: debug', 'federation:', ...federation.map((l) => `  ${l}`),
  ].join('\n'));
}

async function startAgent(d: Domain, entry: { path: string; federatesWith: string; x509SvidTtl?: number }): Promise<void> {
  d.admin = connectAdmin(path.join(d.dataDir, 'admin.sock'));
  const bundle = await d.admin.call<{ document: Buffer }>('GetBundle', {});
  writeFileSync(path.join(dir, `${d.td}-bundle.pem`), x509BundleToPem(parseSpiffeBundle(mustTrustDomain(d.td), bundle.document)));
  const token = await d.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
  writeFileSync(path.join(dir, `${d.td}-agent.yaml`), [
    `trust_domain: ${d.td}`, `server_address: 127.0.0.1:${d.ports.server}`, `data_dir: ${path.join(dir, `${d.td}-agent`)}`,
    `socket_path: ${d.socket}`, `trust_bundle_path: ${path.join(dir, `${d.td}-bundle.pem`)}`, `health_bind: 127.0.0.1:${d.ports.agentHealth}`, 'sync_interval: 1s',
  ].join('\n'));
  d.agent = spawnCli(['agent', 'run', '--config', path.join(dir, `${d.td}-agent.yaml`), '--join-token', token.value]);
  await waitFor(`${d.td} agent ready`, () => httpOk(`http://127.0.0.1:${d.ports.agentHealth}/ready`), 30_000, d.agent.logs);
  await d.admin.call('CreateEntry', { entry: {
    spiffe_id: `spiffe://${d.td}${entry.path}`, parent_id: `spiffe://${d.td}/spire/agent/join_token/${token.value}`,
    selectors: [{ type: 'unix', value: `uid:${process.getuid!()}` }], federates_with: [entry.federatesWith], x509_svid_ttl: entry.x509SvidTtl ?? 0,
  } });
  d.workload = createWorkloadApiClient({ address: `unix://${d.socket}`, deadlineMs: 10_000 });
  // The entry reaches the agent at its next sync; until then the Workload API answers "no identity issued".
  const workload = d.workload;
  await waitFor(`${d.td} workload identity`, () => workload.fetchX509Context().then((ctx) => ctx.svids.length > 0), 20_000, d.agent.logs);
  d.watch = workload.watchX509Context((ctx) => d.contexts.push(ctx), (err) => {
    d.watchError = err;
  });
}

const latest = (d: Domain) => d.contexts[d.contexts.length - 1];
const fingerprints = (ctx: X509Context | undefined, td: typeof A) => (ctx?.bundles.getBundleForTrustDomain(td)?.x509Authorities ?? []).map((a) => a.cert.fingerprint256);

async function exchange() {
  const a = latest(domains.a);
  const b = latest(domains.b);
  return mtlsExchange(
    { svid: b.svids[0], bundles: b.bundles, expectPeer: 'spiffe://a.test/client' },
    { svid: a.svids[0], bundles: a.bundles, expectPeer: 'spiffe://b.test/server' },
  );
}

const metric = (d: Domain, name: string, labels: string) => scrapeSeries(`http://127.0.0.1:${d.ports.health}/metrics`, `${name}{${labels}}`);

beforeAll(async () => {
  domains.a = await newDomain('a.test');
  domains.b = await newDomain('b.test');
  const { a, b } = domains;

  // B: an https_spiffe bundle endpoint; its relationship with A is created through the CLI below.
  writeServerConfig(b, [
    `bundle_endpoint: { bind: "127.0.0.1:${b.ports.endpoint}", profile: https_spiffe, refresh_hint: ${REFRESH_S}s }`,
    'refresh_min: 1s', `refresh_max: ${REFRESH_S}s`,
  ]);
  await startServerProcess(b);
  const bAdmin = connectAdmin(path.join(b.dataDir, 'admin.sock'));
  writeFileSync(path.join(dir, 'b-bootstrap.json'), (await bAdmin.call<{ document: Buffer }>('GetBundle', {})).document);
  bAdmin.close();

  // A: an https_web bundle endpoint (certificate for localhost from a private web CA), and B from config.
  const web = tlsIdentity(webCa, 'spiffe://web.test/a-endpoint', ['localhost']);
  writeFileSync(path.join(dir, 'a-endpoint.crt'), web.cert);
  writeFileSync(path.join(dir, 'a-endpoint.key'), web.key);
  writeFileSync(path.join(dir, 'web-ca.pem'), webCa.pem);
  writeServerConfig(a, [
    `bundle_endpoint: { bind: "127.0.0.1:${a.ports.endpoint}", profile: https_web, cert_file: ${path.join(dir, 'a-endpoint.crt')}, key_file: ${path.join(dir, 'a-endpoint.key')}, refresh_hint: ${REFRESH_S}s }`,
    'refresh_min: 1s', `refresh_max: ${REFRESH_S}s`,
    'relationships:',
    `  - { trust_domain: b.test, endpoint_url: "https://127.0.0.1:${b.ports.endpoint}/", profile: https_spiffe, endpoint_spiffe_id: "spiffe://b.test/spire/server", bundle_file: ${path.join(dir, 'b-bootstrap.json')} }`,
  ]);
  await startServerProcess(a);

  const created = await federationCli(b.fedSocket, 'create', '--trust-domain', 'a.test', '--bundle-endpoint-url', `https://localhost:${a.ports.endpoint}/`,
    '--bundle-endpoint-profile', 'https_web', '--web-ca-file', path.join(dir, 'web-ca.pem'), '--json');
  expect(cliJson(created)).toMatchObject({ valid: true });
  await waitFor('B has A\'s bundle', async () => cliJson(await federationCli(b.fedSocket, 'show', '--trust-domain', 'a.test', '--json')).federation.bundleSequence, 15_000, b.server!.logs);

  await startAgent(a, { path: '/client', federatesWith: 'b.test' });
  await startAgent(b, { path: '/server', federatesWith: 'a.test', x509SvidTtl: 20 });
  await waitFor('both workloads hold SVIDs and the peer bundle', async () =>
    fingerprints(latest(a), B).length > 0 && fingerprints(latest(b), A).length > 0 && latest(a).svids.length > 0 && latest(b).svids.length > 0,
  30_000, () => `watch errors: ${String(a.watchError)} ${String(b.watchError)}\n${a.server!.logs().slice(-3000)}\n${b.server!.logs().slice(-3000)}`);
}, 150_000);

afterAll(async () => {
  for (const d of [domains.a, domains.b]) {
    if (!d) continue;
    d.watch?.close();
    d.workload?.close();
    d.admin?.close();
    await stopProcess(d.agent);
    await stopProcess(d.server);
  }
  removeDir(dir);
}, 60_000);

describe('federation between two trust domains (real processes)', () => {
  it('a workload in a.test and a workload in b.test complete mTLS, each verifying the other\'s SPIFFE ID', async () => {
    expect(await exchange()).toEqual({ serverSaw: 'spiffe://a.test/client', clientSaw: 'spiffe://b.test/server' });
    // FetchX509Bundles carries the federated bundle too.
    const bundles = await domains.a.workload!.fetchX509Bundles();
    expect(bundles.getBundleForTrustDomain(B)?.x509Authorities.length).toBeGreaterThan(0);
  });

  it('B\'s CA rotation reaches A\'s workload stream within one refresh interval, and mTLS keeps working', async () => {
    const { a, b } = domains;
    const before = new Set(fingerprints(latest(a), B));
    const bAdmin = connectAdmin(path.join(b.dataDir, 'admin.sock'));
    await bAdmin.call('RotateCa', { kind: 'x509' });
    const rotatedAt = Date.now();
    const bBundle = parseSpiffeBundle(mustTrustDomain('b.test'), (await bAdmin.call<{ document: Buffer }>('GetBundle', {})).document);
    bAdmin.close();
    const added = bBundle.x509Authorities.map((x) => x.cert.fingerprint256).filter((f) => !before.has(f));
    expect(added).toHaveLength(1);
    await waitFor('new B authority on A\'s stream', async () => fingerprints(latest(a), B).includes(added[0]), 15_000, a.server!.logs);
    const elapsed = Date.now() - rotatedAt;
    // One refresh interval at A's server, plus A's agent sync (1 s) and scheduling slack.
    expect(elapsed).toBeLessThan(REFRESH_S * 1000 + 1000 + 1500);

    // B's workload moves to an SVID signed by the new CA (20 s TTL, rotated at half-life); A accepts it.
    const newCa = bBundle.x509Authorities.find((x) => x.cert.fingerprint256 === added[0])!.cert;
    await waitFor('B workload SVID from the new CA', async () => {
      const leaf = latest(b).svids[0].certificates[0];
      return new X509Certificate(leaf.raw).checkIssued(newCa) && leaf.verify(newCa.publicKey);
    }, 30_000, b.agent!.logs);
    expect(await exchange()).toEqual({ serverSaw: 'spiffe://a.test/client', clientSaw: 'spiffe://b.test/server' });
  }, 60_000);

  it('with B\'s endpoint down A keeps the last bundle and reports the failures, then recovers', async () => {
    const { a, b } = domains;
    const lastGood = fingerprints(latest(a), B);
    const sequenceBefore = await metric(a, 'svidscope_federation_bundle_sequence', 'trust_domain="b.test"');
    expect(sequenceBefore).toBeGreaterThan(0);
    await stopProcess(b.server);

    await waitFor('refresh errors in A\'s metrics', async () => ((await metric(a, 'svidscope_federation_bundle_refresh_errors_total', 'trust_domain="b.test",reason="connect"')) ?? 0) >= 2, 15_000, a.server!.logs);
    const shown = cliJson(await federationCli(a.fedSocket, 'show', '--trust-domain', 'b.test', '--json')).federation;
    expect(shown.consecutiveFailures).toBeGreaterThanOrEqual(2);
    expect(shown.lastError.reason).toBe('connect');
    expect(await metric(a, 'svidscope_federation_bundle_sequence', 'trust_domain="b.test"')).toBe(sequenceBefore);
    expect(await metric(a, 'svidscope_federation_bundle_age_seconds', 'trust_domain="b.test"')).toBeGreaterThan(1);
    expect(fingerprints(latest(a), B)).toEqual(lastGood);
    // B's agent still serves its cached SVID and A still trusts it: federation survives the outage.
    expect(await exchange()).toEqual({ serverSaw: 'spiffe://a.test/client', clientSaw: 'spiffe://b.test/server' });

    const downSince = Date.now();
    await startServerProcess(b);
    await waitFor('A refreshes from B again', async () => {
      const f = cliJson(await federationCli(a.fedSocket, 'show', '--trust-domain', 'b.test', '--json')).federation;
      return f.consecutiveFailures === 0 && Date.parse(f.lastSuccessAt) >= Math.floor(downSince / 1000) * 1000;
    }, 15_000, a.server!.logs);
    expect(await metric(a, 'svidscope_federation_bundle_age_seconds', 'trust_domain="b.test"')).toBeLessThan(REFRESH_S + 2);
    expect(await metric(a, 'svidscope_federation_bundle_last_refresh_timestamp_seconds', 'trust_domain="b.test"')).toBeGreaterThanOrEqual(Math.floor(downSince / 1000));
    expect(await metric(a, 'svidscope_federation_bundle_authority_expiry_timestamp_seconds', 'trust_domain="b.test"')).toBeGreaterThan(Date.now() / 1000);
  }, 60_000);

  it('refuses an https_spiffe endpoint with the wrong SPIFFE ID and an https_web endpoint with an untrusted certificate', async () => {
    const { a, b } = domains;
    // c.test fetched from B's endpoint, authenticated with B's bundle (non-self-serving), but expecting another ID.
    expect(cliJson(await federationCli(a.fedSocket, 'create', '--trust-domain', 'c.test', '--bundle-endpoint-url', `https://127.0.0.1:${b.ports.endpoint}/`,
      '--endpoint-spiffe-id', 'spiffe://b.test/not-the-endpoint', '--json'))).toMatchObject({ valid: true });
    const wrongId = cliJson(await federationCli(a.fedSocket, 'refresh', '--trust-domain', 'c.test', '--json'));
    expect(wrongId).toMatchObject({ valid: false, error: 'unavailable' });
    expect(wrongId.message).toContain('not spiffe://b.test/not-the-endpoint');
    // d.test fetched from A's https_web endpoint with roots that do not include the web CA.
    writeFileSync(path.join(dir, 'other-ca.pem'), testCa('other.test').pem);
    expect(cliJson(await federationCli(b.fedSocket, 'create', '--trust-domain', 'd.test', '--bundle-endpoint-url', `https://localhost:${a.ports.endpoint}/`,
      '--bundle-endpoint-profile', 'https_web', '--web-ca-file', path.join(dir, 'other-ca.pem'), '--json'))).toMatchObject({ valid: true });
    expect(cliJson(await federationCli(b.fedSocket, 'refresh', '--trust-domain', 'd.test', '--json'))).toMatchObject({ valid: false, error: 'unavailable' });
    expect(cliJson(await federationCli(b.fedSocket, 'show', '--trust-domain', 'd.test', '--json')).federation.lastError.reason).toBe('tls');
    expect(cliJson(await federationCli(a.fedSocket, 'show', '--trust-domain', 'c.test', '--json')).federation.lastError.reason).toBe('authentication');
    expect(await metric(b, 'svidscope_federation_bundle_refresh_errors_total', 'trust_domain="d.test",reason="tls"')).toBeGreaterThanOrEqual(1);
    for (const [socket, td] of [[a.fedSocket, 'c.test'], [b.fedSocket, 'd.test']]) {
      expect(cliJson(await federationCli(socket, 'delete', '--trust-domain', td, '--json'))).toMatchObject({ valid: true });
    }
  });

  it('a bundle endpoint serving a malformed or lower-sequence bundle does not replace the stored one', async () => {
    const { a } = domains;
    const peer = testCa('e.test');
    const endpoint = await new FakeBundleEndpoint(tlsIdentity(webCa, 'spiffe://web.test/e-endpoint', ['localhost'])).start();
    try {
      endpoint.body = bundleJson('e.test', [peer], 5n, 60);
      const create = await federationCli(a.fedSocket, 'create', '--trust-domain', 'e.test', '--bundle-endpoint-url', endpoint.url,
        '--bundle-endpoint-profile', 'https_web', '--web-ca-file', path.join(dir, 'web-ca.pem'), '--json');
      expect(cliJson(create)).toMatchObject({ valid: true });
      expect(cliJson(await federationCli(a.fedSocket, 'refresh', '--trust-domain', 'e.test', '--json')).federation.bundleSequence).toBe('5');
      const stored = async () => (await a.admin!.call<{ sequence_number: string; document: Buffer }>('GetBundle', { trust_domain: 'e.test' }));
      const good = await stored();

      endpoint.body = bundleJson('e.test', [testCa('e.test')], 4n, 60);
      expect(cliJson(await federationCli(a.fedSocket, 'refresh', '--trust-domain', 'e.test', '--json'))).toMatchObject({ valid: false, error: 'unavailable' });
      expect(cliJson(await federationCli(a.fedSocket, 'show', '--trust-domain', 'e.test', '--json')).federation.lastError.reason).toBe('sequence_regressed');
      endpoint.body = '{"keys": "not a list", "spiffe_sequence": 9}';
      expect(cliJson(await federationCli(a.fedSocket, 'refresh', '--trust-domain', 'e.test', '--json'))).toMatchObject({ valid: false, error: 'unavailable' });
      expect(cliJson(await federationCli(a.fedSocket, 'show', '--trust-domain', 'e.test', '--json')).federation.lastError.reason).toBe('malformed');
      const after = await stored();
      expect(after.sequence_number).toBe('5');
      expect(Buffer.from(after.document).equals(Buffer.from(good.document))).toBe(true);
      expect(await metric(a, 'svidscope_federation_bundle_refresh_errors_total', 'trust_domain="e.test",reason="malformed"')).toBeGreaterThanOrEqual(1);
      expect(await metric(a, 'svidscope_federation_bundle_refresh_errors_total', 'trust_domain="e.test",reason="sequence_regressed"')).toBeGreaterThanOrEqual(1);
      expect(cliJson(await federationCli(a.fedSocket, 'delete', '--trust-domain', 'e.test', '--json'))).toMatchObject({ valid: true });
    } finally {
      await endpoint.stop();
    }
  });
});
