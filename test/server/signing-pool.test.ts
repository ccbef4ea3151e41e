// The signing pool (worker threads) behind BatchNewX509SVID: SVIDs that openssl verifies against
// the bundle, the new key after an activation, item-wise refusals, a worker crash that fails only
// its batch, and a rotation while a chunk is in a worker (the result is signed again).
import * as grpc from '@grpc/grpc-js';
import { execa } from 'execa';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRegistry } from '../../src/common/telemetry/registry.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '../../src/common/log.js';
import { connectAdmin } from '../../src/cli/admin/client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { buildServerConfig } from '../../src/identity-plane/server/config.js';
import type { X509Signer } from '../../src/identity-plane/server/ca/manager.js';
import { SigningPool } from '../../src/identity-plane/server/ca/signing-pool.js';
import { createSelfSignedCa, createX509SvidMinter } from '../../src/identity-plane/spiffe/mint/index.js';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { certificateFacts, encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { attestAgent, attestAgentAt, bundlePemOf, nodeClient, removeDir, startTestServer, type AgentIdentity, type TestServer } from '../support/server.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

const TD = 'example.org';
type BatchResult = { results: { status_code: number; status_message: string; svid?: { cert_chain: Buffer[]; spiffe_id: string } }[] };

function freshCsr(): { csr: Buffer; publicKey: ReturnType<typeof generateKeyPair>['publicKey'] } {
  const k = generateKeyPair();
  return { csr: createCsr(k.privateKey, k.publicKey), publicKey: k.publicKey };
}

const authorityKeyId = (der: Buffer) => certificateFacts(new X509Certificate(der)).authorityKeyId;

async function opensslVerifies(dir: string, bundlePem: string, leafDer: Buffer): Promise<{ ok: boolean; out: string }> {
  const ca = path.join(dir, 'bundle.pem');
  const leaf = path.join(dir, 'leaf.pem');
  writeFileSync(ca, bundlePem);
  writeFileSync(leaf, encodePem('CERTIFICATE', leafDer));
  const r = await execa('openssl', ['verify', '-CAfile', ca, leaf], { reject: false });
  return { ok: r.exitCode === 0 && /: OK/.test(r.stdout), out: `${r.stdout}${r.stderr}` };
}

describe('BatchNewX509SVID through the signing pool', () => {
  let t: TestServer;
  let agent: AgentIdentity;
  let entryId: string;
  let otherEntryId: string;
  const registry = createRegistry();

  beforeAll(async () => {
    t = await startTestServer({ signing_workers: 2 }, { registry, signingPoolTestHooks: true });
    agent = await attestAgent(t);
    const other = await attestAgent(t);
    entryId = (await t.admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/web`, parent_id: agent.spiffeId, selectors: [{ type: 'unix', value: 'uid:1000' }], dns_names: ['web.example.org'] } })).id;
    otherEntryId = (await t.admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/db`, parent_id: other.spiffeId, selectors: [{ type: 'unix', value: 'uid:1000' }] } })).id;
  });
  afterAll(async () => {
    await t.stop();
    removeDir(t.dir);
  });

  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    const m = (await registry.getSingleMetric(name)?.get())?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
    return m?.value ?? 0;
  };

  it('signs a batch spread over both workers; every SVID verifies with openssl against the bundle', async () => {
    const client = nodeClient(t.server.address, bundlePemOf(t.server), agent);
    try {
      const csrs = Array.from({ length: 70 }, freshCsr); // three chunks of at most 32
      const res = await client.call<BatchResult>('BatchNewX509SVID', { params: csrs.map((c) => ({ entry_id: entryId, csr: c.csr })) });
      expect(res.results.map((r) => grpc.status[r.status_code])).toEqual(csrs.map(() => 'OK'));
      const leaves = res.results.map((r) => new X509Certificate(r.svid!.cert_chain[0]));
      // In request order, each for its own CSR's key, each with its own serial.
      leaves.forEach((leaf, i) => expect(leaf.publicKey.equals(csrs[i].publicKey)).toBe(true));
      expect(new Set(leaves.map((l) => l.serialNumber)).size).toBe(leaves.length);
      expect(leaves[0].subjectAltName).toContain(`URI:spiffe://${TD}/web`);
      expect(leaves[0].subjectAltName).toContain('DNS:web.example.org');
      for (const i of [0, 40, 69]) {
        const v = await opensslVerifies(t.dir, bundlePemOf(t.server), res.results[i].svid!.cert_chain[0]);
        expect(v.ok, v.out).toBe(true);
      }
      expect(await metric('svidscope_server_svids_issued_total', { svid_type: 'x509' })).toBeGreaterThanOrEqual(70);
      expect(t.server.signingPool.stats()).toMatchObject({ workers: 2, busy: 0, queuedChunks: 0 });
    } finally {
      client.close();
    }
  });

  it('refuses bad CSRs and unauthorized entries item by item, and signs the rest', async () => {
    const client = nodeClient(t.server.address, bundlePemOf(t.server), agent);
    try {
      const good = freshCsr();
      const badSignature = Buffer.from(freshCsr().csr);
      badSignature[badSignature.length - 3] ^= 0xff;
      const invalidBefore = await metric('svidscope_server_csrs_received_total', { result: 'invalid' });
      const res = await client.call<BatchResult>('BatchNewX509SVID', {
        params: [
          { entry_id: entryId, csr: good.csr },
          { entry_id: entryId, csr: badSignature },
          { entry_id: entryId, csr: Buffer.from('not a CSR') },
          { entry_id: otherEntryId, csr: freshCsr().csr },
        ],
      });
      expect(res.results.map((r) => grpc.status[r.status_code])).toEqual(['OK', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'PERMISSION_DENIED']);
      expect(res.results[1].status_message).toMatch(/CSR signature does not verify/);
      expect(res.results[2].status_message).toMatch(/neither DER nor a PEM CERTIFICATE REQUEST/);
      expect(new X509Certificate(res.results[0].svid!.cert_chain[0]).publicKey.equals(good.publicKey)).toBe(true);
      expect(await metric('svidscope_server_csrs_received_total', { result: 'invalid' })).toBe(invalidBefore + 2);
      expect(await metric('svidscope_server_svid_signing_failures_total', { svid_type: 'x509', reason: 'csr-invalid' })).toBeGreaterThanOrEqual(2);
    } finally {
      client.close();
    }
  });

  it('signs with the new CA once it is activated', async () => {
    const client = nodeClient(t.server.address, bundlePemOf(t.server), agent);
    try {
      // The workers hold the current CA already.
      const first = await client.call<BatchResult>('BatchNewX509SVID', { params: [{ entry_id: entryId, csr: freshCsr().csr }] });
      const oldCa = new X509Certificate(t.server.ca.x509Signer.caCertificateDer);
      expect(new X509Certificate(first.results[0].svid!.cert_chain[0]).verify(oldCa.publicKey)).toBe(true);
      const oldCaId = t.server.ca.x509Signer.keyId;
      await t.admin.call('AuthorityLifecycle', { kind: 'x509', operation: 'prepare', key_id: '' });
      await t.admin.call('AuthorityLifecycle', { kind: 'x509', operation: 'activate', key_id: '' });
      const newCa = new X509Certificate(t.server.ca.x509Signer.caCertificateDer);
      expect(t.server.ca.x509Signer.keyId).not.toBe(oldCaId);

      const res = await client.call<BatchResult>('BatchNewX509SVID', { params: Array.from({ length: 40 }, () => ({ entry_id: entryId, csr: freshCsr().csr })) });
      expect(res.results.every((r) => r.status_code === grpc.status.OK)).toBe(true);
      for (const r of res.results) {
        const leaf = new X509Certificate(r.svid!.cert_chain[0]);
        expect(leaf.verify(newCa.publicKey), 'signed by the activated CA').toBe(true);
        expect(leaf.verify(oldCa.publicKey)).toBe(false);
      }
      const v = await opensslVerifies(t.dir, bundlePemOf(t.server), res.results[39].svid!.cert_chain[0]);
      expect(v.ok, v.out).toBe(true);
    } finally {
      client.close();
    }
  });

  it('fails only the batch of a worker that dies, restarts it, and signs the next batch', async () => {
    const client = nodeClient(t.server.address, bundlePemOf(t.server), agent);
    try {
      const restarts = await metric('svidscope_server_signing_worker_restarts_total');
      t.server.signingPool.crashNextChunkForTest();
      const err = (await client.call('BatchNewX509SVID', { params: [{ entry_id: entryId, csr: freshCsr().csr }] }).then(() => undefined, (e: unknown) => e)) as grpc.ServiceError | undefined;
      expect(err, 'the batch of the dead worker fails').toBeDefined();
      expect(grpc.status[err!.code]).toBe('UNAVAILABLE');
      expect(err!.details).toMatch(/signing worker .* exited .* none of them was issued/);
      expect(await metric('svidscope_server_signing_worker_restarts_total')).toBe(restarts + 1);
      expect(await metric('svidscope_server_svid_signing_failures_total', { svid_type: 'x509', reason: 'signing-worker-failed' })).toBe(1);

      const res = await client.call<BatchResult>('BatchNewX509SVID', { params: Array.from({ length: 64 }, () => ({ entry_id: entryId, csr: freshCsr().csr })) });
      expect(res.results.map((r) => r.status_code)).toEqual(res.results.map(() => grpc.status.OK));
    } finally {
      client.close();
    }
  });
});

describe('a `svidscope server run` process with its signing pool', () => {
  it('signs through its workers (started from source), then with the activated CA; /metrics shows the pool', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-signing-pool-'));
    const [port, healthPort] = [await freePort(), await freePort()];
    const proc = spawnCli(['server', 'run', '--trust-domain', TD, '--data-dir', dir, '--bind', `127.0.0.1:${port}`, '--health-bind', `127.0.0.1:${healthPort}`, '--log-level', 'warn']);
    const admin = connectAdmin(path.join(dir, 'admin.sock'));
    try {
      await waitFor('server ready', () => httpOk(`http://127.0.0.1:${healthPort}/ready`), 60_000, proc.logs);
      const bundlePem = async () => x509BundleToPem(parseSpiffeBundle(mustTrustDomain(TD), (await admin.call<{ document: Buffer }>('GetBundle', {})).document));
      const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
      const address = `127.0.0.1:${port}`;
      const agent = await attestAgentAt(address, await bundlePem(), token.value);
      const entry = await admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/proc`, parent_id: agent.spiffeId, selectors: [{ type: 'unix', value: 'uid:1000' }] } });
      const client = nodeClient(address, await bundlePem(), agent);
      try {
        const batch = async () => client.call<BatchResult>('BatchNewX509SVID', { params: Array.from({ length: 40 }, () => ({ entry_id: entry.id, csr: freshCsr().csr })) });
        const first = await batch();
        expect(first.results.map((r) => r.status_code)).toEqual(first.results.map(() => grpc.status.OK));
        const metrics = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
        expect(metrics).toMatch(/svidscope_server_signing_workers\{state="busy"\} 0/);
        expect(metrics).toMatch(/svidscope_server_signing_workers\{state="idle"\} [1-9]/);
        expect(metrics).toMatch(/svidscope_server_svids_issued_total\{svid_type="x509"\} 40/);

        type Slot = { kind: string; phase: string; key_id: string };
        await admin.call('AuthorityLifecycle', { kind: 'x509', operation: 'prepare', key_id: '' });
        const { slots } = await admin.call<{ slots: Slot[] }>('AuthorityLifecycle', { kind: 'x509', operation: 'activate', key_id: '' });
        const active = slots.find((k) => k.kind === 'x509' && k.phase === 'active')!;
        const second = await batch();
        expect(second.results.every((r) => r.status_code === grpc.status.OK)).toBe(true);
        // The bundle holds both CAs now; each leaf names its issuer's key as authority key id.
        for (const r of [first.results[0], second.results[39]]) {
          const v = await opensslVerifies(dir, await bundlePem(), r.svid!.cert_chain[0]);
          expect(v.ok, v.out).toBe(true);
        }
        const issuerKeyIds = second.results.map((r) => authorityKeyId(r.svid!.cert_chain[0]));
        expect(new Set(issuerKeyIds)).toEqual(new Set([active.key_id.toLowerCase()]));
        expect(authorityKeyId(first.results[0].svid!.cert_chain[0])).not.toBe(active.key_id.toLowerCase());
      } finally {
        client.close();
      }
    } finally {
      admin.close();
      proc.child.kill('SIGTERM');
      await proc.child;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('signing pool', () => {
  const ca1 = createSelfSignedCa({ trustDomain: TD, ttlSeconds: 3600, now: new Date() });
  const ca2 = createSelfSignedCa({ trustDomain: TD, ttlSeconds: 3600, now: new Date() });
  const signerOf = (ca: typeof ca1, generation: number): X509Signer => ({ generation, keyId: `ca${generation}`, caCertificateDer: ca.der, privateKey: ca.privateKey, chainTail: [] });
  const job = () => ({ csr: freshCsr().csr, spiffeId: `spiffe://${TD}/w`, ttlSeconds: 60, dnsNames: [] as string[] });

  it('signs again under the new CA a chunk whose CA was rotated while a worker signed it', async () => {
    // The first read (dispatch) sees CA 1; every later read, as after an activation, sees CA 2.
    let reads = 0;
    const pool = new SigningPool({
      size: 1, logger: nullLogger(),
      signer: () => (reads++ === 0 ? signerOf(ca1, 1) : signerOf(ca2, 2)),
      minter: () => createX509SvidMinter({ caCertificate: ca2.certificate, caPrivateKey: ca2.privateKey }),
    });
    try {
      const items = await pool.sign({ jobs: [job(), job()], nowMs: () => Date.now() });
      for (const { outcome } of items) {
        expect(outcome.ok).toBe(true);
        const leaf = new X509Certificate(outcome.ok ? outcome.der : Buffer.alloc(0));
        expect(leaf.verify(ca2.publicKey), 'only the active CA\'s signature goes out').toBe(true);
        expect(leaf.verify(ca1.publicKey)).toBe(false);
      }
    } finally {
      await pool.stop();
    }
  });

  it('gives each of many small concurrent requests sent to a worker together its own SVIDs', async () => {
    const pool = new SigningPool({ size: 1, chunk: 8, logger: nullLogger(), signer: () => signerOf(ca1, 1), minter: () => createX509SvidMinter({ caCertificate: ca1.certificate, caPrivateKey: ca1.privateKey }) });
    try {
      const requests = Array.from({ length: 12 }, (_, i) => Array.from({ length: 1 + (i % 3) }, () => freshCsr()));
      const answers = await Promise.all(requests.map((csrs) => pool.sign({ jobs: csrs.map((c) => ({ ...job(), csr: c.csr })), nowMs: () => Date.now() })));
      answers.forEach((items, r) => {
        expect(items).toHaveLength(requests[r].length);
        items.forEach(({ outcome }, i) => {
          expect(outcome.ok).toBe(true);
          expect(new X509Certificate(outcome.ok ? outcome.der : Buffer.alloc(0)).publicKey.equals(requests[r][i].publicKey)).toBe(true);
        });
      });
    } finally {
      await pool.stop();
    }
  });

  it('stops a request at the chunk whose caller has gone, and signs on the main thread at size 0', async () => {
    const minter = createX509SvidMinter({ caCertificate: ca1.certificate, caPrivateKey: ca1.privateKey });
    for (const size of [0, 1]) {
      const pool = new SigningPool({ size, chunk: 2, logger: nullLogger(), signer: () => signerOf(ca1, 1), minter: () => minter });
      try {
        let chunks = 0;
        const gone = pool.sign({ jobs: Array.from({ length: 6 }, job), nowMs: () => Date.now(), beforeChunk: () => {
          if (++chunks > 1) throw new Error('caller gone');
        } });
        await expect(gone).rejects.toThrow('caller gone');
        const done: number[] = [];
        const items = await pool.sign({ jobs: Array.from({ length: 5 }, job), nowMs: () => Date.now(), chunkDone: (n) => done.push(n) });
        expect(items.map((i) => i.outcome.ok)).toEqual([true, true, true, true, true]);
        expect(done.reduce((a, b) => a + b, 0)).toBe(5);
      } finally {
        await pool.stop();
      }
    }
  });

  it('reads signing_workers from the config', () => {
    const base = { trust_domain: TD, data_dir: '/tmp/x' };
    expect(buildServerConfig(base).signingWorkers).toBeGreaterThanOrEqual(1);
    expect(buildServerConfig({ ...base, signing_workers: 0 }).signingWorkers).toBe(0);
    expect(() => buildServerConfig({ ...base, signing_workers: -1 })).toThrow(/signing_workers/);
    expect(() => buildServerConfig({ ...base, signing_workers: 1.5 })).toThrow(/signing_workers/);
  });
});
