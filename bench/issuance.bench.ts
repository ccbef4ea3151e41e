/**
 * X509-SVID issuance through the server API: CSR in, SVID out, over gRPC with mTLS, with the
 * agent authentication (datastore lookup) and the entry authorization on every request, exactly
 * as an agent calls BatchNewX509SVID. The server runs as its own process (`svidscope server run`,
 * SQLite), the client here; on this 2-core machine each gets a core.
 *
 * Baseline in the same run: raw ECDSA P-256 sign+verify pairs per second on one core, the
 * cryptographic floor of one issuance (the server signs; the TLS layer and CSR check verify).
 *
 * Two servers run side by side: `signing_workers: 0` (CSR checks and signatures on the server's
 * main thread: the one-core figure, comparable with earlier runs; its figures keep their names) and
 * the default pool of worker threads, one per core (the two-core figure, as `pool…`). Each phase
 * runs against one, then the other, seconds apart, and the batch phase alternates in rounds, so
 * load from other work on a shared machine falls on both alike. The client (this process) shares
 * the same two cores with the server under test.
 */
import { generateKeyPairSync, sign, verify, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { connectAdmin } from '../src/cli/admin/client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../src/identity-plane/spiffe/bundle/index.js';
import { createCsr } from '../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../src/identity-plane/spiffe/mint/keys.js';
import { attestAgentAt, nodeClient } from '../test/support/server.js';
import { freePort, httpOk, spawnCli, waitFor } from '../test/support/process.js';
import type { BenchContext, BenchFigures } from './run.js';
import { EXAMPLE_ORG } from '../test/support/trust-domains.js';

const LEVELS = [1, 16, 256];
const SECONDS_PER_LEVEL = 4;

/** Raw pairs per wall second, and CPU microseconds per pair (the second does not move with other load on the machine). */
function rawSignVerify(seconds: number): { perSecond: number; cpuUs: number } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const data = randomBytes(300);
  const end = Date.now() + seconds * 1000;
  let n = 0;
  const start = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  while (Date.now() < end) {
    for (let i = 0; i < 32; i++) verify('sha256', data, publicKey, sign('sha256', data, privateKey));
    n += 32;
  }
  const cpu = process.cpuUsage(cpu0);
  return { perSecond: n / (Number(process.hrtime.bigint() - start) / 1e9), cpuUs: (cpu.user + cpu.system) / n };
}

/** utime + stime of another process, in seconds (Linux). */
function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Target {
  readonly name: string;
  readonly proc: ReturnType<typeof spawnCli>;
  readonly dir: string;
  client: ReturnType<typeof nodeClient>;
  entryId: string;
}

/** A fresh server with `signingWorkers` (undefined = the default), an attested agent and one entry for it. */
async function startTarget(name: string, signingWorkers: number | undefined, csrs: Buffer[]): Promise<Target> {
  const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-bench-issuance-'));
  const [port, healthPort] = [await freePort(), await freePort()];
  const config = {
    trust_domain: 'example.org', data_dir: dir, bind: `127.0.0.1:${port}`, health_bind: `127.0.0.1:${healthPort}`, log_level: 'warn',
    ...(signingWorkers === undefined ? {} : { signing_workers: signingWorkers }),
  };
  writeFileSync(path.join(dir, 'server.yaml'), stringify(config));
  const proc = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')]);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${healthPort}/ready`), 60_000, proc.logs);
  const admin = connectAdmin(path.join(dir, 'admin.sock'));
  const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
  const bundlePem = x509BundleToPem(parseSpiffeBundle(EXAMPLE_ORG, bundle.document));
  const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
  const address = `127.0.0.1:${port}`;
  const agent = await attestAgentAt(address, bundlePem, token.value);
  const entry = await admin.call<{ id: string }>('CreateEntry', {
    entry: { spiffe_id: 'spiffe://example.org/bench', parent_id: agent.spiffeId, selectors: [{ type: 'unix', value: 'uid:1000' }] },
  });
  admin.close();
  const client = nodeClient(address, bundlePem, agent);
  // Warm up TLS and, with a pool, start its workers (they start at the first batch).
  await client.call('BatchNewX509SVID', { params: Array.from({ length: 64 }, (_, i) => ({ entry_id: entry.id, csr: csrs[i % csrs.length] })) });
  return { name, proc, dir, client, entryId: entry.id };
}

async function stopTarget(t: Target): Promise<void> {
  t.client.close();
  t.proc.child.kill('SIGTERM');
  await t.proc.child;
  rmSync(t.dir, { recursive: true, force: true });
}

/** `level` callers, one CSR per call, for SECONDS_PER_LEVEL. */
async function singleCsrPhase(ctx: BenchContext, t: Target, level: number, csrs: Buffer[]): Promise<BenchFigures> {
  const latencies: number[] = [];
  let issued = 0;
  let failed = 0;
  const end = Date.now() + SECONDS_PER_LEVEL * 1000;
  const started = process.hrtime.bigint();
  const caller = async (w: number) => {
    let i = w;
    while (Date.now() < end) {
      const t0 = process.hrtime.bigint();
      const res = await t.client.call<{ results: { status_code: number }[] }>('BatchNewX509SVID', { params: [{ entry_id: t.entryId, csr: csrs[i++ % csrs.length] }] });
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (res.results[0].status_code === 0) issued++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: level }, (_, w) => caller(w)));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const rate = issued / seconds;
  const [p50, p99] = [percentile(latencies, 50), percentile(latencies, 99)];
  ctx.log(`  ${t.name}: concurrency ${String(level).padStart(3)}: ${rate.toFixed(0)} SVIDs/s, p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, failed ${failed}`);
  return { [`c${level}SvidsPerSecond`]: Math.round(rate), [`c${level}P50Ms`]: +p50.toFixed(2), [`c${level}P99Ms`]: +p99.toFixed(2), [`c${level}Failed`]: failed };
}

/**
 * Agents batch their CSRs (up to 500 per call); 50 per call at concurrency 4 shows the signing
 * path once the per-call gRPC cost is shared. Returns what one round measured.
 */
async function batchRound(t: Target, csrs: Buffer[], seconds: number): Promise<{ issued: number; seconds: number; serverCpu: number; clientCpuUs: number }> {
  const batch = 50;
  let issued = 0;
  const end = Date.now() + seconds * 1000;
  const started = process.hrtime.bigint();
  const serverCpu0 = cpuSecondsOf(t.proc.child.pid!);
  const clientCpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: 4 }, async (_, w) => {
    let i = w;
    while (Date.now() < end) {
      const res = await t.client.call<{ results: { status_code: number }[] }>('BatchNewX509SVID', { params: Array.from({ length: batch }, () => ({ entry_id: t.entryId, csr: csrs[i++ % csrs.length] })) });
      issued += res.results.filter((r) => r.status_code === 0).length;
    }
  }));
  const clientCpu = process.cpuUsage(clientCpu0);
  return { issued, seconds: Number(process.hrtime.bigint() - started) / 1e9, serverCpu: cpuSecondsOf(t.proc.child.pid!) - serverCpu0, clientCpuUs: clientCpu.user + clientCpu.system };
}

const BATCH_ROUNDS = 3;

export default async function issuance(ctx: BenchContext): Promise<BenchFigures> {
  // A pool of distinct CSRs made up front: the agent's key generation is not the server's cost.
  const csrs = Array.from({ length: 256 }, () => {
    const k = generateKeyPair();
    return createCsr(k.privateKey, k.publicKey);
  });
  const targets: Target[] = [];
  try {
    targets.push(await startTarget('one core', 0, csrs));
    targets.push(await startTarget(`pool of ${availableParallelism()}`, undefined, csrs));
    const [oneCore, pool]: BenchFigures[] = [{}, {}];
    const figuresOf = (t: Target) => (t === targets[0] ? oneCore : pool);
    // Other work on a shared machine moves wall-clock rates by tens of percent within a minute, so
    // the baseline is measured before and after the series and averaged; the CPU figures beside it
    // (server CPU per SVID against CPU per raw pair) do not depend on that load.
    const before = rawSignVerify(2);
    ctx.log(`raw ECDSA P-256 sign+verify: ${before.perSecond.toFixed(0)}/s (one core), ${before.cpuUs.toFixed(1)} µs CPU per pair`);
    ctx.log(`servers: "one core" = signing_workers 0 (signing on the main thread); "pool of ${availableParallelism()}" = the default signing pool`);
    for (const level of LEVELS) for (const t of targets) Object.assign(figuresOf(t), await singleCsrPhase(ctx, t, level, csrs));
    const sums = targets.map(() => ({ issued: 0, seconds: 0, serverCpu: 0, clientCpuUs: 0 }));
    for (let round = 0; round < BATCH_ROUNDS; round++) {
      for (const [k, t] of targets.entries()) {
        const r = await batchRound(t, csrs, SECONDS_PER_LEVEL / 2);
        for (const key of ['issued', 'seconds', 'serverCpu', 'clientCpuUs'] as const) sums[k][key] += r[key];
      }
    }
    for (const [k, t] of targets.entries()) {
      const { issued, seconds, serverCpu, clientCpuUs } = sums[k];
      const rate = issued / seconds;
      const serverCpuUs = (serverCpu * 1e6) / issued;
      ctx.log(`  ${t.name}: batches of 50, concurrency 4 (${BATCH_ROUNDS} alternating rounds): ${rate.toFixed(0)} SVIDs/s, server CPU ${serverCpuUs.toFixed(0)} µs per SVID (${(serverCpu / seconds).toFixed(2)} cores busy), client CPU ${(clientCpuUs / issued).toFixed(0)} µs per SVID`);
      Object.assign(figuresOf(t), {
        batch50SvidsPerSecond: Math.round(rate), batch50ServerCpuUsPerSvid: Math.round(serverCpuUs),
        batch50ServerCores: +(serverCpu / seconds).toFixed(2), batch50ClientCpuUsPerSvid: Math.round(clientCpuUs / issued),
      });
    }
    const after = rawSignVerify(2);
    ctx.log(`raw ECDSA P-256 sign+verify again: ${after.perSecond.toFixed(0)}/s, ${after.cpuUs.toFixed(1)} µs CPU per pair`);
    const raw = (before.perSecond + after.perSecond) / 2;
    const rawCpuUs = (before.cpuUs + after.cpuUs) / 2;
    const best = (f: BenchFigures) => Math.max(Number(f.batch50SvidsPerSecond), ...LEVELS.map((l) => Number(f[`c${l}SvidsPerSecond`])));
    const figures: BenchFigures = { ...oneCore };
    for (const [k, v] of Object.entries(pool)) figures[`pool${k[0].toUpperCase()}${k.slice(1)}`] = v;
    figures.poolWorkers = availableParallelism();
    figures.rawSignVerifyPerSecond = Math.round(raw);
    figures.rawSignVerifyCpuUs = +rawCpuUs.toFixed(1);
    figures.ratioBestToRaw = +(best(oneCore) / raw).toFixed(3);
    figures.poolRatioBestToRaw = +(best(pool) / raw).toFixed(3);
    // The server's CPU per SVID (at 50 per call) against one raw pair: the rate one server core would reach, as a fraction of the raw rate.
    figures.cpuRatioBatch50 = +(rawCpuUs / Number(oneCore.batch50ServerCpuUsPerSvid)).toFixed(3);
    figures.poolCpuRatioBatch50 = +(rawCpuUs / Number(pool.batch50ServerCpuUsPerSvid)).toFixed(3);
    ctx.log(`best issuance rate / raw sign+verify of one core: one core ${figures.ratioBestToRaw}, two cores (pool) ${figures.poolRatioBestToRaw}`);
    ctx.log(`raw pair CPU / server CPU per SVID (batches of 50): one core ${figures.cpuRatioBatch50}, pool ${figures.poolCpuRatioBatch50}`);
    return figures;
  } finally {
    for (const t of targets) await stopTarget(t);
  }
}
