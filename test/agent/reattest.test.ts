// Eviction and re-attestation: an evicted agent drops its SVID and attests again with the next
// token from its join_token_file; a node alias keeps its workloads' entries valid across that.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildAgentConfig } from '../../src/identity-plane/agent/config.js';
import { startAgent, type RunningAgent } from '../../src/identity-plane/agent/agent.js';
import { createWorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { waitFor } from '../support/process.js';
import { bundlePemOf, removeDir, startTestServer, tempDir, type TestServer } from '../support/server.js';

const dir = tempDir('reattest');
let t: TestServer | undefined;
let agent: RunningAgent | undefined;
afterAll(async () => {
  await agent?.stop();
  await t?.stop();
  removeDir(dir);
});

describe('agent eviction', () => {
  it('re-attests with a new token from join_token_file and serves again through the node alias', async () => {
    t = await startTestServer({ cache_reload_interval: '1s' }, {}, path.join(dir, 'server'));
    const alias = 'spiffe://example.org/node/a';
    const token = async () => (await t!.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600, agent_id: alias })).value;
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, await token());
    writeFileSync(path.join(dir, 'bundle.pem'), bundlePemOf(t.server));
    await t.admin.call('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/aliased', parent_id: alias, selectors: [{ type: 'unix', value: `uid:${process.getuid?.() ?? 0}` }] } });
    const config = buildAgentConfig({
      trust_domain: 'example.org', server_address: t.server.address, data_dir: path.join(dir, 'agent'), join_token_file: tokenFile,
      trust_bundle_path: path.join(dir, 'bundle.pem'), sync_interval: '1s', health_bind: '',
    });
    agent = await startAgent(config);
    const first = agent.manager.status.agentId!;
    const client = createWorkloadApiClient({ address: `unix://${config.socketPath}`, deadlineMs: 10_000 });
    const ctx = await waitFor('SVID through the alias', () => client.fetchX509Context().catch(() => undefined), 15_000);
    expect(ctx.svids[0].id.toString()).toBe('spiffe://example.org/aliased');

    await t.admin.call('EvictAgent', { id: first });
    writeFileSync(tokenFile, await token());
    const second = await waitFor('re-attestation', async () => {
      const id = agent!.manager.status.agentId;
      return id && id !== first ? id : undefined;
    }, 20_000);
    expect(second).toMatch(/^spiffe:\/\/example\.org\/spire\/agent\/join_token\//);
    const agents = await t.admin.call<{ agents: { id: string }[] }>('ListAgents', {});
    expect(agents.agents.map((a) => a.id)).toEqual(expect.arrayContaining([second]));
    expect(agents.agents.map((a) => a.id)).not.toContain(first);
    const again = await waitFor('SVID after re-attestation', () => client.fetchX509Context().catch(() => undefined), 15_000);
    expect(again.svids[0].id.toString()).toBe('spiffe://example.org/aliased');
    client.close();
  }, 60_000);
});
