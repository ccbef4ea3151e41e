import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import type { MethodStep } from '../experiment/schema.js';
import { FaultProxy, parseHostPort, type ProxyMode } from '../fault-proxy.js';
import { relayMode } from '../relay.js';
import { httpOk, isAlive, respawn, signal, snapshot, waitFor } from '../proc.js';
import { component, type StackComponent } from '../stack.js';
import { onePid } from './process.js';
import { startStep, type FaultContext, type FaultKindImpl, type PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Net = Extract<MethodStep, { fault: 'network' }>;

/**
 * Partition / latency / reset between one agent and its server. `svidscope up` gives every agent
 * a fault relay to its server: the harness sets the relay's mode and the agent notices nothing but
 * the network (no restart, its cache intact); the rollback sets it back to pass-through, and the
 * relay keeps the fault if the harness dies, until `chaos recover` clears it.
 *
 * A stack without relays (an older `svidscope up`, or one assembled by hand) gets the fallback: an
 * in-process fault proxy in front of the server, the agent's `server_address` rewritten to it and
 * the agent restarted (it keeps its SVID on disk, so no join token is needed, but its cache is
 * lost). The rollback restores the config, restarts the agent on the real address and closes the
 * proxy; if the harness dies, the proxy dies with it, and `chaos recover` restores the config.
 */
export const network: FaultKindImpl<Net> = {
  plan: (s, stack) => {
    const action = s.mode === 'latency' ? `add ${s.latencyMs} ms latency per chunk` : s.mode;
    return stack?.components.get(s.agent)?.relayControl
      ? { inject: `set ${s.agent}'s fault relay to the server to ${action} (no restart)`, rollback: `set the relay back to pass-through` }
      : { inject: `start a fault proxy to the server, point ${s.agent} at it (config rewrite + restart), then ${action}`, rollback: `restore ${s.agent}'s config, restart it on the real server address, close the proxy` };
  },
  async prepare(s: Net, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.agent);
    const mode: ProxyMode = s.mode === 'latency' ? { kind: 'latency', ms: s.latencyMs } : { kind: s.mode };
    if (c.relayControl) {
      const control = c.relayControl;
      const current = await relayMode(control);
      // A fault already set (by hand, or by a harness whose ledger is gone) is not ours to undo.
      if (current.kind !== 'pass') throw new SvidscopeError('chaos-target-invalid', `chaos: ${c.name}'s fault relay is already in mode ${current.kind}; clear it first (PUT ${control}/mode {"kind":"pass"})`);
      return {
        target: c.name,
        rollback: [{ op: 'relay-pass', control, agent: c.name }],
        async apply() {
          await relayMode(control, mode);
          return { relay: control, mode: s.mode, ...(s.mode === 'latency' ? { latencyMs: s.latencyMs } : {}) };
        },
      };
    }
    return proxiedWithRestart(s, c, mode, ctx);
  },
};

/** The fallback for agents without a relay: a fault proxy, a config rewrite and a restart. */
async function proxiedWithRestart(s: Net, c: StackComponent, mode: ProxyMode, ctx: FaultContext): Promise<PreparedFault> {
  {
    const pid = onePid(c);
    const snap = snapshot(pid);
    const config = c.config!;
    const doc = parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
    // A list of servers (failover): the fault stands in for the preferred one, the first.
    const configured = Array.isArray(doc.server_address) ? doc.server_address[0] : String(doc.server_address).split(',')[0];
    const upstream = parseHostPort(String(configured).trim());
    const proxy = new FaultProxy(upstream);
    mkdirSync(ctx.backupDir, { recursive: true });
    const backup = path.join(ctx.backupDir, `${path.basename(config)}.orig`);
    return {
      target: c.name,
      rollback: [{ op: 'restore-file', path: config, backup }, startStep(c, snap, true)],
      async apply() {
        await proxy.start();
        if (!existsSync(backup)) {
          copyFileSync(config, `${backup}.tmp`);
          renameSync(`${backup}.tmp`, backup);
        }
        // Runs as root in the stack's data dir: an exclusive temp file, never a planted symlink.
        writeFileAtomic(config, stringify({ ...doc, server_address: proxy.address }), 0o644);
        signal(pid, 'SIGKILL');
        await waitFor(() => !isAlive(pid), 5_000, undefined, ctx.clock);
        const newPid = respawn(snap, c.log);
        // Liveness, not readiness: behind a partition the agent cannot complete the sync /ready waits for.
        if (c.live) await waitFor(() => httpOk(c.live!), 30_000, 250, ctx.clock);
        proxy.setMode(mode);
        return { proxy: proxy.address, upstream: `${upstream.host}:${upstream.port}`, mode: s.mode, agentPid: newPid };
      },
      release: () => proxy.stop(),
    };
  }
}
