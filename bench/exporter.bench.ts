/**
 * The exporter's scrape and memory with many observed SVIDs:
 * - 10,000 and 100,000 synthetic X509-SVIDs fed into the exporter's state as 10 Workload API
 *   sources over 3 trust domains would deliver them (full snapshots), then: time to ingest a
 *   snapshot, heap per observed SVID (after GC), /metrics render time p50/p99 (aggregate mode and
 *   per-SVID mode with its 1,000-series cap), body size;
 * - a files source over 10,000 and 100,000 real SVID files (minted, PEM): first poll (parse everything),
 *   a poll with nothing changed (one stat per file), and the scrape afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FakeClock } from '../src/common/clock.js';
import { buildExporterConfig, createExporter, type Exporter, type ObservedSvid } from '../src/exporter/index.js';
import { parseSpiffeId } from '../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../src/identity-plane/spiffe/mint/index.js';
import type { BenchContext, BenchFigures } from './run.js';

const SOURCES = 10;
const TDS = ['example.org', 'payments.example', 'partner.test'];
const RENDERS = 40;
let gcFn: (() => void) | undefined;
const gc = () => {
  gcFn?.();
  gcFn?.();
};

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function synthetic(n: number, source: number, now: number): ObservedSvid[] {
  const out: ObservedSvid[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const td = TDS[i % TDS.length];
    const id = `spiffe://${td}/ns/team-${source}/sa/workload-${i}`;
    out[i] = { key: `${id}#`, spiffeId: id, trustDomain: td, serial: randomBytes(16).toString('hex'), notAfterMs: now + 60_000 + Math.floor(Math.random() * 86_400_000) };
  }
  return out;
}

async function renders(ex: Exporter): Promise<{ p50: number; p99: number; bytes: number; truncated: boolean }> {
  const times: number[] = [];
  let bytes = 0;
  let truncated = false;
  for (let i = 0; i < RENDERS; i++) {
    const r = await ex.render();
    times.push(r.seconds * 1000);
    bytes = r.body.length;
    truncated ||= r.truncated;
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99), bytes, truncated };
}

const sourceDocs = () => Array.from({ length: SOURCES }, (_, i) => ({ name: `agent-${i}`, type: 'workload_api', address: `/run/agent-${i}.sock` }));

async function stateScenario(ctx: BenchContext, total: number, figures: BenchFigures): Promise<void> {
  const label = total >= 1000 ? `${total / 1000}k` : String(total);
  for (const perSvid of [false, true]) {
    const clock = new FakeClock(Date.now());
    const ex = createExporter(buildExporterConfig({ per_svid_series: perSvid, sources: sourceDocs() }), { clock });
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const snapshots = Array.from({ length: SOURCES }, (_, s) => synthetic(total / SOURCES, s, clock.nowMs()));
    const t0 = performance.now();
    snapshots.forEach((svids, s) => ex.state.observe(`agent-${s}`, { svids }));
    const ingestMs = performance.now() - t0;
    snapshots.length = 0; // only the state holds them now
    gc();
    const heapPerSvid = (process.memoryUsage().heapUsed - heapBefore) / total;
    // One source re-delivers with 10 % of its SVIDs rotated (what a rotation wave looks like).
    const s0 = ex.state.source('agent-0');
    const again = [...s0.svids!.values()].map((v, i) => (i % 10 === 0 ? { ...v, serial: randomBytes(16).toString('hex'), notAfterMs: v.notAfterMs + 3_600_000 } : v));
    const t1 = performance.now();
    ex.state.observe('agent-0', { svids: again });
    const reobserveMs = performance.now() - t1;
    const r = await renders(ex);
    const mode = perSvid ? 'perSvid' : 'aggregate';
    ctx.log(`${label} SVIDs, ${mode}: ingest ${ingestMs.toFixed(0)} ms (${SOURCES} snapshots), one source re-delivering ${total / SOURCES} with 10% rotated ${reobserveMs.toFixed(1)} ms, heap ${(heapPerSvid).toFixed(0)} B/SVID, scrape p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms, body ${(r.bytes / 1024).toFixed(0)} KiB${r.truncated ? ' (TRUNCATED)' : ''}`);
    Object.assign(figures, {
      [`state${label}_${mode}_scrapeP50Ms`]: Number(r.p50.toFixed(3)),
      [`state${label}_${mode}_scrapeP99Ms`]: Number(r.p99.toFixed(3)),
      [`state${label}_${mode}_bodyKiB`]: Math.round(r.bytes / 1024),
      [`state${label}_${mode}_heapBytesPerSvid`]: Math.round(heapPerSvid),
      [`state${label}_${mode}_ingestMs`]: Math.round(ingestMs),
      [`state${label}_${mode}_reobserveSourceMs`]: Number(reobserveMs.toFixed(1)),
    });
  }
}

async function filesScenario(ctx: BenchContext, total: number, figures: BenchFigures): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-bench-exporter-'));
  try {
    const ca = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86400, now: new Date() });
    const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
    const key = generateKeyPair('ec-p256'); // one key for all: the bench measures reading, not key generation
    const t0 = performance.now();
    for (let i = 0; i < total; i++) {
      const sub = path.join(dir, `w${Math.floor(i / 1000)}`, `svid-${i}`);
      mkdirSync(sub, { recursive: true });
      const svid = minter.mint({ id: parseSpiffeId(`spiffe://example.org/w/${i}`), publicKey: key.publicKey, ttlSeconds: 60 + (i % 3600), now: new Date() });
      writeFileSync(path.join(sub, 'svid.pem'), encodePem('CERTIFICATE', svid.der));
    }
    writeFileSync(path.join(dir, 'bundle.pem'), encodePem('CERTIFICATE', ca.der));
    ctx.log(`files: wrote ${total} SVID files in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const clock = new FakeClock(Date.now());
    const ex = createExporter(buildExporterConfig({ sources: [{ name: 'disk', type: 'files', paths: [dir], interval: '15s' }] }), { clock });
    let polls = 0;
    const waitPoll = async (n: number) => {
      while (polls < n) await new Promise((r) => setTimeout(r, 20));
    };
    const origObserve = ex.state.observe.bind(ex.state);
    ex.state.observe = (name, snap) => {
      polls++;
      origObserve(name, snap);
    };
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const t1 = performance.now();
    ex.start();
    // Scrapes while the first poll parses every file: the poll yields between batches, so a
    // scrape waits at most for one batch, not for the poll.
    const during: number[] = [];
    while (polls < 1) {
      const asked = performance.now();
      await ex.render();
      during.push(performance.now() - asked);
      await new Promise((r) => setTimeout(r, 50));
    }
    const firstPollMs = performance.now() - t1;
    during.sort((a, b) => a - b);
    const duringMax = during[during.length - 1] ?? 0;
    gc();
    const heapPerFile = (process.memoryUsage().heapUsed - heapBefore) / total;
    const t2 = performance.now();
    clock.advance(15_000);
    await waitPoll(2);
    const unchangedPollMs = performance.now() - t2;
    const r = await renders(ex);
    await ex.stop();
    ctx.log(`files: ${total} SVID files: first poll ${firstPollMs.toFixed(0)} ms (${during.length} scrapes meanwhile, slowest ${duringMax.toFixed(1)} ms), unchanged poll ${unchangedPollMs.toFixed(0)} ms, heap ${heapPerFile.toFixed(0)} B/file, scrape p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms`);
    const label = `${total / 1000}k`;
    Object.assign(figures, {
      [`files${label}_firstPollMs`]: Math.round(firstPollMs),
      [`files${label}_scrapeDuringFirstPollMaxMs`]: Number(duringMax.toFixed(1)),
      [`files${label}_unchangedPollMs`]: Math.round(unchangedPollMs),
      [`files${label}_heapBytesPerFile`]: Math.round(heapPerFile),
      [`files${label}_scrapeP50Ms`]: Number(r.p50.toFixed(3)),
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export default async function exporterBench(ctx: BenchContext): Promise<BenchFigures> {
  v8.setFlagsFromString('--expose-gc');
  gcFn = runInNewContext('gc') as () => void;
  const figures: BenchFigures = {};
  await stateScenario(ctx, 10_000, figures);
  await stateScenario(ctx, 100_000, figures);
  await filesScenario(ctx, 10_000, figures);
  await filesScenario(ctx, 100_000, figures);
  return figures;
}
