/**
 * What a scrape costs to render: a registry shaped like the server's (every family of its
 * catalogue, a few label sets each, exemplars on the histograms, process metrics) rendered by
 * common/telemetry/exposition.ts as text and as OpenMetrics, against prom-client's own
 * `registry.metrics()` (text, on a registry of its own: the OpenMetrics variant renames counters).
 * Variants alternate within each round so drift hits them alike.
 *
 * Then the process metrics alone as the process holds more connections (loopback sockets, both
 * ends in this process): prom-client's defaults list every handle and every descriptor on the
 * event loop at each scrape; registerProcessMetrics must not grow with the connections.
 */
import { statSync } from 'node:fs';
import net from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { OPENMETRICS_EXPOSITION, renderExposition, TEXT_EXPOSITION } from '../src/common/telemetry/exposition.js';
import { serverFamilies } from '../src/common/telemetry/names.js';
import { counter, createRegistry, gauge, histogram, registerProcessMetrics } from '../src/common/telemetry/registry.js';
import type { BenchContext, BenchFigures } from './run.js';

const LABEL_SETS = 8;
/** Loopback connections held during the process-metrics curve (2 descriptors each; stays under a 20,000 descriptor limit). */
const CONNECTION_STEPS = [0, 1000, 4000, 9000];
const PROCESS_SCRAPES = 15;
const ROUNDS = 5;
const SCRAPES_PER_ROUND = 200;

function serverLikeRegistry(): Registry {
  const registry = createRegistry();
  registerProcessMetrics(registry);
  for (const f of Object.values(serverFamilies)) {
    const labelSets = Array.from({ length: f.labels.length ? LABEL_SETS : 1 }, (_, i) => Object.fromEntries(f.labels.map((l) => [l, `${l}-${i}`])));
    if (f.type === 'counter') {
      const c = counter(registry, f);
      labelSets.forEach((l, i) => c.inc(l, i + 1));
    } else if (f.type === 'gauge') {
      const g = gauge(registry, f);
      labelSets.forEach((l, i) => g.set(l, i));
    } else {
      const h = histogram(registry, f);
      const top = f.buckets?.[f.buckets.length - 1] ?? 1;
      labelSets.forEach((l) => { for (let k = 0; k < 20; k++) h.observe(l, (top * k) / 15, k % 2 ? '0af7651916cd43dd8448eb211c80319c' : undefined); });
    }
  }
  return registry;
}

async function timePerScrape(render: () => Promise<string>): Promise<{ micros: number; bytes: number }> {
  let bytes = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < SCRAPES_PER_ROUND; i++) bytes = (await render()).length;
  return { micros: Number(process.hrtime.bigint() - start) / 1e3 / SCRAPES_PER_ROUND, bytes };
}

export default async function exposition(ctx: BenchContext): Promise<BenchFigures> {
  const ours = serverLikeRegistry();
  // prom-client renders whatever type its registry has; a text-typed one stays unchanged by rendering.
  const theirs = serverLikeRegistry();
  (theirs as unknown as { setContentType(t: string): void }).setContentType(TEXT_EXPOSITION.contentType);
  const variants: Record<string, () => Promise<string>> = {
    promClientText: () => (theirs as unknown as { metrics(): Promise<string> }).metrics(),
    text: () => renderExposition(ours, TEXT_EXPOSITION),
    openMetrics: () => renderExposition(ours, OPENMETRICS_EXPOSITION),
  };
  const micros: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  const bytes: Record<string, number> = {};
  for (const v of Object.values(variants)) await timePerScrape(v); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, render] of Object.entries(variants)) {
      const t = await timePerScrape(render);
      micros[name].push(t.micros);
      bytes[name] = t.bytes;
    }
    ctx.log(`round ${r + 1}: ${Object.entries(micros).map(([k, xs]) => `${k} ${xs[r].toFixed(0)} µs`).join(', ')}`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const figures: BenchFigures = {};
  for (const name of Object.keys(variants)) {
    figures[`${name}MicrosPerScrape`] = Math.round(median(micros[name]));
    figures[`${name}Bytes`] = bytes[name];
  }
  ctx.log(`per scrape (median of ${ROUNDS} rounds): ${Object.keys(variants).map((k) => `${k} ${figures[`${k}MicrosPerScrape`]} µs, ${bytes[k]} bytes`).join('; ')}`);
  Object.assign(figures, await processMetricsCurve(ctx));
  return figures;
}

/** Median ms per scrape of process metrics only, ours and prom-client's defaults, at each CONNECTION_STEPS count. */
async function processMetricsCurve(ctx: BenchContext): Promise<BenchFigures> {
  const ours = new Registry();
  registerProcessMetrics(ours);
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults });
  const listener = net.createServer((s) => s.on('error', () => undefined)).listen(0, '127.0.0.1');
  await new Promise((r) => listener.once('listening', r));
  const port = (listener.address() as net.AddressInfo).port;
  const sockets: net.Socket[] = [];
  const figures: BenchFigures = {};
  const medianMs = async (registry: Registry) => {
    const ms: number[] = [];
    for (let i = 0; i < PROCESS_SCRAPES; i++) {
      const start = performance.now();
      await registry.metrics();
      ms.push(performance.now() - start);
    }
    return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
  };
  try {
    for (const step of CONNECTION_STEPS) {
      while (sockets.length < step) {
        const batch = Array.from({ length: Math.min(250, step - sockets.length) }, () => net.connect(port, '127.0.0.1'));
        await Promise.all(batch.map((s) => new Promise((r, j) => s.once('connect', r).once('error', j))));
        sockets.push(...batch);
      }
      const fds = statSync('/proc/self/fd').size;
      const [oursMs, defaultsMs] = [await medianMs(ours), await medianMs(defaults)];
      figures[`processMetricsMs_${step}Connections`] = Math.round(oursMs * 100) / 100;
      figures[`promClientDefaultsMs_${step}Connections`] = Math.round(defaultsMs * 100) / 100;
      ctx.log(`process metrics with ${step} loopback connections (${fds} descriptors): registerProcessMetrics ${oursMs.toFixed(2)} ms, prom-client defaults ${defaultsMs.toFixed(2)} ms per scrape (median of ${PROCESS_SCRAPES})`);
    }
  } finally {
    for (const s of sockets) s.destroy();
    listener.close();
  }
  return figures;
}
