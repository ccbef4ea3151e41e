// Unbounded JWT audiences: a local caller asks a real agent's Workload API (and an agent asks a real
// server's NewJWTSVID) for tokens with many or huge audiences. Both refuse with InvalidArgument naming
// the limit, count the refusal, and the agent's memory stays bounded — its JWT cache by bytes.
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin } from '../../src/cli/admin/client.js';
import type { AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { ERROR_CODE_METADATA } from '../../src/identity-plane/server-api/services.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { createWorkloadApiClient, type WorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { scrape, seriesValue } from '../support/metrics.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { attestAgentAt, nodeClient, removeDir, tempDir } from '../support/server.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const CACHE_BYTES = 64 * 1024;
const dir = tempDir('jwt-limits');
const procs: ReturnType<typeof spawnCli>[] = [];
let admin: AdminClient;
let client: WorkloadApiClient;
let serverPort: number;
let serverHealth: number;
let agentHealth: number;

const metrics = async (port: number) => (await scrape(`http://127.0.0.1:${port}/metrics`)).text;
const sample = (text: string, series: string) => seriesValue(text, series) ?? NaN;

beforeAll(async () => {
  [serverPort, serverHealth, agentHealth] = [await freePort(), await freePort(), await freePort()];
  const server = spawnCli(['server', 'run', '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'server'),
    '--bind', `127.0.0.1:${serverPort}`, '--health-bind', `127.0.0.1:${serverHealth}`]);
  procs.push(server);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${serverHealth}/ready`), 30_000, server.logs);
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const socketPath = path.join(dir, 'api.sock');
  const { token, agentId } = await bootstrapAgent(admin, { dir, trustDomain: 'example.org', serverPort, healthPort: agentHealth, socketPath, extra: [`jwt_cache_max_bytes: ${CACHE_BYTES}`] });
  await admin.call('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/jwt-caller', parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${process.getuid?.() ?? 0}` }] } });
  const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), '--join-token', token]);
  procs.push(agent);
  await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${agentHealth}/ready`), 30_000, agent.logs);
  client = createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 10_000 });
  await waitFor('a first JWT-SVID', () => client.fetchJwtSvid({ audience: ['first'] }).catch(() => undefined), 20_000, agent.logs);
}, 90_000);

afterAll(async () => {
  client?.close();
  admin?.close();
  for (const p of procs.reverse()) {
    p.child.kill('SIGTERM');
    await p.child.catch(() => undefined);
  }
  removeDir(dir);
});

describe('JWT audience limits at a real agent', () => {
  it('refuses more than 16 audiences with InvalidArgument naming jwt_audience_max_count', async () => {
    const audience = Array.from({ length: 17 }, (_, i) => `aud-${i}`);
    await expect(client.fetchJwtSvid({ audience })).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/at most 16 .*jwt_audience_max_count/) as string });
    await expect(client.fetchJwtSvid({ audience: audience.slice(0, 16) })).resolves.toMatchObject({ audience: expect.arrayContaining(['aud-15']) as string[] });
  }, 30_000);

  it('refuses forty 2 MB audiences with InvalidArgument naming jwt_audience_max_bytes, and its memory stays bounded', async () => {
    const before = sample(await metrics(agentHealth), 'process_resident_memory_bytes');
    for (let i = 0; i < 40; i++) {
      const huge = `${i}`.padEnd(2 * 1024 * 1024, 'a');
      await expect(client.fetchJwtSvid({ audience: [huge] })).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/at most 256 bytes .*jwt_audience_max_bytes/) as string });
    }
    const text = await metrics(agentHealth);
    const after = sample(text, 'process_resident_memory_bytes');
    // Before the limit these forty requests grew the agent by ~260 MB (each token cached).
    expect(after - before).toBeLessThan(120 * 1024 * 1024);
    expect(sample(text, 'svidscope_agent_limit_refusals_total{limit="jwt_audience_max_bytes"}')).toBe(40);
    expect(sample(text, 'svidscope_agent_limit_refusals_total{limit="jwt_audience_max_count"}')).toBe(1);
  }, 60_000);

  it('keeps its JWT-SVID cache within jwt_cache_max_bytes under many distinct allowed audiences', async () => {
    for (let i = 0; i < 40; i++) {
      const audience = Array.from({ length: 16 }, (_, j) => `${i}-${j}-`.padEnd(250, 'x'));
      await client.fetchJwtSvid({ audience });
    }
    const text = await metrics(agentHealth);
    const bytes = sample(text, 'svidscope_agent_jwt_cache_bytes');
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(CACHE_BYTES);
    expect(sample(text, 'svidscope_agent_jwt_cache_evictions_total')).toBeGreaterThan(0);
  }, 60_000);
});

describe('JWT audience limits at a real server (NewJWTSVID over mTLS)', () => {
  it('refuses too many and too long audiences with jwt-audience-limit naming the limit, and counts them', async () => {
    const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
    const bundlePem = x509BundleToPem(parseSpiffeBundle(EXAMPLE_ORG, bundle.document));
    const token = (await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
    const id = await attestAgentAt(`127.0.0.1:${serverPort}`, bundlePem, token);
    const entry = await admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/direct', parent_id: id.spiffeId, selectors: [{ type: 'unix', value: 'uid:4242' }] } });
    const node = nodeClient(`127.0.0.1:${serverPort}`, bundlePem, id);
    try {
      const refusal = (limit: string) => ({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining(limit) as string, metadata: expect.objectContaining({}) as object });
      const many = Array.from({ length: 17 }, (_, i) => `aud-${i}`);
      const e1 = await node.call('NewJWTSVID', { entry_id: entry.id, audience: many }).catch((e: grpc.ServiceError) => e);
      expect(e1).toMatchObject(refusal('jwt_audience_max_count'));
      expect((e1 as grpc.ServiceError).metadata.get(ERROR_CODE_METADATA)).toEqual(['jwt-audience-limit']);
      const e2 = await node.call('NewJWTSVID', { entry_id: entry.id, audience: ['a'.repeat(2 * 1024 * 1024)] }).catch((e: grpc.ServiceError) => e);
      expect(e2).toMatchObject(refusal('jwt_audience_max_bytes'));
      expect((e2 as grpc.ServiceError).metadata.get(ERROR_CODE_METADATA)).toEqual(['jwt-audience-limit']);
      await expect(node.call('NewJWTSVID', { entry_id: entry.id, audience: many.slice(0, 16) })).resolves.toMatchObject({ svid: { spiffe_id: 'spiffe://example.org/direct' } });
    } finally {
      node.close();
    }
    const text = await metrics(serverHealth);
    expect(sample(text, 'svidscope_server_limit_refusals_total{limit="jwt_audience_max_count"}')).toBe(1);
    expect(sample(text, 'svidscope_server_limit_refusals_total{limit="jwt_audience_max_bytes"}')).toBe(1);
  }, 30_000);
});
