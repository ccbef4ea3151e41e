// Key-compromise response on real processes: a server, an agent dialling it directly and one
// through a fault relay (so it can be cut off without a restart), workloads on the Workload API.
// prepare → (propagation) → activate → taint must replace every SVID the old key signed, the
// agents' own included, at the next sync; a partitioned agent catches up when it is back; a
// tainted JWT key's cached tokens stop being served; revoke takes the key out of every bundle, and
// openssl, as an independent verifier, refuses an SVID it signed against the new bundle.
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';
import { startFaultRelay, relayMode, type FaultRelay } from '../../src/chaos/relay.js';
import { certificateFacts } from '../../src/identity-plane/spiffe/x509/index.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createWorkloadApiClient, type WorkloadApiClient, type X509Context } from '../../src/identity-plane/workload-api/index.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { scrape, total } from '../support/metrics.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';

const TD = 'example.org';
const td = mustTrustDomain(TD);
/** The agents' sync interval: a taint must be acted on at the next sync. */
const SYNC_SECONDS = 2;
/** Generous slack over one sync interval for a loaded 2-core machine (process start-up excluded). */
const MARGIN_MS = 6_000;

const dir = tempDir('key-compromise');
chmodSync(dir, 0o755);

type Proc = ReturnType<typeof spawnCli>;
interface AgentUnderTest {
  name: string;
  proc: Proc;
  healthPort: number;
  dataDir: string;
  client: WorkloadApiClient;
  seen: { at: number; ctx: X509Context }[];
  close(): void;
}

let server: Proc;
let serverHealth: number;
let admin: AdminClient;
let relay: FaultRelay;
const agents: AgentUnderTest[] = [];

type Slot = { kind: string; phase: string; key_id: string; tainted?: boolean; revoked?: boolean };
const caStatus = async () => (await admin.call<{ slots: Slot[] }>('CaStatus', {})).slots;
const activeId = async (kind: 'x509' | 'jwt') => (await caStatus()).find((s) => s.kind === kind && s.phase === 'active')!.key_id;
const lifecycle = (kind: 'x509' | 'jwt', operation: string, keyId = '') => admin.call<{ slots: Slot[] }>('AuthorityLifecycle', { kind, operation, key_id: keyId });
const agentMetrics = async (a: AgentUnderTest) => (await scrape(`http://127.0.0.1:${a.healthPort}/metrics`)).samples;
/** The signing CA's key id of a leaf (its authority key identifier; the server's X.509 key ids are CA SKIs). */
const signerOf = (cert: X509Certificate) => certificateFacts(cert).authorityKeyId;
const ownSvidSigner = (a: AgentUnderTest) => signerOf(new X509Certificate(readFileSync(path.join(a.dataDir, 'private', 'agent_svid.pem'))));
const latest = (a: AgentUnderTest) => a.seen[a.seen.length - 1]?.ctx;
const signers = (ctx: X509Context | undefined) => (ctx?.svids ?? []).map((s) => signerOf(s.certificates[0]));

/** Prepares a key, waits until every reachable agent serves the bundle that holds it, then activates it. */
async function rotateCarefully(kind: 'x509' | 'jwt', among: AgentUnderTest[]): Promise<string> {
  const prepared = (await lifecycle(kind, 'prepare')).slots.find((s) => s.kind === kind && s.phase === 'prepared')!.key_id;
  const sequence = Number((await admin.call<{ sequence_number: string }>('GetBundle', {})).sequence_number);
  for (const a of among) {
    await waitFor(`${a.name} serving bundle ${sequence}`, async () => total(await agentMetrics(a), 'svidscope_agent_bundle_sequence') >= sequence, 20_000, a.proc.logs);
  }
  await lifecycle(kind, 'activate', prepared);
  return prepared;
}

async function startAgent(name: string, serverPort: number, entries: string[]): Promise<AgentUnderTest> {
  const agentDir = path.join(dir, name);
  mkdirSync(agentDir, { recursive: true, mode: 0o755 });
  const socketPath = path.join(agentDir, 'agent', 'public', 'api.sock');
  const healthPort = await freePort();
  const boot = await bootstrapAgent(admin, { dir: agentDir, trustDomain: TD, serverPort, healthPort, socketPath, extra: [] });
  writeFileSync(path.join(agentDir, 'agent.yaml'), readFileSync(path.join(agentDir, 'agent.yaml'), 'utf8').replace('sync_interval: 1s', `sync_interval: ${SYNC_SECONDS}s`));
  const proc = spawnCli(['agent', 'run', '--config', path.join(agentDir, 'agent.yaml'), '--join-token', boot.token]);
  await waitFor(`${name} ready`, () => httpOk(`http://127.0.0.1:${healthPort}/ready`), 30_000, proc.logs);
  for (const p of entries) {
    await admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}${p}`, parent_id: boot.agentId, selectors: [{ type: 'unix', value: 'uid:0' }], jwt_svid_ttl: 600 } });
  }
  const client = createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 10_000 });
  // Watch only once the workload has its identities: a stream opened before is refused (no identity yet).
  await waitFor(`${name}: an SVID for each entry`, () => client.fetchX509Context().then((ctx) => ctx.svids.length === entries.length), 30_000, proc.logs);
  const seen: AgentUnderTest['seen'] = [];
  const watch = client.watchX509Context((ctx) => seen.push({ at: Date.now(), ctx }), () => undefined);
  const a = { name, proc, healthPort, dataDir: path.join(agentDir, 'agent'), client, seen, close: () => { watch.close(); client.close(); } };
  await waitFor(`${name}: the stream's first message`, async () => (latest(a)?.svids.length ?? 0) === entries.length, 10_000, proc.logs);
  return a;
}

beforeAll(async () => {
  const serverPort = await freePort();
  serverHealth = await freePort();
  writeFileSync(path.join(dir, 'server.yaml'), [
    `trust_domain: ${TD}`, `data_dir: ${path.join(dir, 'server')}`, `bind: 127.0.0.1:${serverPort}`,
    `health_bind: 127.0.0.1:${serverHealth}`, 'cache_reload_interval: 1s',
  ].join('\n'));
  server = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')]);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${serverHealth}/ready`), 30_000, server.logs);
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  relay = await startFaultRelay(`127.0.0.1:${serverPort}`);
  const relayPort = Number(relay.address.slice(relay.address.lastIndexOf(':') + 1));
  agents.push(...await Promise.all([startAgent('agent-1', serverPort, ['/w1', '/w2']), startAgent('agent-2', relayPort, ['/w3', '/w4'])]));
}, 120_000);

afterAll(async () => {
  for (const a of agents) a.close();
  admin?.close();
  for (const p of [...agents.map((a) => a.proc), server]) {
    p?.child.kill('SIGTERM');
    await p?.child;
  }
  await relay?.stop();
  removeDir(dir);
});

describe('key compromise: taint and revoke on real processes', () => {
  const [one, two] = [() => agents[0], () => agents[1]];
  let oldCa = '';
  let oldLeafPem = '';

  it('replaces every X.509-SVID the tainted CA signed within one sync, and a partitioned agent\'s once it is back', async () => {
    oldCa = await activeId('x509');
    // The key id an operator taints is the CA's subject key identifier, so SVIDs name it as signer.
    for (const a of agents) expect(signers(latest(a))).toEqual([oldCa, oldCa]);
    expect(ownSvidSigner(one())).toBe(oldCa);
    expect(total(await agentMetrics(one()), 'svidscope_agent_svids_by_authority', { kind: 'x509', authority_key_id: oldCa })).toBe(3); // two workloads + its own
    oldLeafPem = latest(one())!.svids[0].certificates[0].toString();

    const newCa = await rotateCarefully('x509', agents);
    expect(newCa).not.toBe(oldCa);
    // Activation alone replaces nothing before half-life: the old CA's SVIDs are still served.
    expect(signers(latest(one()))).toEqual([oldCa, oldCa]);

    await relayMode(relay.control, { kind: 'partition' });
    const taintedAt = Date.now();
    await lifecycle('x509', 'taint', oldCa);
    const replaced = await waitFor('agent-1 serving SVIDs of the new CA only', async () => one().seen.find((s) => s.at >= taintedAt && s.ctx.svids.length === 2 && signers(s.ctx).every((k) => k === newCa)),
      SYNC_SECONDS * 1000 + MARGIN_MS + 10_000, one().proc.logs);
    const tookMs = replaced.at - taintedAt;
    console.log(`taint → agent-1 stream with re-signed SVIDs: ${tookMs} ms (sync interval ${SYNC_SECONDS} s)`);
    expect(tookMs).toBeLessThan(SYNC_SECONDS * 1000 + MARGIN_MS);
    await waitFor('agent-1 own SVID renewed', async () => ownSvidSigner(one()) === newCa, 10_000, one().proc.logs);
    await waitFor('agent-1 holding nothing tainted', async () => {
      const m = await agentMetrics(one());
      return total(m, 'svidscope_agent_tainted_svids', { kind: 'x509' }) === 0 && total(m, 'svidscope_agent_taint_clear_seconds_count') >= 1 && m;
    }, 10_000, one().proc.logs);
    const m1 = await agentMetrics(one());
    expect(total(m1, 'svidscope_agent_svid_rotations_total', { reason: 'tainted' })).toBe(2);
    expect(m1.some((s) => s.name === 'svidscope_agent_svids_by_authority' && s.labels.authority_key_id === oldCa)).toBe(false);
    expect(total(m1, 'svidscope_agent_svids_by_authority', { kind: 'x509', authority_key_id: newCa })).toBe(3);

    // Cut off, agent-2 cannot learn of the taint: it keeps serving what it has (the limit of taint).
    expect(signers(latest(two()))).toEqual([oldCa, oldCa]);
    expect(total(await agentMetrics(two()), 'svidscope_agent_tainted_svids', { kind: 'x509' })).toBe(0);

    await relayMode(relay.control, { kind: 'pass' });
    const healedAt = Date.now();
    await waitFor('agent-2 serving SVIDs of the new CA after the partition', async () => two().seen.find((s) => s.at >= healedAt && s.ctx.svids.length === 2 && signers(s.ctx).every((k) => k === newCa)), 60_000, two().proc.logs);
    await waitFor('agent-2 own SVID renewed', async () => ownSvidSigner(two()) === newCa, 20_000, two().proc.logs);
    await waitFor('agent-2 holding nothing tainted', async () => {
      const m = await agentMetrics(two());
      return total(m, 'svidscope_agent_tainted_svids', { kind: 'x509' }) === 0 && total(m, 'svidscope_agent_svid_rotations_total', { reason: 'tainted' }) === 2;
    }, 20_000, two().proc.logs);

    const s = (await scrape(`http://127.0.0.1:${serverHealth}/metrics`)).samples;
    expect(total(s, 'svidscope_server_authorities', { kind: 'x509', state: 'tainted' })).toBe(1);
    expect(total(s, 'svidscope_server_authorities', { kind: 'x509', state: 'active' })).toBe(1);
    expect(total(s, 'svidscope_server_authority_lifecycle_total', { kind: 'x509', step: 'taint', result: 'ok' })).toBe(1);
    expect(total(s, 'svidscope_server_authority_lifecycle_total', { kind: 'x509', step: 'activate', result: 'ok' })).toBe(1);
    // The audit line names the step, the key, when, and the caller as the kernel saw it (this
    // process holds the admin client) beside what the client claimed.
    const audit = server.logs().split('\n').filter((l) => l.includes('"audit":true')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const taintLine = audit.find((l) => l.operation === 'taint' && l.kind === 'x509');
    expect(taintLine).toMatchObject({ keyId: oldCa, result: 'ok', phase: 'old', caller: { via: 'admin-socket', pid: process.pid, uid: process.getuid!(), claimed_pid: String(process.pid) } });
    expect(Date.parse(String(taintLine!.at))).toBeGreaterThanOrEqual(taintedAt - 1000);
  }, 150_000);

  let oldKid = '';
  it('stops serving cached JWT-SVIDs of a tainted JWT key: the next fetch has the new kid', async () => {
    const first = await one().client.fetchJwtSvid({ audience: ['orders'], spiffeId: `spiffe://${TD}/w1` });
    oldKid = await activeId('jwt');
    expect(first.header.kid).toBe(oldKid);
    const newKid = await rotateCarefully('jwt', agents);
    // Still within half its life: the cached token (old kid) is served.
    const cached = await one().client.fetchJwtSvid({ audience: ['orders'], spiffeId: `spiffe://${TD}/w1` });
    expect(cached.token).toBe(first.token);

    const taintedAt = Date.now();
    await lifecycle('jwt', 'taint', oldKid);
    const fresh = await waitFor('a JWT-SVID with the new kid', async () => {
      const svid = await one().client.fetchJwtSvid({ audience: ['orders'], spiffeId: `spiffe://${TD}/w1` });
      return svid.header.kid !== oldKid && svid;
    }, SYNC_SECONDS * 1000 + MARGIN_MS, one().proc.logs);
    console.log(`taint → JWT-SVID with the new kid: ${Date.now() - taintedAt} ms`);
    expect(fresh.header.kid).toBe(newKid);
    expect(fresh.token).not.toBe(first.token);
    expect(total(await agentMetrics(one()), 'svidscope_agent_tainted_svids', { kind: 'jwt' })).toBe(0);
    const m = await agentMetrics(one());
    expect(total(m, 'svidscope_agent_svids_by_authority', { kind: 'jwt', authority_key_id: newKid })).toBe(1);
    expect(m.some((s) => s.name === 'svidscope_agent_svids_by_authority' && s.labels.authority_key_id === oldKid)).toBe(false);
  }, 60_000);

  it('after revoke, the keys are gone from every agent\'s bundles and openssl refuses an SVID the revoked CA signed', async () => {
    await lifecycle('x509', 'revoke', oldCa);
    await lifecycle('jwt', 'revoke', oldKid);
    for (const a of agents) {
      await waitFor(`${a.name}: revoked keys out of its bundles`, async () => {
        const x509 = (await a.client.fetchX509Bundles()).getX509BundleForTrustDomain(td)!;
        const jwt = (await a.client.fetchJwtBundles()).getJwtBundleForTrustDomain(td)!;
        return !x509.x509Authorities.some((c) => certificateFacts(c.cert).subjectKeyId === oldCa) && !jwt.jwtAuthorities.has(oldKid) && jwt.jwtAuthorities.size === 1;
      }, 20_000, a.proc.logs);
    }
    const bundle = (await one().client.fetchX509Bundles()).getX509BundleForTrustDomain(td)!;
    const bundlePem = path.join(dir, 'bundle-after-revoke.pem');
    writeFileSync(bundlePem, bundle.x509Authorities.map((c) => c.cert.toString()).join(''));
    const oldLeaf = path.join(dir, 'old-leaf.pem');
    writeFileSync(oldLeaf, oldLeafPem);
    const newLeaf = path.join(dir, 'new-leaf.pem');
    writeFileSync(newLeaf, latest(one())!.svids[0].certificates[0].toString());

    const refused = await execa('openssl', ['verify', '-CAfile', bundlePem, oldLeaf], { reject: false, all: true });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.all).toMatch(/unable to get local issuer certificate/);
    const accepted = await execa('openssl', ['verify', '-CAfile', bundlePem, newLeaf], { reject: false, all: true });
    expect(accepted.all).toMatch(/: OK$/m);

    const s = (await scrape(`http://127.0.0.1:${serverHealth}/metrics`)).samples;
    expect(total(s, 'svidscope_server_authorities', { kind: 'x509', state: 'revoked' })).toBe(1);
    expect(total(s, 'svidscope_server_authorities', { kind: 'jwt', state: 'revoked' })).toBe(1);
    expect(total(s, 'svidscope_server_authority_lifecycle_total', { kind: 'jwt', step: 'revoke', result: 'ok' })).toBe(1);
    // A second revoke of an active key is refused and counted as such.
    await expect(lifecycle('x509', 'revoke', await activeId('x509'))).rejects.toMatchObject({ code: 'authority-order' });
    expect(total((await scrape(`http://127.0.0.1:${serverHealth}/metrics`)).samples, 'svidscope_server_authority_lifecycle_total', { kind: 'x509', step: 'revoke', result: 'refused' })).toBe(1);
  }, 60_000);
});
