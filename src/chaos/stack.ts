import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SvidscopeError } from '../common/errors/catalog.js';
import { findPids, httpOk } from './proc.js';

/**
 * The stack under test, as `svidscope up` describes it in `<dataDir>/endpoints.json`. The harness
 * reads only this file (never the up.ts types) so it also works against a stack it did not start.
 */
export interface StackComponent {
  name: string;
  kind: 'server' | 'agent' | 'workload' | 'prober' | 'exporter';
  /** The argv element that identifies the process (its config path, or the workload's --name). */
  config?: string;
  /** For workloads: the `--name` value. */
  workloadName?: string;
  /** Readiness (servers, agents) or health (prober, exporter) endpoint. */
  health?: string;
  /** Liveness: answers while the process runs, even when it cannot become ready (an agent cut off from its server). */
  live?: string;
  log?: string;
  /** Servers: the admin socket; agents: the server address they dial. */
  adminSocket?: string;
  serverAddress?: string;
  socketPath?: string;
  dataDir?: string;
  /** Servers and agents: their trust domain. */
  trustDomain?: string;
  /** Agents: the control URL of the fault relay `svidscope up` put between the agent and its server. */
  relayControl?: string;
  /** Servers: the PEM of their X.509 authorities that `svidscope up` wrote at start (`<dataDir>/<server>-bundle.pem`; agents bootstrap from it). */
  bundlePem?: string;
}

export interface StackView {
  dataDir: string;
  endpoints: EndpointsFile;
  components: Map<string, StackComponent>;
}

interface DomainFile {
  trustDomain: string;
  server: { address: string; adminSocket: string; health: string; log: string };
  agents: { name: string; socketPath: string; health: string; log: string; relay?: { address: string; control: string } }[];
  workloads: { name: string; agent: string; log: string }[];
}
export interface EndpointsFile extends DomainFile {
  dataDir: string;
  prober: { url: string; config: string; log: string };
  exporter: { url: string; config: string; log: string };
  peer?: DomainFile;
}

export function loadStack(dataDir: string): StackView {
  const file = path.join(dataDir, 'endpoints.json');
  if (!existsSync(file)) throw new SvidscopeError('not-found', `chaos: ${file} not found: is \`svidscope up --data-dir ${dataDir}\` running?`);
  const endpoints = JSON.parse(readFileSync(file, 'utf8')) as EndpointsFile;
  const components = new Map<string, StackComponent>();
  // Servers and agents serve /live beside /ready on the same ops address.
  const liveOf = (ready: string) => ready.replace(/\/ready$/, '/live');
  const domain = (d: DomainFile, serverName: string) => {
    components.set(serverName, { name: serverName, kind: 'server', config: path.join(dataDir, `${serverName}.yaml`), health: d.server.health, live: liveOf(d.server.health), log: d.server.log, adminSocket: d.server.adminSocket, serverAddress: d.server.address, dataDir: path.join(dataDir, serverName), trustDomain: d.trustDomain, bundlePem: path.join(dataDir, `${serverName}-bundle.pem`) });
    for (const a of d.agents) components.set(a.name, { name: a.name, kind: 'agent', config: path.join(dataDir, `${a.name}.yaml`), health: a.health, live: liveOf(a.health), log: a.log, serverAddress: d.server.address, socketPath: a.socketPath, dataDir: path.join(dataDir, a.name), trustDomain: d.trustDomain, relayControl: a.relay?.control });
    for (const w of d.workloads) components.set(w.name, { name: w.name, kind: 'workload', workloadName: w.name, log: w.log });
  };
  domain(endpoints, 'server');
  if (endpoints.peer) domain(endpoints.peer, 'peer-server');
  components.set('prober', { name: 'prober', kind: 'prober', config: endpoints.prober.config, health: `${endpoints.prober.url}/live`, live: `${endpoints.prober.url}/live`, log: endpoints.prober.log });
  components.set('exporter', { name: 'exporter', kind: 'exporter', config: endpoints.exporter.config, health: `${endpoints.exporter.url}/healthz`, live: `${endpoints.exporter.url}/healthz`, log: endpoints.exporter.log });
  return { dataDir, endpoints, components };
}

export function component(stack: StackView, name: string): StackComponent {
  const c = stack.components.get(name);
  if (!c) throw new SvidscopeError('not-found', `chaos: no component '${name}' in ${stack.dataDir}/endpoints.json (have: ${[...stack.components.keys()].join(', ')})`);
  return c;
}

/** Matches the component's own process by an exact argv element (never a substring). */
export function argvMatcher(c: Pick<StackComponent, 'config' | 'workloadName'>): (argv: string[]) => boolean {
  if (c.config) return (argv) => argv.includes(c.config!) && argv.includes('run');
  const name = c.workloadName!;
  return (argv) => argv.includes('sample') && argv.some((a, i) => a === name && argv[i - 1] === '--name');
}

export function componentPids(c: StackComponent): number[] {
  return findPids(argvMatcher(c));
}

export async function componentHealthy(c: StackComponent): Promise<boolean> {
  if (c.health) return httpOk(c.health);
  return componentPids(c).length > 0;
}
