/**
 * What the server's instrumentation costs: X509-SVID issuance through the server API with the
 * metric hooks on and off, in the same run, alternating rounds so drift hits both alike. Server
 * and client share this process (one core each is not guaranteed), so compare the ratio, not the
 * absolute rates (see `issuance` for those).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildServerConfig } from '../src/identity-plane/server/config.js';
import { startServer, type RunningServer } from '../src/identity-plane/server/server.js';
import { createCsr } from '../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../src/identity-plane/spiffe/mint/keys.js';
import { connectAdmin } from '../src/cli/admin/client.js';
import { attestAgentAt, bundlePemOf, nodeClient } from '../test/support/server.js';
import type { BenchContext, BenchFigures } from './run.js';

const ROUNDS = 4;
const ROUND_SECONDS = 2;
const CONCURRENCY = 16;

async function setup(withoutMetrics: boolean, dir: string) {
  const server = await startServer(buildServerConfig({ trust_domain: 'example.org', data_dir: dir, bind: '127.0.0.1:0', health_bind: '' }), { withoutMetrics });
  const admin = connectAdmin(server.adminSocket);
  const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
  const agent = await attestAgentAt(server.address, bundlePemOf(server), token.value);
  const entry = await admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/bench', parent_id: agent.spiffeId, selectors: [{ type: 'unix', value: 'uid:1' }] } });
  admin.close();
  const client = nodeClient(server.address, bundlePemOf(server), agent);
  return { server, client, entryId: entry.id };
}

async function round(t: { client: ReturnType<typeof nodeClient>; entryId: string }, csrs: Buffer[]): Promise<number> {
  let issued = 0;
  const end = Date.now() + ROUND_SECONDS * 1000;
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENCY }, async (_, w) => {
    let i = w;
    while (Date.now() < end) {
      const res = await t.client.call<{ results: { status_code: number }[] }>('BatchNewX509SVID', { params: [{ entry_id: t.entryId, csr: csrs[i++ % csrs.length] }] });
      if (res.results[0].status_code === 0) issued++;
    }
  }));
  return issued / (Number(process.hrtime.bigint() - start) / 1e9);
}

export default async function instrumentation(ctx: BenchContext): Promise<BenchFigures> {
  const dirs = [mkdtempSync(path.join(tmpdir(), 'svidscope-bench-on-')), mkdtempSync(path.join(tmpdir(), 'svidscope-bench-off-'))];
  const csrs = Array.from({ length: 64 }, () => {
    const k = generateKeyPair();
    return createCsr(k.privateKey, k.publicKey);
  });
  const on = await setup(false, dirs[0]);
  const off = await setup(true, dirs[1]);
  const servers: RunningServer[] = [on.server, off.server];
  try {
    const rates = { on: [] as number[], off: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      rates.on.push(await round(on, csrs));
      rates.off.push(await round(off, csrs));
      ctx.log(`round ${r + 1}: metrics on ${rates.on[r].toFixed(0)} SVIDs/s, off ${rates.off[r].toFixed(0)} SVIDs/s`);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const ratio = mean(rates.on) / mean(rates.off);
    ctx.log(`instrumented / uninstrumented issuance throughput: ${ratio.toFixed(3)} (overhead ${((1 - ratio) * 100).toFixed(1)} %)`);
    return { metricsOnSvidsPerSecond: Math.round(mean(rates.on)), metricsOffSvidsPerSecond: Math.round(mean(rates.off)), onOffRatio: +ratio.toFixed(3) };
  } finally {
    on.client.close();
    off.client.close();
    for (const s of servers) await s.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
