import type { Command } from 'commander';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { ensureSystemUser } from '../../common/os-users.js';
import { createLogger, type Logger } from '../../common/log.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../identity-plane/spiffe/bundle/index.js';
import { connectAdmin } from '../admin/client.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { waitForShutdownSignal } from '../signals.js';
import { startChild, stopChild, type Child } from './children.js';

interface UpFlags {
  dataDir: string;
  trustDomain: string;
  json?: boolean;
}

/** Registers `svidscope up`: the reference topology on one machine, on embedded defaults. */
export function registerUp(program: Command, io: Io): void {
  program.command('up').description('start a server, two agents and sample workloads on this machine; Ctrl-C stops everything')
    .option('--data-dir <dir>', 'where every component keeps its state and logs', '.svidscope/up')
    .option('--trust-domain <td>', 'trust domain of the local stack', 'example.org')
    .option('--json', 'print the endpoints as one JSON object once everything is up')
    .action(withErrors(io, async (f: UpFlags) => {
      const logger = createLogger({ name: 'up' });
      const stack = await startStack(path.resolve(f.dataDir), f.trustDomain, logger);
      printResult(io, f, { ...stack.endpoints }, () => describe(stack.endpoints));
      await waitForShutdownSignal(logger);
      await stack.stop();
    }));
}

async function freePort(preferred: number): Promise<number> {
  const tryPort = (port: number) => new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : port));
    });
  });
  return tryPort(preferred).catch(() => tryPort(0));
}

async function waitReady(url: string, child: Child, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exited) throw new SvidscopeError('unavailable', `${what} exited during start; see ${child.logFile}`);
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new SvidscopeError('unavailable', `${what} was not ready within ${timeoutMs / 1000}s; see ${child.logFile}`);
}

export interface Endpoints {
  trustDomain: string;
  dataDir: string;
  server: { address: string; adminSocket: string; health: string; metrics: string; log: string };
  agents: { name: string; spiffeId: string; socketPath: string; health: string; metrics: string; log: string }[];
  workloads: { name: string; spiffeId: string; agent: string; selectors: string[]; svidDir: string; log: string }[];
}

/**
 * Brings up the stack: server, then two agents attested with fresh join tokens, then one sample
 * workload per agent, registered with unix selectors that fit who runs this: distinct uids when
 * root, distinct binary paths otherwise (same uid). Everything is a child process, so game days
 * can kill any one of them.
 */
export async function startStack(dataDir: string, trustDomain: string, logger: Logger): Promise<{ endpoints: Endpoints; stop(): Promise<void> }> {
  mkdirSync(dataDir, { recursive: true });
  chmodSync(dataDir, 0o755); // sample workloads under other uids must reach the agents' sockets
  const logDir = path.join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true, mode: 0o755 });
  const children: Child[] = [];
  const stop = async () => {
    for (const c of [...children].reverse()) await stopChild(c);
  };
  try {
    const ports = { server: await freePort(8081), serverHealth: await freePort(8080) };
    const serverDir = path.join(dataDir, 'server');
    const serverConfig = path.join(dataDir, 'server.yaml');
    writeFileSync(serverConfig, stringify({ trust_domain: trustDomain, data_dir: serverDir, bind: `127.0.0.1:${ports.server}`, health_bind: `127.0.0.1:${ports.serverHealth}` }));
    const server = startChild({ name: 'server', args: ['server', 'run', '--config', serverConfig], logDir, logger });
    children.push(server);
    await waitReady(`http://127.0.0.1:${ports.serverHealth}/ready`, server, 'the server');
    const adminSocket = path.join(serverDir, 'admin.sock');
    const admin = connectAdmin(adminSocket);
    const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
    const bundlePem = path.join(dataDir, 'bundle.pem');
    writeFileSync(bundlePem, x509BundleToPem(parseSpiffeBundle(trustDomain, bundle.document)));

    const isRoot = process.getuid?.() === 0;
    const endpoints: Endpoints = {
      trustDomain, dataDir,
      server: { address: `127.0.0.1:${ports.server}`, adminSocket, health: `http://127.0.0.1:${ports.serverHealth}/ready`, metrics: `http://127.0.0.1:${ports.serverHealth}/metrics`, log: server.logFile },
      agents: [], workloads: [],
    };
    for (const [i, preferredHealth] of [[1, 8088], [2, 8089]] as const) {
      const name = `agent-${i}`;
      const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
      const agentDir = path.join(dataDir, name);
      const health = await freePort(preferredHealth);
      const socketPath = path.join(agentDir, 'public', 'api.sock');
      const config = path.join(dataDir, `${name}.yaml`);
      // Not root: workloads share a uid and are told apart by binary path, which needs path discovery.
      writeFileSync(config, stringify({ trust_domain: trustDomain, server_address: endpoints.server.address, data_dir: agentDir, socket_path: socketPath, trust_bundle_path: bundlePem, health_bind: `127.0.0.1:${health}`, discover_workload_path: !isRoot }));
      const agent = startChild({ name, args: ['agent', 'run', '--config', config, '--join-token', token.value], logDir, logger });
      children.push(agent);
      await waitReady(`http://127.0.0.1:${health}/ready`, agent, name);
      const spiffeId = `spiffe://${trustDomain}/spire/agent/join_token/${token.value}`;
      endpoints.agents.push({ name, spiffeId, socketPath, health: `http://127.0.0.1:${health}/ready`, metrics: `http://127.0.0.1:${health}/metrics`, log: agent.logFile });

      const wname = `workload-${i}`;
      let runAs: { uid: number; gid: number } | undefined;
      let nodeBinary: string | undefined;
      let selectors: { type: string; value: string }[];
      if (isRoot) {
        runAs = ensureSystemUser(`svidscope-${wname}`);
        selectors = [{ type: 'unix', value: `uid:${runAs.uid}` }];
      } else {
        // Same uid for both: tell them apart by the binary they run (a copy of node per workload).
        nodeBinary = path.join(dataDir, 'bin', `${wname}-node`);
        mkdirSync(path.dirname(nodeBinary), { recursive: true });
        if (!existsSync(nodeBinary)) copyFileSync(process.execPath, nodeBinary);
        chmodSync(nodeBinary, 0o755);
        selectors = [{ type: 'unix', value: `uid:${process.getuid?.() ?? 0}` }, { type: 'unix', value: `path:${nodeBinary}` }];
      }
      const wSpiffeId = `spiffe://${trustDomain}/workload/${wname}`;
      const existing = await admin.call<{ entries: unknown[] }>('ListEntries', { filter: { by_spiffe_id: wSpiffeId, by_parent_id: spiffeId } });
      if (existing.entries.length === 0) await admin.call('CreateEntry', { entry: { spiffe_id: wSpiffeId, parent_id: spiffeId, selectors } });
      const svidDir = path.join(dataDir, 'workloads', wname);
      mkdirSync(svidDir, { recursive: true, mode: 0o755 });
      if (runAs) execFileSync('chown', [`${runAs.uid}:${runAs.gid}`, svidDir]);
      const workload = startChild({ name: wname, args: ['workload', 'sample', '--socket-path', socketPath, '--write', svidDir, '--name', wname], logDir, logger, runAs, nodeBinary });
      children.push(workload);
      endpoints.workloads.push({ name: wname, spiffeId: wSpiffeId, agent: name, selectors: selectors.map((s) => `${s.type}:${s.value}`), svidDir, log: workload.logFile });
    }
    admin.close();
    writeFileSync(path.join(dataDir, 'endpoints.json'), JSON.stringify(endpoints, null, 2) + '\n');
    logger.info({ endpoints: path.join(dataDir, 'endpoints.json') }, 'stack is up');
    return { endpoints, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function describe(e: Endpoints): string[] {
  return [
    `svidscope is up — trust domain ${e.trustDomain}`,
    '',
    `server     ${e.server.address}  admin ${e.server.adminSocket}`,
    `           ready ${e.server.health}  metrics ${e.server.metrics}`,
    ...e.agents.flatMap((a) => [`${a.name.padEnd(10)} ${a.spiffeId}`, `           workload API unix://${a.socketPath}`, `           ready ${a.health}  metrics ${a.metrics}`]),
    ...e.workloads.map((w) => `${w.name.padEnd(10)} ${w.spiffeId} via ${w.agent} (${w.selectors.join(', ')}), SVID in ${w.svidDir}`),
    '',
    `endpoints: ${path.join(e.dataDir, 'endpoints.json')}   logs: ${path.join(e.dataDir, 'logs')}`,
    'try:  svidscope agent api fetch x509 --socket-path ' + (e.agents[0]?.socketPath ?? ''),
    'Ctrl-C stops everything.',
  ];
}
