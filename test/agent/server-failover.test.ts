// Two real `svidscope server run` processes on one PostgreSQL datastore and a real agent that
// knows both: when its server is killed, the agent moves to the survivor with the SVID it holds
// (no re-attestation), its workloads keep their SVIDs, and new entries reach them through the survivor.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { buildAgentConfig } from '../../src/identity-plane/agent/config.js';
import { connectAdmin, type AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { createWorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { scrapeSeries } from '../support/metrics.js';
import { dropSchemas, newSchemaName, postgresUrl } from '../support/postgres.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

const url = postgresUrl('agent failover between servers');
const TD = 'example.org';
const dir = tempDir('failover');
const schema = newSchemaName('failover');
const children: ReturnType<typeof spawnCli>[] = [];
const admins: AdminClient[] = [];

afterAll(async () => {
  for (const a of admins) a.close();
  for (const c of children) c.child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.child.catch(() => undefined)));
  if (url) await dropSchemas(url, [schema]);
  removeDir(dir);
});

async function startServer(name: string) {
  const [port, ops] = [await freePort(), await freePort()];
  const data = path.join(dir, name);
  mkdirSync(data, { recursive: true });
  const config = path.join(data, 'server.yaml');
  writeFileSync(config, stringify({
    trust_domain: TD, data_dir: data, bind: `127.0.0.1:${port}`, health_bind: `127.0.0.1:${ops}`, cache_reload_interval: '1s',
    datastore: { kind: 'postgres', connection_string: url, schema },
  }));
  const proc = spawnCli(['server', 'run', '--config', config]);
  children.push(proc);
  await waitFor(`${name} ready`, () => httpOk(`http://127.0.0.1:${ops}/ready`), 60_000, proc.logs);
  const admin = connectAdmin(path.join(data, 'admin.sock'));
  admins.push(admin);
  return { proc, address: `127.0.0.1:${port}`, admin };
}

describe('agent failover between servers on one datastore', () => {
  if (!url) return;

  it('moves to the surviving server without re-attesting, and workloads keep and gain SVIDs', async () => {
    // One after the other: the first migrates the schema, the second finds it ready.
    const first = await startServer('server-a');
    const second = await startServer('server-b');
    // Each server publishes its own CA into the shared bundle; the agent must trust both.
    const bundle = await waitFor('both CAs in the shared bundle', async () => {
      const b = await second.admin.call<{ document: Buffer }>('GetBundle', {});
      const parsed = parseSpiffeBundle(mustTrustDomain(TD), b.document);
      return parsed.x509Authorities.length >= 2 ? parsed : undefined;
    }, 30_000);
    writeFileSync(path.join(dir, 'bundle.pem'), x509BundleToPem(bundle));
    const token = (await first.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
    const agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
    writeFileSync(path.join(dir, 'token'), token, { mode: 0o600 });
    const uid = process.getuid?.() ?? 0;
    await first.admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/before`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] } });

    const ops = await freePort();
    const socketPath = path.join(dir, 'agent', 'api.sock');
    writeFileSync(path.join(dir, 'agent.yaml'), stringify({
      trust_domain: TD, server_address: [first.address, second.address], data_dir: path.join(dir, 'agent'), socket_path: socketPath,
      trust_bundle_path: path.join(dir, 'bundle.pem'), join_token_file: path.join(dir, 'token'), health_bind: `127.0.0.1:${ops}`, sync_interval: '1s',
    }));
    const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml')]);
    children.push(agent);
    await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${ops}/ready`), 60_000, agent.logs);
    const client = createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 10_000 });
    try {
      const before = await waitFor('the workload SVID', () => client.fetchX509Context().catch(() => undefined), 20_000, agent.logs);
      expect(before.svids.map((s) => s.id.toString())).toEqual([`spiffe://${TD}/before`]);
      expect(await scrapeSeries(`http://127.0.0.1:${ops}/metrics`, 'svidscope_agent_server_failovers_total')).toBe(0);

      first.proc.child.kill('SIGKILL');
      await first.proc.child.catch(() => undefined);
      // The survivor serves a change made after the kill: the agent's syncs go there now.
      await second.admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/after`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] } });
      const after = await waitFor('the new entry through the survivor', async () => {
        const ctx = await client.fetchX509Context().catch(() => undefined);
        return ctx && ctx.svids.length === 2 ? ctx : undefined;
      }, 30_000, agent.logs);
      expect(after.svids.map((s) => s.id.toString()).sort()).toEqual([`spiffe://${TD}/after`, `spiffe://${TD}/before`]);
      expect(await scrapeSeries(`http://127.0.0.1:${ops}/metrics`, 'svidscope_agent_server_failovers_total')).toBeGreaterThanOrEqual(1);
      expect(await scrapeSeries(`http://127.0.0.1:${ops}/metrics`, 'svidscope_agent_attested')).toBe(1);
      expect(await httpOk(`http://127.0.0.1:${ops}/ready`)).toBe(true);
      // Still the one agent from the one join token: nothing was re-attested (the token is spent anyway).
      const agents = await second.admin.call<{ agents: { id: string }[] }>('ListAgents', {});
      expect(agents.agents.map((a) => a.id)).toEqual([agentId]);
      expect(agent.logs()).toContain('moving to the next server');
    } finally {
      client.close();
    }
  }, 150_000);
});

describe('server_address', () => {
  const build = (server_address: unknown) => buildAgentConfig({ trust_domain: TD, server_address, data_dir: path.join(dir, 'cfg') });
  it('takes one address, a comma-separated list or a YAML list, in order and without duplicates', () => {
    expect(build('10.0.0.1:8081').serverAddresses).toEqual(['10.0.0.1:8081']);
    expect(build('a.example:8081, b.example:8081,a.example:8081')).toMatchObject({ serverAddress: 'a.example:8081', serverAddresses: ['a.example:8081', 'b.example:8081'] });
    expect(build(['[::1]:8081', 'dns:///servers.example:8081']).serverAddresses).toEqual(['[::1]:8081', 'dns:///servers.example:8081']);
  });
  it('names what is wrong with a bad address', () => {
    expect(() => build('server.example')).toThrow('config: server_address: "server.example" is not host:port (or a gRPC target such as dns:///server.example:8081)');
    expect(() => build('a:99999')).toThrow('"a:99999" is not host:port');
    expect(() => build([])).toThrow('config: server_address: names no server');
    expect(() => build([8081])).toThrow('every address must be a string (got 8081)');
    expect(() => build(Array.from({ length: 17 }, (_, i) => `s${i}:1`))).toThrow('names 17 servers; at most 16');
  });
});
