import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import type { MethodStep } from '../experiment/schema.js';
import { FaultProxy, parseHostPort } from '../fault-proxy.js';
import { httpOk, isAlive, respawn, signal, snapshot, waitFor } from '../proc.js';
import { component } from '../stack.js';
import { livenessUrl, onePid } from './process.js';
import { startStep, type FaultContext, type FaultKindImpl, type PreparedFault } from './types.js';

type Net = Extract<MethodStep, { fault: 'network' }>;

/**
 * Partition / latency / reset between one agent and its server. `svidscope up` points agents
 * straight at the server, so the harness puts an in-process fault proxy in front of the server,
 * rewrites the agent's `server_address` to the proxy and restarts the agent (it keeps its SVID on
 * disk, so no new join token is needed). The rollback restores the config file, restarts the agent
 * on the real address and closes the proxy. If the harness dies, the proxy dies with it (a
 * partition that never heals by itself); `chaos recover` restores the config and restarts the agent.
 */
export const network: FaultKindImpl<Net> = {
  plan: (s) => ({
    inject: `start a fault proxy to the server, point ${s.agent} at it (config rewrite + restart), then ${s.mode === 'latency' ? `add ${s.latencyMs} ms latency per chunk` : s.mode}`,
    rollback: `restore ${s.agent}'s config, restart it on the real server address, close the proxy`,
  }),
  async prepare(s: Net, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.agent);
    const pid = onePid(c);
    const snap = snapshot(pid);
    const config = c.config!;
    const doc = parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
    const upstream = parseHostPort(String(doc.server_address));
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
        writeFileSync(`${config}.chaos-tmp`, stringify({ ...doc, server_address: proxy.address }));
        renameSync(`${config}.chaos-tmp`, config);
        signal(pid, 'SIGKILL');
        await waitFor(() => !isAlive(pid), 5_000);
        const newPid = respawn(snap, c.log);
        // Liveness, not readiness: behind a partition the agent cannot complete the sync /ready waits for.
        const live = livenessUrl(c);
        if (live) await waitFor(() => httpOk(live), 30_000, 250);
        proxy.setMode(s.mode === 'latency' ? { kind: 'latency', ms: s.latencyMs } : { kind: s.mode });
        return { proxy: proxy.address, upstream: `${upstream.host}:${upstream.port}`, mode: s.mode, agentPid: newPid };
      },
      release: () => proxy.stop(),
    };
  },
};
