// Server overload: a flood of X509-SVID batches beyond signing_queue_max_csrs at a real server
// process is refused early with RESOURCE_EXHAUSTED and the server-overloaded code, counted, while
// the server stays ready and keeps serving; a batch whose caller's deadline passes mid-way stops
// being signed (expired_deadline); a flood of calls with a stale agent SVID costs a bounded number of
// agent-feed reads (agent_refresh_min_interval), not one per call.
import * as grpc from '@grpc/grpc-js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin } from '../../src/cli/admin/client.js';
import type { AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { ERROR_CODE_METADATA, serverServices } from '../../src/identity-plane/server-api/services.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { attestAgentAt, nodeClient, removeDir, tempDir, type AgentIdentity } from '../support/server.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const LIMIT = 40;
const dir = tempDir('server-load');
let server: ReturnType<typeof spawnCli>;
let admin: AdminClient;
let serverPort: number;
let serverHealth: number;
let agent: AgentIdentity;
let bundlePem: string;
let entryId: string;
const csrs = Array.from({ length: 50 }, () => {
  const k = generateKeyPair();
  return createCsr(k.privateKey, k.publicKey);
});

async function metric(series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${serverHealth}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(series)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

beforeAll(async () => {
  [serverPort, serverHealth] = [await freePort(), await freePort()];
  // No renewal grace (a renewed agent's old SVID is stale at once) and no periodic reload inside the
  // test, so every agent-feed read comes from the calls.
  writeFileSync(path.join(dir, 'server.yaml'), `signing_queue_max_csrs: ${LIMIT}\nagent_renewal_grace: 0s\ncache_reload_interval: 1h\nagent_refresh_min_interval: 1s\n`);
  server = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml'), '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'server'),
    '--bind', `127.0.0.1:${serverPort}`, '--health-bind', `127.0.0.1:${serverHealth}`, '--log-level', 'warn']);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${serverHealth}/ready`), 30_000, server.logs);
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
  bundlePem = x509BundleToPem(parseSpiffeBundle(EXAMPLE_ORG, bundle.document));
  const token = (await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
  agent = await attestAgentAt(`127.0.0.1:${serverPort}`, bundlePem, token);
  entryId = (await admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/load', parent_id: agent.spiffeId, selectors: [{ type: 'unix', value: 'uid:4242' }] } })).id;
}, 60_000);

afterAll(async () => {
  admin?.close();
  server?.child.kill('SIGTERM');
  await server?.child.catch(() => undefined);
  removeDir(dir);
});

const batch = (n: number) => ({ params: Array.from({ length: n }, (_, i) => ({ entry_id: entryId, csr: csrs[i % csrs.length] })) });

describe('admission control at a real server', () => {
  it('refuses a flood beyond signing_queue_max_csrs with RESOURCE_EXHAUSTED and server-overloaded, and stays ready', async () => {
    const node = nodeClient(`127.0.0.1:${serverPort}`, bundlePem, agent);
    try {
      await node.call('SyncAuthorizedEntries', { known_revision: '0' }); // connection up before the flood
      let flooding = true;
      const readiness: boolean[] = [];
      const prober = (async () => {
        while (flooding) {
          readiness.push(await httpOk(`http://127.0.0.1:${serverHealth}/ready`));
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const outcomes = await Promise.all(Array.from({ length: 30 }, () =>
        node.call<{ results: { status_code: number }[] }>('BatchNewX509SVID', batch(LIMIT)).then(
          (res) => ({ ok: res.results.every((r) => r.status_code === grpc.status.OK) }),
          (err: grpc.ServiceError) => ({ ok: false, code: err.code, errorCode: err.metadata?.get(ERROR_CODE_METADATA)[0], details: err.details }),
        )));
      flooding = false;
      await prober;
      const refused = outcomes.filter((o) => !o.ok);
      expect(outcomes.filter((o) => o.ok).length).toBeGreaterThan(0);
      expect(refused.length).toBeGreaterThan(0);
      for (const r of refused) expect(r).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, errorCode: 'server-overloaded', details: expect.stringContaining('signing_queue_max_csrs') as string });
      expect(readiness.length).toBeGreaterThan(0);
      expect(readiness.every(Boolean)).toBe(true);
      expect(await metric('svidscope_server_limit_refusals_total{limit="signing_queue_max_csrs"}')).toBe(refused.length);
      // Each shed CSR is an issuance that did not happen, for the X509 issuance SLO: counted by
      // reason, and observed as a failed issuance (the SLO's denominator).
      expect(await metric('svidscope_server_svid_signing_failures_total{svid_type="x509",reason="server-overloaded"}')).toBe(refused.length * LIMIT);
      expect(await metric('svidscope_server_svid_issuance_duration_seconds_count{svid_type="x509",result="failure"}')).toBe(refused.length * LIMIT);
      // The flood is over: a batch goes through again.
      const after = await node.call<{ results: { status_code: number }[] }>('BatchNewX509SVID', batch(LIMIT));
      expect(after.results.map((r) => r.status_code)).toEqual(Array(LIMIT).fill(grpc.status.OK));
    } finally {
      node.close();
    }
  }, 60_000);

  it('stops signing a batch whose caller\'s deadline passed, and counts it as expired_deadline', async () => {
    const Node = serverServices().nodeClient;
    const credentials = grpc.credentials.createSsl(Buffer.from(bundlePem), Buffer.from(agent.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
      Buffer.from(agent.chainDer.map((d) => encodePem('CERTIFICATE', d)).join('')), { checkServerIdentity: () => undefined });
    const client = new Node(`127.0.0.1:${serverPort}`, credentials) as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void> & grpc.Client;
    const signedBefore = await metric('svidscope_server_svid_issuance_duration_seconds_count{svid_type="x509",result="success"}');
    const expiredBefore = await metric('svidscope_server_limit_refusals_total{limit="expired_deadline"}');
    const failedBefore = await metric('svidscope_server_svid_signing_failures_total{svid_type="x509",reason="deadline-expired"}');
    try {
      await new Promise<void>((resolve) => client.SyncAuthorizedEntries({ known_revision: '0' }, { deadline: Date.now() + 10_000 }, () => resolve()));
      // P-384 CSRs: checking 500 of them takes far longer than 150 ms on any machine (≈ 1 ms each),
      // while the request arrives and the handler starts within a few.
      const p384 = Array.from({ length: 20 }, () => {
        const k = generateKeyPair('ec-p384');
        return createCsr(k.privateKey, k.publicKey);
      });
      const slow = { params: Array.from({ length: 500 }, (_, i) => ({ entry_id: entryId, csr: p384[i % p384.length] })) };
      const err = await new Promise<grpc.ServiceError | null>((resolve) => client.BatchNewX509SVID(slow, { deadline: Date.now() + 150 }, resolve));
      expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      await waitFor('the server to count the expired call', async () => (await metric('svidscope_server_limit_refusals_total{limit="expired_deadline"}')) > expiredBefore, 10_000);
      const signed = (await metric('svidscope_server_svid_issuance_duration_seconds_count{svid_type="x509",result="success"}')) - signedBefore;
      expect(signed).toBeLessThan(500);
      // The batch reached no one: all 500 CSRs count as refused for the issuance SLO, signed or not.
      expect((await metric('svidscope_server_svid_signing_failures_total{svid_type="x509",reason="deadline-expired"}')) - failedBefore).toBe(500);
    } finally {
      client.close();
    }
  }, 30_000);

  it('answers a flood of stale-serial calls with a bounded number of agent-feed reads', async () => {
    const token = (await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
    const stale = await attestAgentAt(`127.0.0.1:${serverPort}`, bundlePem, token);
    const renewer = nodeClient(`127.0.0.1:${serverPort}`, bundlePem, stale);
    const key = generateKeyPair();
    await renewer.call('RenewAgent', { csr: createCsr(key.privateKey, key.publicKey) });
    renewer.close();
    const reads = () => metric('svidscope_server_datastore_operation_duration_seconds_count{operation="listAgentsChangedSince"');
    const readsBefore = await reads();
    const node = nodeClient(`127.0.0.1:${serverPort}`, bundlePem, stale); // still presents the replaced SVID
    const started = Date.now();
    try {
      const outcomes = await Promise.all(Array.from({ length: 300 }, () =>
        node.call('SyncAuthorizedEntries', { known_revision: '0' }).then(() => 'answered', (err: grpc.ServiceError) => err.code)));
      expect(outcomes.every((o) => o === grpc.status.PERMISSION_DENIED)).toBe(true);
    } finally {
      node.close();
    }
    const seconds = (Date.now() - started) / 1000;
    // One pull per second of flood at most, plus the one in flight when it began; before, one per call.
    expect((await reads()) - readsBefore).toBeLessThanOrEqual(2 + Math.ceil(seconds));
  }, 60_000);
});
