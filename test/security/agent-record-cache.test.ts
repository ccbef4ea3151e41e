// The agent record cache behind agent authentication: no datastore read per call in the steady
// state, yet ban, evict and renew take effect at once on the server that made them and, through the
// datastore's agent change feed, on another server sharing PostgreSQL at its next reload.
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { createRegistry } from '../../src/common/telemetry/registry.js';
import { afterAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { dropSchemas, newSchemaName, postgresUrl } from '../support/postgres.js';
import { attestAgent, bundlePemOf, nodeClient, removeDir, startTestServer, type AgentIdentity, type TestServer } from '../support/server.js';

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) {
    await s.stop();
    removeDir(s.dir);
  }
});

async function call(t: TestServer, id: AgentIdentity, method = 'GetBundles', request: object = {}): Promise<unknown> {
  const client = nodeClient(t.server.address, bundlePemOf(t.server), id);
  try {
    return await client.call(method, request);
  } finally {
    client.close();
  }
}
async function renew(t: TestServer, id: AgentIdentity): Promise<AgentIdentity> {
  const key = generateKeyPair('ec-p256');
  const res = await call(t, id, 'RenewAgent', { csr: createCsr(key.privateKey, key.publicKey) }) as { svid: { cert_chain: Buffer[]; spiffe_id: string } };
  return { key, chainDer: res.svid.cert_chain, spiffeId: res.svid.spiffe_id };
}
/** Agent reads the server made from its datastore (instrumented operations; scraping reads none either). */
async function agentReads(registry: Registry): Promise<number> {
  const text = await registry.metrics();
  let n = 0;
  for (const m of text.matchAll(/^svidscope_server_datastore_operation_duration_seconds_count\{[^}]*operation="(getAgent|listAgents|listAgentsChangedSince)"[^}]*\} (\d+)/gm)) n += Number(m[2]);
  return n;
}
const denied = (re: RegExp) => ({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(re) as string });

describe('agent record cache on one server', () => {
  it('authenticates from memory, and evict and ban on this server refuse from the next call', async () => {
    const registry = createRegistry();
    const t = await startTestServer({ cache_reload_interval: '1h' }, { registry });
    servers.push(t);
    const agent = await attestAgent(t);
    await call(t, agent);
    const before = await agentReads(registry);
    for (let i = 0; i < 20; i++) await call(t, agent, i % 2 ? 'GetBundles' : 'SyncAuthorizedEntries', i % 2 ? {} : { known_revision: '0' });
    expect(await agentReads(registry)).toBe(before); // steady state: no datastore read per call

    const renewed = await renew(t, agent);
    await expect(call(t, renewed)).resolves.toBeDefined();
    await t.admin.call('BanAgent', { id: agent.spiffeId });
    await expect(call(t, renewed)).rejects.toMatchObject(denied(/banned/));
    expect(await registry.metrics()).toMatch(/^svidscope_server_attested_agents\{state="banned"\} 1$/m);
    const other = await attestAgent(t);
    await t.admin.call('EvictAgent', { id: other.spiffeId });
    await expect(call(t, other)).rejects.toMatchObject(denied(/not attested or was evicted/));
  });
});

const url = postgresUrl('agent cache across servers');
if (url) {
  const schema = newSchemaName('agents');
  afterAll(() => dropSchemas(url, [schema]));

  describe('agent record cache across two servers sharing PostgreSQL', () => {
    it('sees the other server\'s attestations and renewals at once, its bans and evictions at the next reload', async () => {
      // Reloads only when the test says (tick), so "at the next reload" is exact.
      const doc = { datastore: { kind: 'postgres', connection_string: url, schema }, cache_reload_interval: '1h' };
      const a = await startTestServer(doc);
      servers.push(a);
      const b = await startTestServer(doc);
      servers.push(b);
      await a.server.tick();
      await b.server.tick();
      await a.server.tick(); // both CAs in both bundles

      // Attested through A: B has never seen it, pulls the feed on the miss and accepts.
      const agent = await attestAgent(a);
      await expect(call(b, agent)).resolves.toBeDefined();
      // Renewed through A: the new serial is unknown to B's cache, which pulls again and accepts.
      const renewed = await renew(a, agent);
      await expect(call(b, renewed)).resolves.toBeDefined();

      // Banned through A: B serves from its cache until its next reload, then refuses.
      await a.admin.call('BanAgent', { id: agent.spiffeId });
      await expect(call(a, renewed)).rejects.toMatchObject(denied(/banned/));
      // A renewal through B before its reload starts from the stored record: refused, and still banned.
      const csrKey = generateKeyPair('ec-p256');
      await expect(call(b, renewed, 'RenewAgent', { csr: createCsr(csrKey.privateKey, csrKey.publicKey) })).rejects.toMatchObject(denied(/banned/));
      expect((await a.server.datastore.getAgent(agent.spiffeId)).banned).toBe(true);
      await b.server.tick();
      await expect(call(b, renewed)).rejects.toMatchObject(denied(/banned/));

      // Evicted through B: A refuses after its reload (the tombstone removes it from A's cache).
      const other = await attestAgent(b);
      await expect(call(a, other)).resolves.toBeDefined();
      await b.admin.call('EvictAgent', { id: other.spiffeId });
      await expect(call(b, other)).rejects.toMatchObject(denied(/evicted/));
      await a.server.tick();
      await expect(call(a, other)).rejects.toMatchObject(denied(/evicted/));
    }, 60_000);
  });
}
