// An upstream X.509 authority tainted and revoked by subject key id, on real processes: a server
// under an operator's upstream CA and an agent with a workload. The operator replaces ca.upstream
// and restarts the server, so the bundle holds both roots while the active CA still chains to the
// old one: taint and revoke are refused (`authority-in-use`, revoke before taint `authority-order`).
// Once a CA under the new root is active, taint makes the agent replace every SVID whose chain
// passes through the old root (the workload's and its own) within a sync; revoke takes the old root
// out of the bundle with its sequence raised, and openssl, as an independent verifier, refuses an
// SVID chained to it against the new bundle.
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { certificateFacts, encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createWorkloadApiClient, type WorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { cli, json } from '../support/cli.js';
import { scrape, total } from '../support/metrics.js';
import { freePort, httpOk, spawnCli, stopAll, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';

const TD = 'example.org';
const td = mustTrustDomain(TD);
const dir = tempDir('upstream-taint');
chmodSync(dir, 0o755);

const upstream = (name: string) => {
  const ca = createSelfSignedCa({ trustDomain: TD, keyType: 'ec-p256', ttlSeconds: 7 * 86400, now: new Date() });
  const certFile = path.join(dir, `${name}.pem`);
  const keyFile = path.join(dir, `${name}.key`);
  writeFileSync(certFile, encodePem('CERTIFICATE', ca.der));
  writeFileSync(keyFile, ca.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  return { ca, certFile, keyFile, ski: certificateFacts(ca.certificate).subjectKeyId! };
};
const u1 = upstream('upstream-1');
const u2 = upstream('upstream-2');

let serverPort = 0;
let serverHealth = 0;
let agentHealth = 0;
let server: ReturnType<typeof spawnCli> | undefined;
let agent: ReturnType<typeof spawnCli> | undefined;
let admin: AdminClient | undefined;
let client: WorkloadApiClient | undefined;
const adminSocket = path.join(dir, 'server', 'admin.sock');
const socket = ['--admin-socket', adminSocket];

async function startServer(u: typeof u1): Promise<void> {
  writeFileSync(path.join(dir, 'server.yaml'), [
    `trust_domain: ${TD}`, `data_dir: ${path.join(dir, 'server')}`, `bind: 127.0.0.1:${serverPort}`,
    `health_bind: 127.0.0.1:${serverHealth}`, 'cache_reload_interval: 1s',
    'ca:', '  upstream:', `    cert_file: ${u.certFile}`, `    key_file: ${u.keyFile}`,
  ].join('\n'));
  server = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')]);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${serverHealth}/ready`), 30_000, server.logs);
  admin = connectAdmin(adminSocket);
}

/** The workload's SVID chain as served now: [leaf, intermediate]. */
const workloadChain = async () => (await client!.fetchX509Context()).svids[0].certificates;
/** The root an intermediate was signed under, by its authority key identifier. */
const rootOf = (intermediate: X509Certificate) => certificateFacts(intermediate).authorityKeyId;
const bundleRoots = async () => {
  const b = await admin!.call<{ document: Buffer; sequence_number: string }>('GetBundle', {});
  return { sequence: Number(b.sequence_number), skis: parseSpiffeBundle(td, b.document).x509Authorities.map((a) => certificateFacts(a.cert).subjectKeyId), document: b.document };
};
const serverMetrics = async () => (await scrape(`http://127.0.0.1:${serverHealth}/metrics`)).samples;

beforeAll(async () => {
  [serverPort, serverHealth, agentHealth] = await Promise.all([freePort(), freePort(), freePort()]);
  await startServer(u1);
  const agentDir = path.join(dir, 'agent-1');
  mkdirSync(agentDir, { recursive: true, mode: 0o755 });
  const socketPath = path.join(agentDir, 'agent', 'public', 'api.sock');
  const boot = await bootstrapAgent(admin!, { dir: agentDir, trustDomain: TD, serverPort, healthPort: agentHealth, socketPath });
  await admin!.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/w1`, parent_id: boot.agentId, selectors: [{ type: 'unix', value: `uid:${process.getuid?.() ?? 0}` }] } });
  agent = spawnCli(['agent', 'run', '--config', path.join(agentDir, 'agent.yaml'), '--join-token', boot.token]);
  await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${agentHealth}/ready`), 30_000, agent.logs);
  client = createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 5_000 });
  await waitFor('the workload\'s SVID', () => client!.fetchX509Context().then((c) => c.svids.length === 1), 30_000, agent.logs);
}, 90_000);

afterAll(async () => {
  client?.close();
  admin?.close();
  await stopAll([server, agent].filter((p): p is NonNullable<typeof p> => p !== undefined));
  removeDir(dir);
});

describe('upstream authority taint and revoke on real processes', () => {
  it('refuses while the active CA chains to it, then replaces what chains to it and takes it out of the bundle', async () => {
    const [oldLeaf, oldIntermediate] = await workloadChain();
    expect(rootOf(oldIntermediate)).toBe(u1.ski);

    // The operator replaces ca.upstream and restarts: the bundle now holds both roots.
    admin!.close();
    await stopAll([server!]);
    await startServer(u2);
    expect((await bundleRoots()).skis.sort()).toEqual([u1.ski, u2.ski].sort());
    // As with prepare: everything must trust the new root before anything signs under it.
    const agentRoots = async () => (await client!.fetchX509Bundles()).get(td)!.x509Authorities.map((a) => certificateFacts(a.cert).subjectKeyId);
    await waitFor('the agent\'s bundle with both roots', async () => (await agentRoots()).length === 2, 30_000, agent!.logs);
    const listed = json(await cli('authority', 'list', ...socket, '--json')) as { upstreamAuthorities: { subjectKeyId: string; configured: boolean; inUse?: string }[] };
    expect(listed.upstreamAuthorities).toEqual(expect.arrayContaining([
      expect.objectContaining({ subjectKeyId: u2.ski, configured: true }),
      expect.objectContaining({ subjectKeyId: u1.ski, configured: false, inUse: expect.stringContaining('active X.509 CA') }),
    ]));

    // Refusals, each with its code and a message that says why.
    const inUse = await cli('authority', 'taint', '--upstream', '--subject-key-id', u1.ski, ...socket, '--json');
    expect(json(inUse)).toMatchObject({ valid: false, error: 'authority-in-use', message: expect.stringContaining('chains to it') });
    expect(inUse.code).not.toBe(0);
    expect(json(await cli('authority', 'taint', '--upstream', '--subject-key-id', u2.ski, ...socket, '--json'))).toMatchObject({ valid: false, error: 'authority-in-use', message: expect.stringContaining('ca.upstream') });
    expect(json(await cli('authority', 'revoke', '--upstream', '--subject-key-id', u1.ski, ...socket, '--json'))).toMatchObject({ valid: false, error: 'authority-order' });
    expect(json(await cli('authority', 'taint', '--upstream', '--subject-key-id', 'ab:cd', ...socket, '--json'))).toMatchObject({ valid: false, error: 'not-found' });
    expect(json(await cli('authority', 'taint', '--upstream', '--kind', 'jwt', '--subject-key-id', u1.ski, ...socket, '--json'))).toMatchObject({ valid: false, error: 'usage' });

    // A CA under the new root: with an upstream authority the bundle holds the root, so nothing has to propagate first.
    expect(json(await cli('authority', 'prepare', '--kind', 'x509', ...socket, '--json'))).toMatchObject({ valid: true });
    expect(json(await cli('authority', 'activate', '--kind', 'x509', ...socket, '--json'))).toMatchObject({ valid: true, authority: { phase: 'active' } });

    const colons = u1.ski.toUpperCase().match(/../g)!.join(':'); // as openssl prints it
    const tainted = json(await cli('authority', 'taint', '--upstream', '--subject-key-id', colons, ...socket, '--json')) as { upstreamAuthority: { subjectKeyId: string; tainted: boolean; revoked: boolean } };
    expect(tainted).toMatchObject({ valid: true, upstreamAuthority: { subjectKeyId: u1.ski, tainted: true, revoked: false } });
    // The workload's SVID and the agent's own are re-signed by the CA under the new root.
    const fresh = await waitFor('the workload\'s SVID chained to the new root', async () => {
      const chain = await workloadChain();
      return rootOf(chain[1]) === u2.ski ? chain : undefined;
    }, 20_000, agent!.logs);
    await waitFor('the agent holds nothing chained to the tainted root', async () => {
      const s = (await scrape(`http://127.0.0.1:${agentHealth}/metrics`)).samples;
      return total(s, 'svidscope_agent_tainted_svids', { kind: 'x509' }) === 0 && total(s, 'svidscope_agent_svids_by_authority', { kind: 'x509' }) === 2
        && total(s, 'svidscope_agent_svid_rotations_total', { reason: 'tainted' }) >= 1;
    }, 20_000, agent!.logs);

    const before = await bundleRoots();
    const revoked = json(await cli('authority', 'revoke', '--upstream', '--subject-key-id', u1.ski, ...socket, '--json'));
    expect(revoked).toMatchObject({ valid: true, upstreamAuthority: { revoked: true } });
    const after = await bundleRoots();
    expect(after.skis).toEqual([u2.ski]);
    expect(after.sequence).toBeGreaterThan(before.sequence);
    // The agent serves the bundle without it.
    await waitFor('the agent\'s bundle without the revoked root', async () => {
      const roots = await agentRoots();
      return roots.length === 1 && roots[0] === u2.ski;
    }, 20_000, agent!.logs);

    const s = await serverMetrics();
    expect(total(s, 'svidscope_server_authority_lifecycle_total', { kind: 'x509_upstream', step: 'taint', result: 'ok' })).toBe(1);
    expect(total(s, 'svidscope_server_authority_lifecycle_total', { kind: 'x509_upstream', step: 'taint', result: 'refused' })).toBe(3); // the CLI itself refused --kind jwt
    expect(total(s, 'svidscope_server_authority_lifecycle_total', { kind: 'x509_upstream', step: 'revoke', result: 'ok' })).toBe(1);
    expect(total(s, 'svidscope_server_authorities', { kind: 'x509_upstream', state: 'revoked' })).toBe(1);
    expect(total(s, 'svidscope_server_authorities', { kind: 'x509', state: 'tainted' })).toBe(1); // the old CA under it
    expect(server!.logs()).toMatch(/"audit":true[^\n]*"kind":"x509_upstream"[^\n]*"operation":"revoke"[^\n]*"result":"ok"/);

    // openssl, an independent verifier: the old SVID verifies against the old root, not against the new bundle.
    const file = (name: string, pem: string) => {
      writeFileSync(path.join(dir, name), pem);
      return path.join(dir, name);
    };
    const newBundle = file('bundle-after.pem', x509BundleToPem(parseSpiffeBundle(td, after.document)));
    const verify = (ca: string, chain: X509Certificate[]) => execa('openssl', ['verify', '-CAfile', ca, '-untrusted', file('inter.pem', chain[1].toString()), file('leaf.pem', chain[0].toString())], { reject: false, all: true });
    const control = await verify(u1.certFile, [oldLeaf, oldIntermediate]);
    expect(control.exitCode, control.all).toBe(0);
    const refused = await verify(newBundle, [oldLeaf, oldIntermediate]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.all).toMatch(/unable to get (local )?issuer certificate/);
    const current = await verify(newBundle, fresh);
    expect(current.exitCode, current.all).toBe(0);
  }, 120_000);
});
