/**
 * The agent's Workload API under load, with a real server and agent in this process (SQLite),
 * real gRPC over the agent's Unix socket and kernel attestation of every caller:
 * - FetchX509SVID time to first message, p50/p99, with 1, 100 and 1,000 concurrent streams
 *   (spread over 10 client channels, as that many workloads would open);
 * - agent heap per cached X509-SVID (10,000 entries for one agent, measured after GC);
 * - time for the agent to rotate all 10,000 cached SVIDs (forced rotation: new keys, CSRs in
 *   batches of 500 through the server, cache updated).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { nullLogger } from '../src/common/log.js';
import { buildAgentConfig } from '../src/identity-plane/agent/config.js';
import { startAgent } from '../src/identity-plane/agent/agent.js';
import { buildServerConfig } from '../src/identity-plane/server/config.js';
import { startServer } from '../src/identity-plane/server/server.js';
import { x509BundleToPem } from '../src/identity-plane/spiffe/bundle/index.js';
import { bareClientArgs, createWorkloadApiClient } from '../src/identity-plane/workload-api/index.js';
import { connectAdmin } from '../src/cli/admin/client.js';
import { writeFileSync } from 'node:fs';
import { execa } from 'execa';
import type { BenchContext, BenchFigures } from './run.js';


const ENTRIES = 10_000;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export default async function workloadApi(ctx: BenchContext): Promise<BenchFigures> {
  if (!(globalThis as { gc?: unknown }).gc) v8.setFlagsFromString('--expose-gc');
  const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-bench-wl-'));
  const figures: BenchFigures = {};
  const server = await startServer(buildServerConfig({ trust_domain: 'example.org', data_dir: path.join(dir, 'server'), bind: '127.0.0.1:0', health_bind: '', cache_reload_interval: '1h' }));
  const admin = connectAdmin(server.adminSocket);
  try {
    writeFileSync(path.join(dir, 'bundle.pem'), x509BundleToPem(server.bundles.current));
    const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
    const agentId = `spiffe://example.org/spire/agent/join_token/${token.value}`;
    const agentConfig = buildAgentConfig({
      trust_domain: 'example.org', server_address: server.address, data_dir: path.join(dir, 'agent'), trust_bundle_path: path.join(dir, 'bundle.pem'),
      join_token: token.value, health_bind: '', sync_interval: '1h',
    });
    const agent = await startAgent(agentConfig, { logger: nullLogger() });
    try {
      // One entry for this process (uid 0 or whoever runs the bench), then 10,000 more for other uids.
      const uid = process.getuid?.() ?? 0;
      await admin.call('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/bench/me', parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] } });
      gc();
      const heapEmpty = process.memoryUsage().heapUsed;
      let t = Date.now();
      for (let i = 0; i < ENTRIES; i += 200) {
        await Promise.all(Array.from({ length: Math.min(200, ENTRIES - i) }, (_, j) => admin.call('CreateEntry', {
          entry: { spiffe_id: `spiffe://example.org/bench/w${i + j}`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${100_000 + i + j}` }] },
        })));
      }
      ctx.log(`created ${ENTRIES} entries in ${((Date.now() - t) / 1000).toFixed(1)} s`);
      await server.tick();
      t = Date.now();
      await agent.manager.syncOnce();
      const firstMint = (Date.now() - t) / 1000;
      ctx.log(`agent minted ${agent.cache.svidCount} SVIDs in ${firstMint.toFixed(1)} s (first sync)`);
      gc();
      const perSvid = (process.memoryUsage().heapUsed - heapEmpty) / agent.cache.svidCount;
      ctx.log(`agent heap per cached SVID (entry + chain + key, incl. the server's entry copy in this process): ${(perSvid / 1024).toFixed(2)} KiB`);
      figures.svidsCached = agent.cache.svidCount;
      figures.heapBytesPerCachedSvid = Math.round(perSvid);
      figures.firstSyncMintSeconds = +firstMint.toFixed(2);

      agent.manager.forceRotation();
      t = Date.now();
      await agent.manager.syncOnce();
      const rotation = (Date.now() - t) / 1000;
      ctx.log(`forced rotation of ${agent.cache.svidCount} cached SVIDs: ${rotation.toFixed(2)} s (${(agent.cache.svidCount / rotation).toFixed(0)} SVIDs/s)`);
      figures.rotate10kSeconds = +rotation.toFixed(2);

      // The client is a separate process, the bare client script, so only the agent's work is timed.
      const sanity = createWorkloadApiClient({ address: `unix://${agentConfig.socketPath}`, deadlineMs: 10_000 });
      if ((await sanity.fetchX509Context()).svids.length !== 1) throw new Error('the bench process did not get its SVID');
      sanity.close();
      // 10 channels: workloads opening many streams each (one attestation per connection's burst).
      // 1,000 channels: as many connections as streams, each attested on its own, as 1,000
      // separate workload processes would be. Agent CPU per stream is reported beside the
      // latencies because it holds on a busy machine, where wall-clock latency does not.
      const bareClient = await bareClientArgs(dir, []);
      for (const [streams, channels] of [[1, 1], [100, 10], [1000, 10], [1000, 1000]]) {
        const cpuBefore = process.cpuUsage();
        const out = await execa(process.execPath, [...bareClient, 'streams', agentConfig.socketPath, String(streams), String(channels)]);
        const cpu = process.cpuUsage(cpuBefore);
        const { latencies, errors } = JSON.parse(String(out.stdout)) as { latencies: number[]; errors: number };
        if (errors > 0 || latencies.length !== streams) throw new Error(`${errors} of ${streams} streams failed`);
        latencies.sort((a, b) => a - b);
        const [p50, p99] = [percentile(latencies, 50), percentile(latencies, 99)];
        const cpuPerStreamMs = (cpu.user + cpu.system) / 1000 / streams;
        const name = `streams${streams}x${channels}ch`;
        ctx.log(`${String(streams).padStart(4)} concurrent FetchX509SVID streams over ${channels} channels: first message p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms; agent CPU ${cpuPerStreamMs.toFixed(3)} ms per stream`);
        Object.assign(figures, { [`${name}FirstMessageP50Ms`]: +p50.toFixed(2), [`${name}FirstMessageP99Ms`]: +p99.toFixed(2), [`${name}AgentCpuMsPerStream`]: +cpuPerStreamMs.toFixed(3) });
      }
    } finally {
      await agent.stop();
    }
  } finally {
    admin.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return figures;
}
