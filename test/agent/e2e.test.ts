// Server, agent and workloads as real processes: kernel-attested callers under distinct uids,
// the standard Workload API over a real Unix socket, rotation, CA rotation, outage and restart.
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { verifyJwtSvid } from '../../src/identity-plane/spiffe/jwtsvid/index.js';
import { createWorkloadApiClient, type X509Context } from '../../src/identity-plane/workload-api/index.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { ensureUser, runNodeAs } from '../support/users.js';
import { portableScript } from '../support/portable-script.js';
import { hasFamily, promtoolCheck, scrape, total } from '../support/metrics.js';
import { CONTENT_TYPE, openMetricsProblems, scrapeAs } from '../support/openmetrics.js';
import { agentFamilies, serverFamilies } from '../../src/common/telemetry/names.js';

const dir = tempDir('e2e');
chmodSync(dir, 0o755);
const socketPath = path.join(dir, 'agent', 'public', 'api.sock');
const TD = 'example.org';
const SHORT_TTL = 8;

let ports: { server: number; serverHealth: number; agentHealth: number };
let server: ReturnType<typeof spawnCli>;
let agent: ReturnType<typeof spawnCli>;
let admin: AdminClient;
let fetchScript: string;
let agentId: string;
const users = { a: ensureUser('svidscope-test-a'), b: ensureUser('svidscope-test-b') };

function startServer() {
  const proc = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')]);
  return waitFor('server ready', () => httpOk(`http://127.0.0.1:${ports.serverHealth}/ready`), 30_000, proc.logs).then(() => proc);
}
function startAgent(extra: string[] = []) {
  const proc = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), ...extra]);
  return waitFor('agent ready', () => httpOk(`http://127.0.0.1:${ports.agentHealth}/ready`), 30_000, proc.logs).then(() => proc);
}
const workload = (opts: { deadlineMs?: number; rawMetadata?: grpc.Metadata } = {}) => createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 10_000, ...opts });
/** The leaf of the X509-SVID the server presents on its node API (it asks no client certificate of a bare handshake). */
function serverLeaf(): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: ports.server, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve(new X509Certificate(raw));
    });
    socket.once('error', reject);
  });
}
const createEntry = (spiffeId: string, uid: number, extra: object = {}) =>
  admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}${spiffeId}`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }], ...extra } });

beforeAll(async () => {
  ({ script: fetchScript } = await portableScript(path.join(import.meta.dirname, 'fixtures', 'fetch-x509.mjs'), path.join(dir, 'scripts')));
  ports = { server: await freePort(), serverHealth: await freePort(), agentHealth: await freePort() };
  writeFileSync(path.join(dir, 'server.yaml'), [
    `trust_domain: ${TD}`, `data_dir: ${path.join(dir, 'server')}`, `bind: 127.0.0.1:${ports.server}`,
    `health_bind: 127.0.0.1:${ports.serverHealth}`, 'cache_reload_interval: 1s',
  ].join('\n'));
  server = await startServer();
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const boot = await bootstrapAgent(admin, { dir, trustDomain: TD, serverPort: ports.server, healthPort: ports.agentHealth, socketPath });
  agent = await startAgent(['--join-token', boot.token]);
  agentId = boot.agentId;
  await createEntry('/a', users.a.uid);
  await createEntry('/b', users.b.uid);
  await createEntry('/root', 0, { x509_svid_ttl: SHORT_TTL, jwt_svid_ttl: 60 });
  const c = workload();
  await waitFor('root workload SVID', () => c.fetchX509Context().then((ctx) => ctx.svids.length > 0), 20_000, agent.logs);
  c.close();
}, 90_000);

afterAll(async () => {
  admin?.close();
  for (const p of [agent, server]) {
    p?.child.kill('SIGTERM');
    await p?.child;
  }
  removeDir(dir);
});

describe('agent and Workload API end to end', () => {
  it('serves each uid its own SVID and no one else\'s', async () => {
    await waitFor('entries synced', async () => {
      const r = await runNodeAs(users.a, fetchScript, [socketPath], dir);
      return r.stdout.includes('spiffeIds');
    }, 20_000, agent.logs);
    const [a, b] = await Promise.all([users.a, users.b].map((u) => runNodeAs(u, fetchScript, [socketPath], dir)));
    expect(JSON.parse(a.stdout)).toEqual({ spiffeIds: [`spiffe://${TD}/a`] });
    expect(JSON.parse(b.stdout)).toEqual({ spiffeIds: [`spiffe://${TD}/b`] });
  });

  it('answers PermissionDenied to a caller with no entry', async () => {
    const nobody = ensureUser('svidscope-test-none');
    const r = await runNodeAs(nobody, fetchScript, [socketPath], dir);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: 'PERMISSION_DENIED', details: 'no identity issued' });
  });

  it('answers InvalidArgument to a request without the security header', async () => {
    const c = workload({ rawMetadata: new grpc.Metadata() });
    // The status and text go-spiffe sees are unchanged; the catalogue code rides in the trailer.
    await expect(c.fetchX509Context()).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT, code: 'workload-header-missing', message: 'workloadapi: FetchX509SVID: security header missing from request' });
    await expect(c.validateJwtSvid('x', 'y')).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT, code: 'workload-header-missing' });
    c.close();
    const ok = workload();
    await expect(ok.validateJwtSvid('x', 'y')).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT, code: 'malformed' });
    ok.close();
  });

  it('keeps the socket world-accessible (the kernel says who the caller is)', () => {
    expect(statSync(socketPath).mode & 0o777).toBe(0o777);
    expect(statSync(path.dirname(socketPath)).mode & 0o777).toBe(0o755);
  });

  it('issues a JWT-SVID that ValidateJWTSVID and the foundation verifier both accept', async () => {
    const c = workload();
    const svid = await c.fetchJwtSvid({ audience: ['orders'] });
    expect(svid.id.toString()).toBe(`spiffe://${TD}/root`);
    const validated = await c.validateJwtSvid(svid.token, 'orders');
    expect(validated.id.toString()).toBe(`spiffe://${TD}/root`);
    expect(validated.claims.aud).toEqual(['orders']);
    const bundles = await c.fetchJwtBundles();
    const local = await verifyJwtSvid(svid.token, bundles, { audience: ['orders'], now: new Date(), leewaySeconds: 0 });
    expect(local.id.toString()).toBe(`spiffe://${TD}/root`);
    await expect(c.validateJwtSvid(svid.token, 'payments')).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT });
    await expect(c.fetchJwtSvid({ audience: [] })).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT });
    c.close();
  });

  it('pushes the rotated SVID on the stream before the old one expires, and a CA rotation\'s bundle', async () => {
    const c = workload();
    const seen: X509Context[] = [];
    const handle = c.watchX509Context((ctx) => seen.push(ctx), () => undefined);
    await waitFor('first message', async () => seen.length > 0);
    const first = new X509Certificate(seen[0].svids[0].certificates[0].raw);
    const firstNotAfter = new Date(first.validTo).getTime();
    const rotated = await waitFor('rotated SVID', async () => seen.find((ctx) => ctx.svids[0].certificates[0].serialNumber !== first.serialNumber), 20_000, agent.logs);
    const arrivedAt = Date.now();
    expect(arrivedAt).toBeLessThan(firstNotAfter);
    expect(rotated.svids[0].id.toString()).toBe(`spiffe://${TD}/root`);

    const authorities = (ctx: X509Context) => ctx.bundles.getBundleForTrustDomain(rotated.svids[0].id.trustDomain)?.x509Authorities.length ?? 0;
    const before = authorities(seen[seen.length - 1]);
    await admin.call('RotateCa', { kind: 'x509' });
    const withNewCa = await waitFor('CA rotation on the stream', async () => seen.find((ctx) => authorities(ctx) > before), 15_000, agent.logs);
    expect(authorities(withNewCa)).toBe(before + 1);
    handle.close();
    c.close();
  }, 60_000);

  it('exposes every documented metric family, moved by what happened, valid in both formats whichever is scraped first', async () => {
    const urls = [`http://127.0.0.1:${ports.serverHealth}/metrics`, `http://127.0.0.1:${ports.agentHealth}/metrics`];
    // Prometheus prefers OpenMetrics and scrapes first; a text scraper after it must still get clean
    // text, and OpenMetrics must stay valid after that.
    const openMetricsFirst = await Promise.all(urls.map((u) => scrapeAs(u, 'openmetrics')));
    const [server, agentMetrics] = await Promise.all(urls.map((u) => scrape(u)));
    const openMetricsAfter = await Promise.all(urls.map((u) => scrapeAs(u, 'openmetrics')));
    for (const om of [...openMetricsFirst, ...openMetricsAfter]) {
      expect(om.contentType).toBe(CONTENT_TYPE.openmetrics);
      expect(openMetricsProblems(om.body)).toEqual([]);
    }
    for (const f of Object.values(serverFamilies)) expect(hasFamily(server.text, f.name), `server ${f.name}`).toBe(true);
    for (const f of Object.values(agentFamilies)) expect(hasFamily(agentMetrics.text, f.name), `agent ${f.name}`).toBe(true);
    expect(await promtoolCheck(server.text)).toBe('');
    expect(await promtoolCheck(agentMetrics.text)).toBe('');

    const s = server.samples;
    const a = agentMetrics.samples;
    expect(total(s, 'svidscope_server_attestations_total', { method: 'join_token', result: 'success' })).toBeGreaterThanOrEqual(1);
    expect(total(s, 'svidscope_server_svids_issued_total', { svid_type: 'x509' })).toBeGreaterThanOrEqual(4); // 3 entries, then rotations
    expect(total(s, 'svidscope_server_svids_issued_total', { svid_type: 'jwt' })).toBeGreaterThanOrEqual(1);
    expect(total(s, 'svidscope_server_svid_issuance_duration_seconds_count', { svid_type: 'x509', result: 'success' })).toBeGreaterThanOrEqual(4);
    expect(total(s, 'svidscope_server_api_requests_total', { service: 'node', method: 'SyncAuthorizedEntries', code: 'OK' })).toBeGreaterThan(1);
    expect(total(s, 'svidscope_server_signing_keys', { kind: 'x509', phase: 'old' })).toBe(1); // the forced CA rotation
    expect(total(s, 'svidscope_server_bundle_authorities', { kind: 'x509' })).toBe(2);
    expect(total(s, 'svidscope_server_datastore_operation_duration_seconds_count')).toBeGreaterThan(10);
    // Each entry sync is counted by kind and the agent's entry count lands in the fleet histogram.
    expect(total(s, 'svidscope_server_entry_syncs_total', { kind: 'full' })).toBeGreaterThanOrEqual(1);
    expect(total(s, 'svidscope_server_agent_authorized_entries_count')).toBe(total(s, 'svidscope_server_entry_syncs_total'));
    expect(total(s, 'svidscope_server_agent_authorized_entries_bucket', { le: '0' })).toBeLessThan(total(s, 'svidscope_server_agent_authorized_entries_count'));
    expect(total(a, 'svidscope_agent_svid_rotations_total', { reason: 'new' })).toBe(3);
    expect(total(a, 'svidscope_agent_svid_rotations_total', { reason: 'scheduled' })).toBeGreaterThanOrEqual(1);
    expect(total(a, 'svidscope_agent_svid_ttl_remaining_ratio_at_rotation_count')).toBeGreaterThanOrEqual(1);
    // The CA rotation; the bundle the agent got at attestation is no propagation (it did not exist before).
    expect(total(a, 'svidscope_agent_bundle_propagation_seconds_count', { bundle: 'own' })).toBeGreaterThanOrEqual(1);
    expect(total(a, 'svidscope_agent_bundle_propagation_seconds_sum', { bundle: 'own' })).toBeLessThan(10);
    expect(total(a, 'svidscope_agent_svids_cached')).toBe(3);
    expect(total(a, 'svidscope_agent_attested')).toBe(1);
    expect(total(a, 'svidscope_agent_workload_api_requests_total', { method: 'FetchX509SVID', code: 'PERMISSION_DENIED' })).toBeGreaterThanOrEqual(1);
    expect(total(a, 'svidscope_agent_workload_api_requests_total', { method: 'ValidateJWTSVID', code: 'INVALID_ARGUMENT' })).toBeGreaterThanOrEqual(1);
    expect(total(a, 'svidscope_agent_last_successful_sync_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 30);
  });

  it('refuses a bundle that drops the authority of its own SVID (a bad rotation), and syncs again once it is back', async () => {
    // The earlier forced rotation left two X.509 CAs published: the old one, which signed the
    // agent's and the server's SVIDs (a rotation re-keys neither), and the active one. Withholding
    // the active one first narrows the bundle to what the agent needs, so the agent adopts it;
    // withholding the old one too leaves a bundle the agent must refuse. Publishing the active one
    // again first then passes through a bundle of the active CA alone. Throughout, the server must
    // not re-key its own SVID off the old CA: the agent, trusting only that one by then, could never
    // connect again (a lockout first seen as a flake of this test, when the order was left to chance).
    const c = workload();
    const scrapeFailures = async () => total((await scrape(`http://127.0.0.1:${ports.agentHealth}/metrics`)).samples, 'svidscope_agent_sync_failures_total');
    const bundleDers = async () => {
      const ctx = await c.fetchX509Context();
      return ctx.bundles.getX509BundleForTrustDomain(ctx.svids[0].id.trustDomain)!.x509Authorities.map((a) => a.der.toString('base64'));
    };
    const status = await admin.call<{ slots: { kind: string; key_id: string; phase: string }[] }>('CaStatus', {});
    const x509 = status.slots.filter((s) => s.kind === 'x509');
    expect(x509.map((s) => s.phase).sort()).toEqual(['active', 'old']);
    const [active, old] = [x509.find((s) => s.phase === 'active')!, x509.find((s) => s.phase === 'old')!];
    const withheld: string[] = [];
    const withhold = async (keyId: string) => {
      await admin.call('WithholdAuthority', { kind: 'x509', key_id: keyId, withhold: true });
      withheld.push(keyId);
    };
    try {
      await withhold(active.key_id);
      const narrowed = await waitFor('agent serving the bundle without the active CA', async () => {
        const ders = await bundleDers();
        return ders.length === 1 && ders;
      }, 20_000, agent.logs);
      const oldCa = new X509Certificate(Buffer.from(narrowed[0], 'base64'));
      expect((await serverLeaf()).checkIssued(oldCa)).toBe(true);

      const failuresBefore = await scrapeFailures();
      await withhold(old.key_id);
      // Either the agent fetched the empty bundle and refused it, or the server (which
      // authenticates agents against the same bundle) refused the agent first: the sync fails.
      await waitFor('agent sync failing', async () => (await scrapeFailures()) > failuresBefore, 20_000, agent.logs);
      // Workloads keep the bundle that still verifies the agent's authority.
      expect(await bundleDers()).toEqual(narrowed);
      // Several server ticks (cache_reload_interval 1s) later, its SVID is still one the agent can verify.
      await new Promise((r) => setTimeout(r, 3500));
      const leaf = await serverLeaf();
      expect(leaf.checkIssued(oldCa), `server SVID issued by ${leaf.issuer}, not the CA the agent still trusts`).toBe(true);
      expect(leaf.verify(oldCa.publicKey)).toBe(true);
    } finally {
      for (const keyId of withheld) { // the active CA first
        await admin.call('WithholdAuthority', { kind: 'x509', key_id: keyId, withhold: false });
        await new Promise((r) => setTimeout(r, 2500)); // server ticks and agent syncs see each step
      }
    }
    const failuresAfterFix = await scrapeFailures();
    await waitFor('agent syncs again', async () => {
      const m = (await scrape(`http://127.0.0.1:${ports.agentHealth}/metrics`)).samples;
      return total(m, 'svidscope_agent_sync_failures_total') === failuresAfterFix && total(m, 'svidscope_agent_last_successful_sync_timestamp_seconds') > Date.now() / 1000 - 3;
    }, 30_000, agent.logs);
    await waitFor('both CAs served again', async () => (await bundleDers()).length === 2, 20_000, agent.logs);
    c.close();
  }, 90_000);

  // When the outage below began: a bundle the restarted server publishes was due at the earliest then.
  let serverDownSinceMs = 0;

  it('serves the cached SVID while the server is down, and never after it expired', async () => {
    serverDownSinceMs = Date.now();
    server.child.kill('SIGKILL');
    await server.child;
    const c = workload();
    const ctx = await c.fetchX509Context();
    const notAfter = Math.min(...ctx.svids.map((s) => new Date(new X509Certificate(s.certificates[0].raw).validTo).getTime()));
    expect(ctx.svids[0].id.toString()).toBe(`spiffe://${TD}/root`);
    await new Promise((r) => setTimeout(r, Math.max(0, notAfter - Date.now()) + 1500));
    const err = await c.fetchX509Context().then(() => undefined, (e: unknown) => e as { status: grpc.status });
    expect(err, 'an expired SVID must not be served').toBeDefined();
    expect(grpc.status[err!.status]).toBe('UNAVAILABLE');
    c.close();
  }, 60_000);

  it('answers Unavailable, not PermissionDenied, until its first sync after a restart during an outage', async () => {
    agent.child.kill('SIGKILL');
    await agent.child;
    agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml')]);
    await waitFor('agent live', () => httpOk(`http://127.0.0.1:${ports.agentHealth}/live`), 30_000, agent.logs);
    expect(await httpOk(`http://127.0.0.1:${ports.agentHealth}/ready`)).toBe(false);
    const c = workload();
    const err = await c.fetchX509Context().then(() => undefined, (e: unknown) => e as { status: grpc.status; message: string });
    expect(grpc.status[err!.status]).toBe('UNAVAILABLE');
    expect(err!.message).toMatch(/not completed a sync/);
    // Even a caller with no entry cannot be told "no identity" before the entries are known.
    const r = await runNodeAs(ensureUser('svidscope-test-none'), fetchScript, [socketPath], dir);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: 'UNAVAILABLE' });
    c.close();
  }, 60_000);

  it('restarts after kill -9 over a stale socket, without a new join token', async () => {
    server = await startServer();
    agent.child.kill('SIGKILL');
    await agent.child;
    expect(existsSync(socketPath)).toBe(true); // the crashed agent left its socket behind
    agent = await startAgent();
    const c = workload();
    const ctx = await waitFor('SVID after restart', () => c.fetchX509Context().then((x) => x.svids.length > 0 && x), 30_000, agent.logs);
    expect(ctx.svids[0].id.toString()).toBe(`spiffe://${TD}/root`);
    c.close();
    // A restart is no propagation event: the agent measures against the bundle it kept on disk.
    const m = (await scrape(`http://127.0.0.1:${ports.agentHealth}/metrics`)).samples;
    const serverSequence = Number((await admin.call<{ sequence_number: string }>('GetBundle', {})).sequence_number);
    expect(total(m, 'svidscope_agent_bundle_sequence')).toBe(serverSequence);
    if (total(m, 'svidscope_agent_bundle_propagation_seconds_count', { bundle: 'own' }) > 0) {
      // The server's bundle moved while the agent was down (its restart re-ran CA rotation, whose prepare point may have
      // passed during the outage): the lag is that gap, never the bundle's age, so it cannot exceed the outage. A fixed
      // 10 s bound failed on a cold machine where the outage itself lasts longer.
      expect(serverDownSinceMs).toBeGreaterThan(0);
      const outageS = (Date.now() - serverDownSinceMs) / 1000;
      expect(total(m, 'svidscope_agent_bundle_propagation_seconds_sum', { bundle: 'own' })).toBeLessThanOrEqual(outageS);
    }
  }, 60_000);
});
