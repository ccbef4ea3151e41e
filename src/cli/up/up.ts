import type { Command } from 'commander';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { pickPort } from '../../common/net.js';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { ensureSystemUser } from '../../common/os-users.js';
import { createLogger, type Logger } from '../../common/log.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain, parseTrustDomainBounded, type TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { connectAdmin } from '../admin/client.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { waitForShutdownSignal } from '../signals.js';
import { cliEntry, projectRoot, startChild, stopChild, stopStrays, type Child } from './children.js';
import { startPrometheusStack } from '../../monitoring/stack.js';
import { ALERT_PROFILES, type AlertProfile } from '../../monitoring/config.js';
import { startFaultRelay, type FaultRelay } from '../../chaos/relay.js';
import { launchAgent } from './agent-launch.js';
import { serverSpiffeIdString } from '../../identity-plane/server-api/server-id.js';

interface UpFlags {
  dataDir: string;
  trustDomain: string;
  peerTrustDomain: string;
  federation: boolean;
  monitoring: boolean;
  alertProfile: string;
  json?: boolean;
}

/** Registers `svidscope up`: the reference topology on one machine, on embedded defaults. */
export function registerUp(program: Command, io: Io): void {
  program.command('up').description('start the local stack (server, two agents, sample workloads, and a federated peer trust domain); Ctrl-C stops everything')
    .option('--data-dir <dir>', 'where every component keeps its state and logs', '.svidscope/up')
    .option('--trust-domain <td>', 'trust domain of the local stack', 'example.org')
    .option('--peer-trust-domain <td>', 'trust domain of the federated peer', 'peer.example')
    .option('--no-federation', 'one trust domain only (no peer, no federation)')
    .option('--no-monitoring', 'do not start Prometheus and Alertmanager')
    .option('--alert-profile <profile>', 'rules for the local Prometheus: production (as shipped in alerts/, 15s scrapes) or gameday (2s scrapes, every `for` 10s: chaos experiments prove alerts within a minute)', 'production')
    .option('--json', 'print the endpoints as one JSON object once everything is up')
    .action(withErrors(io, async (f: UpFlags) => {
      const logger = createLogger({ name: 'up' });
      const dataDir = path.resolve(f.dataDir);
      if (!Object.hasOwn(ALERT_PROFILES, f.alertProfile)) throw new SvidscopeError('config-invalid', `up: --alert-profile must be one of ${Object.keys(ALERT_PROFILES).join(', ')} (got ${JSON.stringify(f.alertProfile)})`);
      const profile = ALERT_PROFILES[f.alertProfile as AlertProfile];
      // Listen for Ctrl-C / SIGTERM from the start, so a signal during start-up still stops every child.
      // The flags are parsed once here, so a bad name is refused with the rule it breaks before any child starts.
      const trustDomain = parseTrustDomainBounded(f.trustDomain);
      const peerTrustDomain = parseTrustDomainBounded(f.peerTrustDomain);
      const signalled = waitForShutdownSignal(logger);
      const stack = await startStack(dataDir, trustDomain, logger, { federation: f.federation, peerTrustDomain });
      // Prometheus (with the generated rules) and Alertmanager, when their binaries are installed.
      let stopMonitoring = async () => undefined as void;
      const endpoints: Endpoints = { ...stack.endpoints };
      if (f.monitoring) {
        try {
          const mon = await startPrometheusStack({ dataDir, endpoints: stack.endpoints, logger, scrapeInterval: profile.scrapeInterval, config: profile.overrides });
          if (mon.installed) {
            endpoints.monitoring = { prometheus: mon.prometheusUrl, alertmanager: mon.alertmanagerUrl, alertProfile: f.alertProfile };
            stopMonitoring = mon.stop;
          } else {
            endpoints.monitoring = { unavailable: mon.message };
          }
        } catch (err) {
          await stack.stop();
          throw err;
        }
      }
      // The summary goes out before endpoints.json appears: whoever waits for the file (scripts, tests)
      // then also sees the summary, and the atomic write means a reader never sees half a file.
      printResult(io, f, { ...endpoints }, () => describe(endpoints));
      writeFileAtomic(path.join(dataDir, 'endpoints.json'), JSON.stringify(endpoints, null, 2) + '\n', 0o644);
      logger.info({ endpoints: path.join(dataDir, 'endpoints.json') }, 'stack is up');
      await signalled;
      await stopMonitoring();
      await stack.stop();
    }));
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

export interface DomainEndpoints {
  trustDomain: string;
  server: { address: string; adminSocket: string; health: string; metrics: string; bundleEndpoint: string; log: string };
  /**
   * `relay`: the fault relay between this agent and its server (the agent dials `address`; game
   * days set partition/latency through `control` without restarting the agent).
   */
  agents: { name: string; spiffeId: string; socketPath: string; health: string; metrics: string; log: string; relay: { address: string; control: string } }[];
  workloads: { name: string; spiffeId: string; agent: string; selectors: string[]; svidDir: string; log: string }[];
}

export interface Endpoints extends DomainEndpoints {
  dataDir: string;
  prober: { url: string; probe: string; metrics: string; config: string; log: string };
  exporter: { url: string; metrics: string; config: string; log: string };
  /** Prometheus and Alertmanager started by `up`, or why not. */
  monitoring?: { prometheus: string; alertmanager: string; alertProfile: string } | { unavailable: string };
  /** The federated peer trust domain (absent with --no-federation). */
  peer?: DomainEndpoints;
}

interface StackContext {
  dataDir: string;
  logDir: string;
  logger: Logger;
  children: Child[];
  relays: FaultRelay[];
  isRoot: boolean;
}

/**
 * Brings up the stack: for each trust domain a server (with a bundle endpoint), its agents attested
 * with fresh join tokens, and one sample workload per agent registered with unix selectors that fit
 * who runs this: distinct uids when root, distinct binary paths otherwise (same uid). With
 * federation (the default) a second trust domain federates both ways with the first. Everything is
 * a child process, so game days can kill any one of them.
 */
export async function startStack(dataDir: string, trustDomain: TrustDomain, logger: Logger, opts: { federation?: boolean; peerTrustDomain?: TrustDomain } = {}): Promise<{ endpoints: Endpoints; stop(): Promise<void> }> {
  mkdirSync(dataDir, { recursive: true });
  chmodSync(dataDir, 0o755); // sample workloads under other uids must reach the agents' sockets
  const logDir = path.join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true, mode: 0o755 });
  const ctx: StackContext = { dataDir, logDir, logger, children: [], relays: [], isRoot: process.getuid?.() === 0 };
  const stop = async () => {
    for (const c of [...ctx.children].reverse()) await stopChild(c);
    await stopStrays(dataDir);
    for (const r of ctx.relays) await r.stop();
  };
  try {
    const main = await startServer(ctx, 'server', trustDomain, { server: 8081, health: 8080, endpoint: 8443 });
    const peerTd = opts.peerTrustDomain ?? mustTrustDomain('peer.example');
    const peer = opts.federation === false ? undefined : await startServer(ctx, 'peer-server', peerTd, { server: 8181, health: 8180, endpoint: 8543 });
    if (peer) {
      // Mutual https_spiffe relationships, bootstrapped with each other's current bundle.
      for (const [from, to] of [[main, peer], [peer, main]] as const) {
        const bundle = await to.admin.call<{ document: Buffer }>('GetBundle', {});
        await from.admin.call('CreateFederation', {
          relationship: { trust_domain: to.endpoints.trustDomain, bundle_endpoint_url: to.endpoints.server.bundleEndpoint, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: serverSpiffeIdString(to.endpoints.trustDomain) },
          bundle: bundle.document,
        }).catch((err: unknown) => {
          if ((err as { code?: string }).code !== 'already-exists') throw err;
        });
      }
    }
    const federatesWith = peer ? [peerTd.name] : [];
    await startAgentWithWorkload(ctx, main, 1, 8088, federatesWith);
    await startAgentWithWorkload(ctx, main, 2, 8089, federatesWith);
    if (peer) await startAgentWithWorkload(ctx, peer, 1, 8188, [trustDomain.name]);
    const prober = await startStackProber(ctx, main, peer);
    const exporter = await startStackExporter(ctx, main, peer);
    main.admin.close();
    peer?.admin.close();
    // The caller writes endpoints.json once everything it adds (monitoring) is up too.
    const endpoints: Endpoints = { ...main.endpoints, dataDir, prober, exporter, ...(peer ? { peer: peer.endpoints } : {}) };
    return { endpoints, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * How a stack process is told apart by the agents: its own system user when we are root, else a
 * copy of the node binary of its own (same uid, `unix:path`).
 */
function processIdentity(ctx: StackContext, name: string, opts: { sameUser?: boolean } = {}): { runAs?: { uid: number; gid: number }; nodeBinary?: string; selectors: { type: string; value: string }[] } {
  if (ctx.isRoot && !opts.sameUser) {
    const runAs = ensureSystemUser(`svidscope-${name}`);
    if (canRunCliAs(runAs)) return { runAs, selectors: [{ type: 'unix', value: `uid:${runAs.uid}` }] };
    ctx.logger.warn({ user: `svidscope-${name}`, project: projectRoot }, 'other users cannot read this checkout; running the process as root, told apart by binary path');
  }
  const nodeBinary = path.join(ctx.dataDir, 'bin', `${name}-node`);
  mkdirSync(path.dirname(nodeBinary), { recursive: true });
  if (!existsSync(nodeBinary)) copyFileSync(process.execPath, nodeBinary);
  chmodSync(nodeBinary, 0o755);
  return { nodeBinary, selectors: [{ type: 'unix', value: `uid:${process.getuid?.() ?? 0}` }, { type: 'unix', value: `path:${nodeBinary}` }] };
}

/**
 * Whether a process under `user` can run the CLI from this checkout: it must read bin/ and
 * node_modules/, which a checkout inside a private (0700) directory does not allow.
 */
function canRunCliAs(user: { uid: number; gid: number }): boolean {
  try {
    for (const file of [cliEntry, path.join(projectRoot, 'node_modules', '@grpc', 'grpc-js', 'package.json')]) {
      execFileSync('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', 'test', '-r', file], { stdio: 'ignore' });
    }
    return true;
  } catch {
    return false;
  }
}

interface StartedServer {
  name: string;
  dir: string;
  bundlePem: string;
  admin: ReturnType<typeof connectAdmin>;
  endpoints: DomainEndpoints;
}

async function startServer(ctx: StackContext, name: string, trustDomain: TrustDomain, preferred: { server: number; health: number; endpoint: number }): Promise<StartedServer> {
  const ports = { server: await pickPort(preferred.server), health: await pickPort(preferred.health), endpoint: await pickPort(preferred.endpoint) };
  const dir = path.join(ctx.dataDir, name);
  const config = path.join(ctx.dataDir, `${name}.yaml`);
  writeFileSync(config, stringify({
    trust_domain: trustDomain.name, data_dir: dir, bind: `127.0.0.1:${ports.server}`, health_bind: `127.0.0.1:${ports.health}`,
    // Peers are told to refresh every 30 s, so on this stack a key prepared or revoked on one side
    // reaches the other within a game-day step (the key-compromise drill times it).
    federation: { bundle_endpoint: { bind: `127.0.0.1:${ports.endpoint}`, profile: 'https_spiffe', refresh_hint: '30s' }, refresh_max: '5m' },
  }));
  const child = startChild({ name, args: ['server', 'run', '--config', config], logDir: ctx.logDir, logger: ctx.logger });
  ctx.children.push(child);
  await waitReady(`http://127.0.0.1:${ports.health}/ready`, child, `${name} (${trustDomain})`);
  const adminSocket = path.join(dir, 'admin.sock');
  const admin = connectAdmin(adminSocket);
  const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
  const bundlePem = path.join(ctx.dataDir, `${name}-bundle.pem`);
  writeFileSync(bundlePem, x509BundleToPem(parseSpiffeBundle(trustDomain, bundle.document)));
  return {
    name, dir, bundlePem, admin,
    endpoints: {
      trustDomain: trustDomain.name,
      server: { address: `127.0.0.1:${ports.server}`, adminSocket, health: `http://127.0.0.1:${ports.health}/ready`, metrics: `http://127.0.0.1:${ports.health}/metrics`, bundleEndpoint: `https://127.0.0.1:${ports.endpoint}/`, log: child.logFile },
      agents: [], workloads: [],
    },
  };
}

async function startAgentWithWorkload(ctx: StackContext, server: StartedServer, i: number, preferredHealth: number, federatesWith: string[]): Promise<void> {
  const prefix = server.name === 'server' ? '' : `${server.name.replace(/-server$/, '')}-`;
  const name = `${prefix}agent-${i}`;
  const td = server.endpoints.trustDomain;
  const token = await server.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
  const agentDir = path.join(ctx.dataDir, name);
  const health = await pickPort(preferredHealth);
  const socketPath = path.join(agentDir, 'public', 'api.sock');
  // Processes sharing a uid (everything when not root; the exporter always, since it reads the
  // admin sockets) are told apart by binary path. Hashing the node binary on every call would cost
  // more than it tells here, so unix:sha256 is off (workload_size_limit -1).
  // The agent reaches its server through a fault relay of its own (pass-through until a game day
  // says otherwise), so network faults need no config rewrite or restart.
  const relay = await startFaultRelay(server.endpoints.server.address);
  ctx.relays.push(relay);
  const wname = `${prefix}workload-${i}`;
  const { runAs, nodeBinary, selectors } = processIdentity(ctx, wname);
  const wSpiffeId = `spiffe://${td}/workload/${wname}`;
  // The agent's ID follows from its token, so its workload is registered before it starts and
  // its first sync already carries the entry (no PermissionDenied while it catches up).
  const spiffeId = `spiffe://${td}/spire/agent/join_token/${token.value}`;
  const existing = await server.admin.call<{ entries: unknown[] }>('ListEntries', { filter: { by_spiffe_id: wSpiffeId, by_parent_id: spiffeId } });
  if (existing.entries.length === 0) await server.admin.call('CreateEntry', { entry: { spiffe_id: wSpiffeId, parent_id: spiffeId, selectors, federates_with: federatesWith } });
  const { child: agent } = launchAgent({
    name, dataDir: ctx.dataDir, logDir: ctx.logDir, logger: ctx.logger, token: token.value,
    config: { trust_domain: td, server_address: relay.address, data_dir: agentDir, socket_path: socketPath, trust_bundle_path: server.bundlePem, health_bind: `127.0.0.1:${health}`, discover_workload_path: true, workload_size_limit: -1 },
  });
  ctx.children.push(agent);
  await waitReady(`http://127.0.0.1:${health}/ready`, agent, name);
  server.endpoints.agents.push({ name, spiffeId, socketPath, health: `http://127.0.0.1:${health}/ready`, metrics: `http://127.0.0.1:${health}/metrics`, log: agent.logFile, relay: { address: relay.address, control: relay.control } });

  const svidDir = path.join(ctx.dataDir, 'workloads', wname);
  mkdirSync(svidDir, { recursive: true, mode: 0o755 });
  if (runAs) execFileSync('chown', [`${runAs.uid}:${runAs.gid}`, svidDir]);
  const workload = startChild({ name: wname, args: ['workload', 'sample', '--socket-path', socketPath, '--write', svidDir, '--name', wname], logDir: ctx.logDir, logger: ctx.logger, runAs, nodeBinary });
  ctx.children.push(workload);
  server.endpoints.workloads.push({ name: wname, spiffeId: wSpiffeId, agent: name, selectors: selectors.map((s) => `${s.type}:${s.value}`), svidDir, log: workload.logFile });
}

/**
 * The prober: identities of its own on every agent (two on agent-1 for the same-domain mTLS pair,
 * one on the peer's agent for the cross-domain pair), and targets for every module.
 */
async function startStackProber(ctx: StackContext, main: StartedServer, peer: StartedServer | undefined): Promise<Endpoints['prober']> {
  const { runAs, nodeBinary, selectors } = processIdentity(ctx, 'prober');
  const td = main.endpoints.trustDomain;
  const register = async (server: StartedServer, agentIndex: number, paths: string[], federatesWith: string[]) => {
    const agentId = server.endpoints.agents[agentIndex].spiffeId;
    for (const p of paths) {
      const spiffeId = `spiffe://${server.endpoints.trustDomain}${p}`;
      const existing = await server.admin.call<{ entries: unknown[] }>('ListEntries', { filter: { by_spiffe_id: spiffeId, by_parent_id: agentId } });
      if (existing.entries.length === 0) await server.admin.call('CreateEntry', { entry: { spiffe_id: spiffeId, parent_id: agentId, selectors, federates_with: federatesWith } });
    }
  };
  const peerTd = peer?.endpoints.trustDomain;
  await register(main, 0, ['/prober/client', '/prober/server'], peerTd ? [peerTd] : []);
  await register(main, 1, ['/prober/agent-2'], []);
  if (peer) await register(peer, 0, ['/prober/peer'], [td]);

  const sock = (s: StartedServer, i: number) => `unix://${s.endpoints.agents[i].socketPath}`;
  const modules: Record<string, unknown> = {
    x509: { prober: 'x509_svid', x509_svid: { min_ttl_ratio: 0.1 } },
    jwt: { prober: 'jwt_svid', jwt_svid: { audience: ['svidscope-prober'] } },
    mtls_local: { prober: 'mtls', mtls: { client_spiffe_id: `spiffe://${td}/prober/client`, server_spiffe_id: `spiffe://${td}/prober/server` } },
    watch: { prober: 'rotation_watch' },
    [`bundle_${td}`]: { prober: 'bundle_endpoint', bundle_endpoint: { trust_domain: td, profile: 'https_spiffe', endpoint_spiffe_id: serverSpiffeIdString(td), bundle_file: main.bundlePem } },
  };
  const targets: Record<string, unknown>[] = [
    ...main.endpoints.agents.map((a, i) => ({ name: `${a.name}-x509`, module: 'x509', target: sock(main, i), interval: '15s' })),
    { name: 'agent-1-jwt', module: 'jwt', target: sock(main, 0), interval: '15s' },
    { name: 'agent-1-mtls', module: 'mtls_local', target: sock(main, 0), interval: '15s' },
    { name: 'agent-1-rotation', module: 'watch', target: sock(main, 0) },
    { name: `${td}-bundle-endpoint`, module: `bundle_${td}`, target: main.endpoints.server.bundleEndpoint, interval: '30s' },
  ];
  if (peer && peerTd) {
    modules.mtls_federated = { prober: 'mtls', mtls: { server_target: sock(peer, 0), client_spiffe_id: `spiffe://${td}/prober/client`, server_spiffe_id: `spiffe://${peerTd}/prober/peer`,
      allowed_server_ids: [`spiffe://${peerTd}/prober/peer`], allowed_client_ids: [`spiffe://${td}/prober/client`] } };
    modules[`bundle_${peerTd}`] = { prober: 'bundle_endpoint', bundle_endpoint: { trust_domain: peerTd, profile: 'https_spiffe', endpoint_spiffe_id: serverSpiffeIdString(peerTd), bundle_file: peer.bundlePem } };
    targets.push(
      { name: 'peer-agent-1-x509', module: 'x509', target: sock(peer, 0), interval: '15s' },
      { name: 'federated-mtls', module: 'mtls_federated', target: sock(main, 0), interval: '15s' },
      { name: `${peerTd}-bundle-endpoint`, module: `bundle_${peerTd}`, target: peer.endpoints.server.bundleEndpoint, interval: '30s' },
    );
  }
  const port = await pickPort(9465);
  const config = path.join(ctx.dataDir, 'prober.yaml');
  writeFileSync(config, stringify({ listen: `127.0.0.1:${port}`, modules, targets }));
  chmodSync(config, 0o644);
  const child = startChild({ name: 'prober', args: ['prober', 'run', '--config', config], logDir: ctx.logDir, logger: ctx.logger, runAs, nodeBinary });
  ctx.children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(`${url}/live`, child, 'the prober');
  return { url, probe: `${url}/probe?module=x509&target=${encodeURIComponent(sock(main, 0))}`, metrics: `${url}/metrics`, config, log: child.logFile };
}

/**
 * The lifecycle exporter: the servers' admin sockets (bundle sequences, coverage, agents' SVIDs),
 * every agent's Workload API under an identity of its own, the sample workloads' SVID files and
 * both bundle endpoints.
 */
async function startStackExporter(ctx: StackContext, main: StartedServer, peer: StartedServer | undefined): Promise<Endpoints['exporter']> {
  const { nodeBinary, selectors } = processIdentity(ctx, 'exporter', { sameUser: true });
  const sources: Record<string, unknown>[] = [];
  for (const server of peer ? [main, peer] : [main]) {
    const td = server.endpoints.trustDomain;
    // Federating with the other domain, the exporter sees each agent's copy of the peer's bundle too
    // (a revoke's "federated peer without the key" includes the peer's agents).
    const federatesWith = peer ? [(server === main ? peer : main).endpoints.trustDomain] : [];
    sources.push({ name: `${server.name}-admin`, type: 'server_admin', socket: server.endpoints.server.adminSocket, interval: '5s' });
    sources.push({ name: `${server.name}-bundle-endpoint`, type: 'bundle_endpoint', url: server.endpoints.server.bundleEndpoint, trust_domain: td, profile: 'https_spiffe', endpoint_spiffe_id: serverSpiffeIdString(td), bundle_file: server.bundlePem, interval: '15s' });
    for (const agent of server.endpoints.agents) {
      const spiffeId = `spiffe://${td}/exporter/${agent.name}`;
      const existing = await server.admin.call<{ entries: unknown[] }>('ListEntries', { filter: { by_spiffe_id: spiffeId, by_parent_id: agent.spiffeId } });
      if (existing.entries.length === 0) await server.admin.call('CreateEntry', { entry: { spiffe_id: spiffeId, parent_id: agent.spiffeId, selectors, federates_with: federatesWith } });
      sources.push({ name: agent.name, type: 'workload_api', address: `unix://${agent.socketPath}` });
    }
    sources.push({ name: `${server.name}-workload-files`, type: 'files', paths: server.endpoints.workloads.map((w) => w.svidDir), trust_domain: td, interval: '15s' });
  }
  const port = await pickPort(9190);
  const config = path.join(ctx.dataDir, 'exporter.yaml');
  writeFileSync(config, stringify({ listen: `127.0.0.1:${port}`, sources }));
  const child = startChild({ name: 'exporter', args: ['exporter', 'run', '--config', config], logDir: ctx.logDir, logger: ctx.logger, nodeBinary });
  ctx.children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitReady(`${url}/healthz`, child, 'the exporter');
  return { url, metrics: `${url}/metrics`, config, log: child.logFile };
}

function describeDomain(d: DomainEndpoints): string[] {
  return [
    `trust domain ${d.trustDomain}`,
    `  server     ${d.server.address}  admin ${d.server.adminSocket}`,
    `             ready ${d.server.health}  metrics ${d.server.metrics}`,
    `             bundle endpoint ${d.server.bundleEndpoint} (https_spiffe)`,
    ...d.agents.flatMap((a) => [`  ${a.name.padEnd(10)} ${a.spiffeId}`, `             workload API unix://${a.socketPath}`, `             ready ${a.health}  metrics ${a.metrics}`, `             server via fault relay ${a.relay.address} (control ${a.relay.control}/mode)`]),
    ...d.workloads.map((w) => `  ${w.name.padEnd(10)} ${w.spiffeId} via ${w.agent} (${w.selectors.join(', ')})`),
  ];
}

function describe(e: Endpoints): string[] {
  return [
    'svidscope is up',
    '',
    ...describeDomain(e),
    ...(e.peer ? ['', ...describeDomain(e.peer), '', `${e.trustDomain} and ${e.peer.trustDomain} federate both ways (workloads receive each other's bundle)`] : []),
    '',
    `prober     ${e.prober.url}  metrics ${e.prober.metrics}`,
    `           try ${e.prober.probe}`,
    `exporter   ${e.exporter.url}  metrics ${e.exporter.metrics}`,
    ...(e.monitoring && 'prometheus' in e.monitoring
      ? [`prometheus ${e.monitoring.prometheus}  (rules from alerts/, ${e.monitoring.alertProfile} profile; dashboards in dashboards/)`, `alerts     ${e.monitoring.alertmanager}`]
      : e.monitoring ? [`monitoring not started: ${e.monitoring.unavailable}`] : []),
    '',
    `endpoints: ${path.join(e.dataDir, 'endpoints.json')}   logs: ${path.join(e.dataDir, 'logs')}`,
    'try:  svidscope agent api fetch x509 --socket-path ' + (e.agents[0]?.socketPath ?? ''),
    'Ctrl-C stops everything.',
  ];
}
