/**
 * A real identity plane for probe tests, started the way test/agent/e2e.test.ts does it: the
 * server and one agent as child processes with YAML configs, entries created through the admin
 * API. The test process (root) is the workload: it gets the entries for uid 0.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connectAdmin, type AdminClient } from '../../../src/cli/admin/client.js';
import { bootstrapAgent } from '../../support/agent-bootstrap.js';
import { createWorkloadApiClient } from '../../../src/identity-plane/workload-api/index.js';
import { freePort, httpOk, spawnCli, waitFor } from '../../support/process.js';
import { removeDir, tempDir } from '../../support/server.js';

export const TD = 'example.org';

export interface Stack {
  readonly dir: string;
  readonly socketPath: string;
  /** `unix:///…` of the agent's Workload API. */
  readonly address: string;
  readonly admin: AdminClient;
  readonly agentId: string;
  readonly server: ReturnType<typeof spawnCli>;
  readonly agent: ReturnType<typeof spawnCli>;
  createEntry(spiffePath: string, uid: number, extra?: object): Promise<{ id: string }>;
  logs(): string;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Entries for uid 0 (the test process): path → entry fields (x509_svid_ttl, jwt_svid_ttl…). */
  readonly rootEntries: Record<string, object>;
  readonly rotationFraction?: number;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const dir = tempDir('probes');
  chmodSync(dir, 0o755);
  const socketPath = path.join(dir, 'agent', 'public', 'api.sock');
  const ports = { server: await freePort(), serverHealth: await freePort(), agentHealth: await freePort() };
  writeFileSync(path.join(dir, 'server.yaml'), [
    `trust_domain: ${TD}`, `data_dir: ${path.join(dir, 'server')}`, `bind: 127.0.0.1:${ports.server}`,
    `health_bind: 127.0.0.1:${ports.serverHealth}`, 'cache_reload_interval: 1s', 'log_level: warn',
  ].join('\n'));
  const server = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')]);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${ports.serverHealth}/ready`), 30_000, server.logs);
  const admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const { token, agentId } = await bootstrapAgent(admin, {
    dir, trustDomain: TD, serverPort: ports.server, healthPort: ports.agentHealth, socketPath,
    extra: ['log_level: warn', `rotation_fraction: ${opts.rotationFraction ?? 0.5}`],
  });
  const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), '--join-token', token]);
  await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${ports.agentHealth}/ready`), 30_000, agent.logs);
  const createEntry = (spiffePath: string, uid: number, extra: object = {}) =>
    admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}${spiffePath}`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }], ...extra } });
  for (const [p, extra] of Object.entries(opts.rootEntries)) await createEntry(p, 0, extra);
  const want = Object.keys(opts.rootEntries).length;
  const c = createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 5_000 });
  await waitFor('root SVIDs', () => c.fetchX509Context().then((ctx) => ctx.svids.length === want), 30_000, agent.logs);
  c.close();
  return {
    dir, socketPath, address: `unix://${socketPath}`, admin, agentId, server, agent, createEntry,
    logs: () => `--- server ---\n${server.logs().slice(-2000)}\n--- agent ---\n${agent.logs().slice(-2000)}`,
    async stop() {
      admin.close();
      for (const p of [agent, server]) {
        p.child.kill('SIGCONT');
        p.child.kill('SIGKILL');
        await p.child;
      }
      removeDir(dir);
    },
  };
}
