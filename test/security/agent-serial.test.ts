// A compromised agent's old SVIDs: the server process must accept only the agent record's current
// serial (plus the one a renewal replaced, for agent_renewal_grace), over real mTLS gRPC. Covers the
// original SVID after a renewal, parallel renewals, and SVIDs refused after evict or ban that must
// stay refused once the same agent ID attests again.
import * as grpc from '@grpc/grpc-js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin } from '../../src/cli/admin/client.js';
import type { AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { scrape } from '../support/metrics.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { attestAgentAt, nodeClient, removeDir, tempDir, type AgentIdentity } from '../support/server.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const GRACE_MS = 1500;
const dir = tempDir('agent-serial');
let proc: ReturnType<typeof spawnCli>;
let admin: AdminClient;
let address: string;
let bundlePem: string;
let healthPort: number;

beforeAll(async () => {
  const port = await freePort();
  healthPort = await freePort();
  writeFileSync(path.join(dir, 'server.yaml'), 'agent_renewal_grace: 1500ms\n');
  proc = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml'), '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'server'),
    '--bind', `127.0.0.1:${port}`, '--health-bind', `127.0.0.1:${healthPort}`]);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${healthPort}/ready`), 30_000, proc.logs);
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
  bundlePem = x509BundleToPem(parseSpiffeBundle(EXAMPLE_ORG, bundle.document));
  address = `127.0.0.1:${port}`;
}, 60_000);

afterAll(async () => {
  admin?.close();
  proc?.child.kill('SIGTERM');
  await proc?.child.catch(() => undefined);
  removeDir(dir);
});

/** One agent API call made with `id`'s SVID on a fresh mTLS connection. */
async function call(id: AgentIdentity, method = 'GetBundles', request: object = {}): Promise<unknown> {
  const client = nodeClient(address, bundlePem, id);
  try {
    return await client.call(method, request);
  } finally {
    client.close();
  }
}

async function renew(id: AgentIdentity): Promise<AgentIdentity> {
  const key = generateKeyPair('ec-p256');
  const res = await call(id, 'RenewAgent', { csr: createCsr(key.privateKey, key.publicKey) }) as { svid: { cert_chain: Buffer[]; spiffe_id: string } };
  return { key, chainDer: res.svid.cert_chain, spiffeId: res.svid.spiffe_id };
}

const refused = { code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/no longer its current one|evicted|banned/) as string };
const stale = { code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/no longer its current one/) as string };
const token = async (value: string) => (await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600, token: value })).value;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function refusalsByReason(): Promise<Record<string, number>> {
  const { samples } = await scrape(`http://127.0.0.1:${healthPort}/metrics`);
  return Object.fromEntries(samples.filter((s) => s.name === 'svidscope_server_agent_auth_refusals_total').map((s) => [s.labels.reason, s.value]));
}

describe('agent SVID serials against a real server process', () => {
  it('refuses the original SVID once a renewal has replaced it and its grace window has passed', async () => {
    const original = await attestAgentAt(address, bundlePem, await token('serial-renew'));
    await expect(call(original)).resolves.toBeDefined();
    const renewed = await renew(original);
    await expect(call(renewed)).resolves.toBeDefined();
    await expect(call(original)).resolves.toBeDefined(); // the renewal window: a lost answer can be retried
    await sleep(GRACE_MS + 500);
    await expect(call(original)).rejects.toMatchObject(stale);
    await expect(call(original, 'RenewAgent', { csr: createCsr(original.key.privateKey, original.key.publicKey) })).rejects.toMatchObject(stale);
    await expect(call(renewed)).resolves.toBeDefined();
    expect((await refusalsByReason()).stale_serial).toBeGreaterThanOrEqual(2);
  }, 30_000);

  it('closes a change stream opened with the original SVID once the grace has passed, not before (the tick checks the streams that came due)', async () => {
    const original = await attestAgentAt(address, bundlePem, await token('serial-watch'));
    const client = nodeClient(address, bundlePem, original);
    try {
      const stream = client.stream<{ initial: boolean }>('WatchChanges', {});
      const first = new Promise((resolve) => stream.once('data', resolve));
      const ended = new Promise<{ err?: grpc.ServiceError; at: number }>((resolve) => {
        stream.on('error', (err: grpc.ServiceError) => resolve({ err, at: Date.now() }));
        stream.on('end', () => resolve({ at: Date.now() }));
      });
      await expect(first).resolves.toMatchObject({ initial: true });
      await renew(original);
      const renewedAt = Date.now();
      // The server's tick (every cache_reload_interval, 5 s) finds the stream due at the grace's end.
      const end = await Promise.race([ended, sleep(GRACE_MS + 15_000).then(() => undefined)]);
      expect(end?.err).toMatchObject(stale);
      expect(end!.at - renewedAt).toBeGreaterThanOrEqual(GRACE_MS - 100);
    } finally {
      client.close();
    }
  }, 30_000);

  it('keeps only the latest of several renewals (plus the SVID they were made with, for the window)', async () => {
    const base = await attestAgentAt(address, bundlePem, await token('serial-parallel'));
    const first = await renew(base);
    const second = await renew(base); // base is still within its window
    await expect(call(first)).rejects.toMatchObject(stale);
    await expect(call(second)).resolves.toBeDefined();
    await expect(call(base)).resolves.toBeDefined();
    // Truly concurrent: whichever renewal the datastore kept last is the one that works.
    const racing = await Promise.all([renew(second), renew(second), renew(second)]);
    const works = await Promise.all(racing.map((r) => call(r).then(() => true, () => false)));
    expect(works.filter(Boolean)).toHaveLength(1);
    await sleep(GRACE_MS + 500);
    await expect(call(base)).rejects.toMatchObject(stale);
    await expect(call(second)).rejects.toMatchObject(stale);
    await expect(call(racing[works.indexOf(true)])).resolves.toBeDefined();
  }, 30_000);

  it('refuses an SVID from before an eviction, also after the same agent ID attests again', async () => {
    const before = await attestAgentAt(address, bundlePem, await token('serial-evict'));
    await admin.call('EvictAgent', { id: before.spiffeId });
    await expect(call(before)).rejects.toMatchObject(refused);
    const again = await attestAgentAt(address, bundlePem, await token('serial-evict'));
    expect(again.spiffeId).toBe(before.spiffeId);
    await expect(call(again)).resolves.toBeDefined();
    await expect(call(before)).rejects.toMatchObject(stale);
  }, 30_000);

  it('refuses an SVID from before a ban, also after eviction lifts the ban and the same agent ID attests again', async () => {
    const before = await attestAgentAt(address, bundlePem, await token('serial-ban'));
    const renewed = await renew(before);
    await admin.call('BanAgent', { id: before.spiffeId });
    await expect(call(renewed)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/banned/) as string });
    await expect(call(before)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/banned/) as string });
    await expect(attestAgentAt(address, bundlePem, await token('serial-ban'))).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await admin.call('EvictAgent', { id: before.spiffeId });
    const again = await attestAgentAt(address, bundlePem, await token('serial-ban'));
    await expect(call(again)).resolves.toBeDefined();
    await expect(call(renewed)).rejects.toMatchObject(stale);
    await expect(call(before)).rejects.toMatchObject(stale);
    expect((await refusalsByReason()).banned).toBeGreaterThanOrEqual(2);
  }, 30_000);
});
