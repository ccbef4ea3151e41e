import { statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { collectDefaultMetrics, Counter, Gauge, Histogram, openMetricsContentType, Registry } from 'prom-client';
import { DROPPED_DEFAULT_METRICS, type MetricFamily } from './names.js';
import { activeTraceId } from './tracing.js';

/**
 * Registers the process metrics every svidscope process serves (prom-client's defaults: CPU,
 * memory, event loop lag, GC) minus DROPPED_DEFAULT_METRICS: the gauges whose `_total` names
 * promtool rejects (they would mislead anyone who takes `_total` for a counter) and those whose
 * collection walks every open handle. `process_open_fds` is served under its usual name but
 * counted without listing `/proc/self/fd` on the event loop (prom-client's `readdirSync`: ≈ 20 ms
 * per scrape at 18,000 descriptors).
 */
export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  if (registry.getSingleMetric('process_open_fds')) {
    registry.removeSingleMetric('process_open_fds');
    new Gauge({ name: 'process_open_fds', help: 'Number of open file descriptors.', registers: [registry], async collect() {
      this.set(await openFileDescriptors());
    } });
  }
}

/**
 * Open descriptors of this process. Linux 6.2 and later report the count as the size of
 * `/proc/self/fd` (one stat, O(1) for the caller); older kernels report 0, and the directory is
 * listed on the thread pool instead (less the descriptor the listing itself holds open).
 */
async function openFileDescriptors(): Promise<number> {
  const size = statSync('/proc/self/fd').size;
  return size > 0 ? size : (await readdir('/proc/self/fd')).length - 1;
}

export function counter(registry: Registry, family: MetricFamily): Counter<string> {
  return new Counter({ name: family.name, help: family.help, labelNames: [...family.labels], registers: [registry] });
}

export function gauge(registry: Registry, family: MetricFamily, collect?: (this: Gauge<string>) => void | Promise<void>): Gauge<string> {
  return new Gauge({ name: family.name, help: family.help, labelNames: [...family.labels], registers: [registry], ...(collect ? { collect } : {}) });
}

/** A histogram that takes an optional trace id per observation and shows it as an OpenMetrics exemplar. */
export interface ExemplarHistogram {
  observe(labels: Record<string, string>, value: number, traceId?: string): void;
  /** Starts a timer; the returned function observes the elapsed seconds with the final labels. */
  startTimer(labels?: Record<string, string>): (more?: Record<string, string>) => void;
  /**
   * Exposes a label set at zero before its first observation: `rate()` cannot see the step from
   * an absent series to its first count, so an alert on a rare event would miss the first one.
   */
  zero(labels: Record<string, string>): void;
}

export function histogram(registry: Registry, family: MetricFamily): ExemplarHistogram {
  // With exemplars enabled prom-client takes one object per observation.
  const h = new Histogram({ name: family.name, help: family.help, labelNames: [...family.labels], buckets: [...(family.buckets ?? [])], registers: [registry], enableExemplars: true });
  // The exemplar is the active span's trace id, when tracing is on and a span is recording.
  const observe = (labels: Record<string, string>, value: number, traceId = activeTraceId()) =>
    (h.observe as unknown as (o: { labels: Record<string, string>; value: number; exemplarLabels?: Record<string, string> }) => void)({ labels, value, ...(traceId ? { exemplarLabels: { trace_id: traceId } } : {}) });
  return {
    observe,
    zero: (labels) => h.zero(labels),
    startTimer: (labels = {}) => {
      const start = process.hrtime.bigint();
      return (more = {}) => observe({ ...labels, ...more }, Number(process.hrtime.bigint() - start) / 1e9);
    },
  };
}

/**
 * A process's registry, able to carry exemplars (prom-client registers exemplar histograms only on
 * an OpenMetrics-typed registry). That type is never consulted when serving: every scrape renders
 * in the format it negotiated through telemetry/exposition.ts, which shows exemplars in OpenMetrics
 * only. Never call `registry.metrics()` on it: prom-client would rename its counters (`x_total`
 * becomes `x`) for every later reader (lint forbids it in src/).
 */
export function createRegistry(): Registry {
  // prom-client's typings omit the constructor's content-type parameter; the runtime takes it.
  const OpenMetricsRegistry = Registry as unknown as new (contentType: string) => Registry;
  return new OpenMetricsRegistry(openMetricsContentType);
}
