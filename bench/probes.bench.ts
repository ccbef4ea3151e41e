/**
 * Synthetic probe cost and prober throughput, against a real server and agent running as their own
 * processes (so the figures below are the prober's, and the agent's CPU is read from /proc):
 * - CPU time (user + system of this process) per probe of each module, sequential, after warm-up;
 *   the bundle endpoint is a small HTTPS server in this process, so its serving cost is included;
 * - the rate one prober sustains against one agent through `/probe` (HTTP, as Prometheus calls
 *   it) at several concurrencies, with the agent's CPU per probe;
 * - baseline in the same run: one foundation verifyX509Svid call (what validation alone costs).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createSpiffeBundle, spiffeBundleToJson } from '../src/identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../src/identity-plane/spiffe/x509/index.js';
import { parseSpiffeId, mustTrustDomain } from '../src/identity-plane/spiffe/id/index.js';
import { serverSpiffeIdString } from '../src/identity-plane/server-api/server-id.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../src/identity-plane/spiffe/mint/index.js';
import { verifyX509Svid } from '../src/identity-plane/spiffe/x509svid/index.js';
import { createWorkloadApiClient } from '../src/identity-plane/workload-api/index.js';
import { buildModule, buildProberConfig, runProbe, startProber, type ModuleConfig } from '../src/probes/index.js';
import { startStack, TD } from '../test/probes/support/stack.js';
import type { BenchContext, BenchFigures } from './run.js';

const CLIENT = `spiffe://${TD}/probe/client`;
const SERVER = `spiffe://${TD}/probe/server`;
const TICKS = 100; // USER_HZ on Linux

function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function costOf(module: ModuleConfig, target: string, n: number): Promise<{ cpuMs: number; p50Ms: number }> {
  for (let i = 0; i < Math.min(5, n); i++) await runProbe(module, target); // warm-up
  const walls: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await runProbe(module, target);
    walls.push(performance.now() - t);
    if (!r.success) throw new Error(`${module.kind} failed during the bench: ${r.reason}: ${r.message}`);
  }
  const cpu = process.cpuUsage(cpu0);
  walls.sort((a, b) => a - b);
  return { cpuMs: (cpu.user + cpu.system) / 1000 / n, p50Ms: percentile(walls, 50) };
}

export default async function probes(ctx: BenchContext): Promise<BenchFigures> {
  const figures: BenchFigures = {};
  const stack = await startStack({ rootEntries: { '/probe/client': {}, '/probe/server': {} } });
  const agentPid = stack.agent.child.pid!;
  // A bundle endpoint for the bundle_endpoint module: HTTPS in this process.
  const ca = createSelfSignedCa({ trustDomain: TD, ttlSeconds: 86400, now: new Date() });
  const key = generateKeyPair('ec-p256');
  const leaf = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey }).mint({ id: parseSpiffeId(serverSpiffeIdString(TD)), publicKey: key.publicKey, ttlSeconds: 3600, now: new Date(), dnsNames: ['localhost'] });
  const doc = spiffeBundleToJson(createSpiffeBundle({ trustDomain: mustTrustDomain(TD), x509Authorities: [ca.certificate], sequenceNumber: 1, refreshHintSeconds: 300 }));
  const web = https.createServer({ cert: encodePem('CERTIFICATE', leaf.der), key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) }, (_req, res) => res.end(doc));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  const caFile = path.join(stack.dir, 'web-ca.pem');
  writeFileSync(caFile, encodePem('CERTIFICATE', ca.der));
  const bundleUrl = `https://localhost:${(web.address() as AddressInfo).port}/bundle`;
  try {
    // Baseline: the foundation's X509-SVID validation alone.
    const c = createWorkloadApiClient({ address: stack.address });
    const x = await c.fetchX509Context();
    c.close();
    const svid = x.svids[0];
    const N = 2000;
    let t = performance.now();
    for (let i = 0; i < N; i++) verifyX509Svid(svid.certificates, x.bundles, { now: new Date() });
    figures.verifyX509SvidMicros = +(((performance.now() - t) * 1000) / N).toFixed(1);
    ctx.log(`baseline verifyX509Svid: ${figures.verifyX509SvidMicros} µs per call`);

    const modules: Array<[string, ModuleConfig, string, number]> = [
      ['x509_svid', buildModule('x', 'x509_svid', { expected_spiffe_id: CLIENT }), stack.address, 300],
      ['jwt_svid', buildModule('j', 'jwt_svid', { spiffe_id: CLIENT }), stack.address, 200],
      ['mtls', buildModule('m', 'mtls', { client_spiffe_id: CLIENT, server_spiffe_id: SERVER }), stack.address, 200],
      ['bundle_endpoint', buildModule('b', 'bundle_endpoint', { trust_domain: TD, ca_file: caFile }), bundleUrl, 300],
      ['rotation_watch', buildModule('r', 'rotation_watch', { duration: '0s' }), stack.address, 200],
    ];
    for (const [name, module, target, n] of modules) {
      const agentCpu0 = cpuSecondsOf(agentPid);
      const cost = await costOf(module, target, n);
      const agentMs = ((cpuSecondsOf(agentPid) - agentCpu0) * 1000) / (n + Math.min(5, n));
      figures[`${name}CpuMsPerProbe`] = +cost.cpuMs.toFixed(2);
      figures[`${name}P50Ms`] = +cost.p50Ms.toFixed(2);
      if (name !== 'bundle_endpoint') figures[`${name}AgentCpuMsPerProbe`] = +agentMs.toFixed(2);
      ctx.log(`${name.padEnd(16)} prober CPU ${cost.cpuMs.toFixed(2)} ms/probe, wall p50 ${cost.p50Ms.toFixed(2)} ms${name === 'bundle_endpoint' ? ' (HTTPS server in-process)' : `, agent CPU ${agentMs.toFixed(2)} ms/probe`}`);
    }

    // Throughput through /probe, as Prometheus would drive it.
    const prober = await startProber(buildProberConfig({ listen: '127.0.0.1:0', modules: { x: { prober: 'x509_svid', x509_svid: { expected_spiffe_id: CLIENT } }, m: { prober: 'mtls', mtls: { client_spiffe_id: CLIENT, server_spiffe_id: SERVER } } } }));
    try {
      for (const [module, conc] of [['x', 1], ['x', 8], ['x', 32], ['m', 8]] as const) {
        const url = `${prober.url}/probe?module=${module}&target=${encodeURIComponent(stack.address)}`;
        const seconds = 4;
        let ok = 0;
        let bad = 0;
        const lat: number[] = [];
        const until = performance.now() + seconds * 1000;
        const agentCpu0 = cpuSecondsOf(agentPid);
        const cpu0 = process.cpuUsage();
        t = performance.now();
        await Promise.all(Array.from({ length: conc }, async () => {
          while (performance.now() < until) {
            const s = performance.now();
            const body = await (await fetch(url)).text();
            lat.push(performance.now() - s);
            if (/^probe_success 1$/m.test(body)) ok++;
            else bad++;
          }
        }));
        const wall = (performance.now() - t) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const agentCpu = cpuSecondsOf(agentPid) - agentCpu0;
        lat.sort((a, b) => a - b);
        const kind = module === 'x' ? 'x509' : 'mtls';
        const rate = ok / wall;
        figures[`probe_${kind}_c${conc}_perSecond`] = Math.round(rate);
        figures[`probe_${kind}_c${conc}_p99Ms`] = +percentile(lat, 99).toFixed(1);
        figures[`probe_${kind}_c${conc}_failures`] = bad;
        ctx.log(`/probe ${kind} concurrency ${String(conc).padStart(2)}: ${rate.toFixed(0)} probes/s, p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms, ${bad} failed; prober CPU ${((cpu.user + cpu.system) / 1e6 / wall * 100).toFixed(0)} %, agent CPU ${(agentCpu / wall * 100).toFixed(0)} %`);
      }
    } finally {
      await prober.stop();
    }
  } finally {
    await new Promise((r) => web.close(r));
    await stack.stop();
  }
  return figures;
}
