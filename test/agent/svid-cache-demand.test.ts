// The bounded X509-SVID cache with a real server and agent and the Workload API over the agent's
// Unix socket: an entry left out by x509_svid_cache_max_size gets its SVID minted when this
// process (a real workload, attested from the kernel) asks for it, and the bound then drops an
// SVID nobody asked for.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nullLogger } from '../../src/common/log.js';
import { createRegistry } from '../../src/common/telemetry/registry.js';
import { buildAgentConfig } from '../../src/identity-plane/agent/config.js';
import { startAgent } from '../../src/identity-plane/agent/agent.js';
import { buildServerConfig } from '../../src/identity-plane/server/config.js';
import { startServer } from '../../src/identity-plane/server/server.js';
import { x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { createWorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { connectAdmin } from '../../src/cli/admin/client.js';

const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-svid-demand-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bounded X509-SVID cache, over the Workload API', () => {
  it('mints an entry left out by the bound when a workload asks, and evicts an unused SVID', async () => {
    const server = await startServer(buildServerConfig({ trust_domain: 'example.org', data_dir: path.join(dir, 'server'), bind: '127.0.0.1:0', health_bind: '', cache_reload_interval: '1h' }));
    const admin = connectAdmin(server.adminSocket);
    try {
      writeFileSync(path.join(dir, 'bundle.pem'), x509BundleToPem(server.bundles.current));
      const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
      const agentId = `spiffe://example.org/spire/agent/join_token/${token.value}`;
      const registry = createRegistry();
      const agent = await startAgent(buildAgentConfig({
        trust_domain: 'example.org', server_address: server.address, data_dir: path.join(dir, 'agent'), trust_bundle_path: path.join(dir, 'bundle.pem'),
        join_token: token.value, health_bind: '', sync_interval: '1h', x509_svid_cache_max_size: 1,
      }), { logger: nullLogger(), registry });
      try {
        for (const i of [1, 2]) await admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://example.org/other${i}`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${200_000 + i}` }] } });
        await server.tick();
        await agent.manager.syncOnce();
        expect(agent.cache.svidCount).toBe(1);
        await admin.call('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/me', parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${process.getuid!()}` }] } });
        await server.tick();
        await agent.manager.syncOnce();
        const me = agent.cache.allEntries().find((e) => e.spiffe_id === 'spiffe://example.org/me')!;
        // The cache is full and nobody asked for this entry yet: no SVID for it.
        expect(agent.cache.entryCount).toBe(3);
        expect(agent.cache.svidFor(me.id)).toBeUndefined();

        const client = createWorkloadApiClient({ address: `unix://${agent.socketPath}`, deadlineMs: 15_000 });
        try {
          const ctx = await client.fetchX509Context();
          expect(ctx.svids.map((s) => s.id.toString())).toEqual(['spiffe://example.org/me']);
        } finally {
          client.close();
        }
        // Minted on demand and kept (asked for just now); the SVID no workload asked for went.
        expect(agent.cache.svidFor(me.id)).toBeDefined();
        expect(agent.cache.svidCount).toBe(1);
        const metrics = await registry.metrics();
        expect(metrics).toMatch(/^svidscope_agent_x509_svid_cache_evictions_total 1$/m);
        expect(metrics).toMatch(/^svidscope_agent_x509_svid_cache_max_size 1$/m);
      } finally {
        await agent.stop();
      }
    } finally {
      admin.close();
      await server.stop();
    }
  }, 60_000);
});
