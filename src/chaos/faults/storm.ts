import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import { bareClientArgs } from '../../identity-plane/workload-api/index.js';
import type { MethodStep } from '../experiment/schema.js';
import { component, type StackComponent, type StackView } from '../stack.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Storm = Extract<MethodStep, { fault: 'issuance-storm' }>;

interface ClientResult { ok: boolean; at: number; id?: string; error?: string; attempts?: number }

/** The agent's SPIFFE ID, its server and trust domain, from endpoints.json. */
function agentDomain(stack: StackView, agent: StackComponent): { agentId: string; server: StackComponent; trustDomain: string } {
  type Agents = { name: string; spiffeId?: string }[];
  const domains: [string, { trustDomain: string; agents: Agents }][] = [['server', stack.endpoints as { trustDomain: string; agents: Agents }]];
  if (stack.endpoints.peer) domains.push(['peer-server', stack.endpoints.peer as { trustDomain: string; agents: Agents }]);
  for (const [serverName, d] of domains) {
    const a = d.agents.find((x) => x.name === agent.name);
    if (!a) continue;
    if (!a.spiffeId) throw new SvidscopeError('chaos-target-invalid', `chaos: endpoints.json has no spiffeId for ${agent.name}`);
    return { agentId: a.spiffeId, server: component(stack, serverName), trustDomain: d.trustDomain };
  }
  throw new SvidscopeError('chaos-target-invalid', `chaos: ${agent.name} is not an agent of this stack`);
}

const percentile = (xs: number[], p: number) => xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] : null;

/**
 * Issuance storm: N workloads start at once on one agent. N entries are registered under the
 * agent, each for `unix:uid:<harness uid>` + `unix:path:<hard link of a node binary>` (agents of
 * `svidscope up` discover workload paths), then N bare Workload API clients (workload-api/bare-client.ts) start at the same
 * moment, each exec'd through its own hard link. The run output records how long until every
 * client held an SVID. Rollback: kill the clients (matched by an exact argv marker), delete the
 * entries, remove the links; each step is idempotent.
 */
export const issuanceStorm: FaultKindImpl<Storm> = {
  plan: (s) => ({
    inject: `register ${s.count} entries under ${s.agent} (uid + distinct binary path each) and start ${s.count} Workload API clients at once; record the time until all hold an X.509-SVID (timeout ${s.timeoutMs / 1000}s)`,
    rollback: `kill the clients, delete the ${s.count} entries, remove the binary links`,
  }),
  async prepare(s: Storm, ctx: FaultContext): Promise<PreparedFault> {
    const agent = component(ctx.stack, s.agent);
    if (!agent.socketPath) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.agent} has no Workload API socket in endpoints.json`);
    const { agentId, server, trustDomain } = agentDomain(ctx.stack, agent);
    const tag = `${path.basename(ctx.backupDir)}-${s.name}`.replace(/[^A-Za-z0-9._-]/g, '-');
    const dir = path.join(ctx.backupDir, `storm-${tag}`);
    const marker = `--svidscope-chaos-storm=${tag}`;
    const uid = process.getuid?.() ?? 0;
    const links = Array.from({ length: s.count }, (_, i) => path.join(dir, `node-${i}`));
    const ids = links.map((_, i) => `spiffe://${trustDomain}/chaos/storm/${tag}/${i}`);
    const pids: number[] = [];
    return {
      target: agent.name,
      rollback: [{ op: 'kill-marked', marker }, { op: 'delete-entries', adminSocket: server.adminSocket!, spiffeIds: ids }, { op: 'remove-path', path: dir }],
      async apply() {
        mkdirSync(dir, { recursive: true });
        const node = path.join(dir, 'node');
        if (!existsSync(node)) {
          copyFileSync(process.execPath, node);
          chmodSync(node, 0o755);
        }
        for (const l of links) if (!existsSync(l)) linkSync(node, l);
        const clientArgs = await bareClientArgs(dir, ['first-svid', agent.socketPath!, String(s.timeoutMs), marker]);
        const t0 = ctx.clock.nowMs();
        const admin = connectAdmin(server.adminSocket!);
        try {
          await Promise.all(links.map((l, i) => admin.call('CreateEntry', { entry: { spiffe_id: ids[i], parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }, { type: 'unix', value: `path:${l}` }] } })));
        } finally {
          admin.close();
        }
        const registeredMs = ctx.clock.nowMs() - t0;
        // The clients stamp their results with the wall clock of their own process: the start is read from it too.
        const started = Date.now();
        const results = await Promise.all(links.map((l) => new Promise<ClientResult>((resolve) => {
          const child = spawn(l, clientArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
          if (child.pid) pids.push(child.pid);
          let out = '';
          let err = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.stderr.on('data', (d: Buffer) => (err += d.toString()));
          child.on('error', (e) => resolve({ ok: false, at: Date.now(), error: e.message }));
          child.on('close', () => {
            try {
              resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as ClientResult);
            } catch {
              resolve({ ok: false, at: Date.now(), error: `client exited without a result: ${err.trim().split('\n').slice(-1)[0] ?? ''}` });
            }
          });
        })));
        const ok = results.filter((r) => r.ok).map((r) => r.at - started);
        const errors = [...new Set(results.filter((r) => !r.ok).map((r) => r.error ?? '?'))].slice(0, 3);
        return {
          agent: agent.name, count: s.count, registeredMs, issued: ok.length, failed: s.count - ok.length,
          allIssuedMs: ok.length === s.count ? Math.max(...ok) : null,
          p50Ms: percentile(ok, 0.5), p90Ms: percentile(ok, 0.9), errors,
        };
      },
      async release() {
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      },
    };
  },
};
