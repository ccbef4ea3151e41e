// The serial check must not lock out an honest agent: a real agent renewing its SVID every few
// seconds against a real server process keeps syncing under the same agent ID, and never presents a
// serial the server refuses.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectAdmin } from '../../src/cli/admin/client.js';
import type { AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { scrapeSeries } from '../support/metrics.js';
import { freePort, httpOk, spawnCli, stopAll, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';

const dir = tempDir('agent-renewal');
const procs: ReturnType<typeof spawnCli>[] = [];
let admin: AdminClient | undefined;
afterAll(async () => {
  admin?.close();
  await stopAll(procs);
  removeDir(dir);
});

const metric = async (port: number, series: string) => (await scrapeSeries(`http://127.0.0.1:${port}/metrics`, series)) ?? 0;

describe('a real agent renewing against the serial check', () => {
  it('renews several times and keeps syncing as the same agent, with no stale-serial refusal', async () => {
    const [serverPort, serverHealth, agentHealth] = [await freePort(), await freePort(), await freePort()];
    // The server's own SVID shares agent_ttl: the 1 s reload renews it in time.
    writeFileSync(path.join(dir, 'server.yaml'), 'agent_ttl: 6s\nagent_renewal_grace: 1s\ncache_reload_interval: 1s\n');
    const server = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml'), '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'server'),
      '--bind', `127.0.0.1:${serverPort}`, '--health-bind', `127.0.0.1:${serverHealth}`]);
    procs.push(server);
    await waitFor('server ready', () => httpOk(`http://127.0.0.1:${serverHealth}/ready`), 30_000, server.logs);
    admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
    const { token, agentId } = await bootstrapAgent(admin, { dir, trustDomain: 'example.org', serverPort, healthPort: agentHealth, socketPath: path.join(dir, 'api.sock') });
    const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), '--join-token', token]);
    procs.push(agent);
    await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${agentHealth}/ready`), 30_000, agent.logs);

    const expiries = new Set<number>();
    await waitFor('three renewals', async () => {
      expiries.add(await metric(agentHealth, 'svidscope_agent_own_svid_expiry_timestamp_seconds'));
      return expiries.size >= 4;
    }, 30_000, agent.logs);
    const syncedAt = Date.now() / 1000;
    await waitFor('a sync after the renewals', async () => (await metric(agentHealth, 'svidscope_agent_last_successful_sync_timestamp_seconds')) > syncedAt, 10_000, agent.logs);
    expect(await metric(agentHealth, 'svidscope_agent_attested')).toBe(1);
    const agents = await admin.call<{ agents: { id: string }[] }>('ListAgents', {});
    expect(agents.agents.map((a) => a.id)).toEqual([agentId]); // never had to attest again
    expect(await metric(serverHealth, 'svidscope_server_agent_auth_refusals_total{reason="stale_serial"}')).toBe(0);
  }, 90_000);
});
