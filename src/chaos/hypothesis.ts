import type { Clock } from '../common/clock.js';
import type { Probe, Tolerance } from './experiment/schema.js';
import type { PrometheusClient } from './prometheus.js';
import type { StackView } from './stack.js';
import { SvidscopeError } from '../common/errors/catalog.js';

export interface ProbeRun {
  name: string;
  type: Probe['type'];
  status: 'succeeded' | 'failed';
  tolerance_met: boolean;
  output: unknown;
  error?: string;
}

export interface HypothesisRun {
  at: string;
  steady_state_met: boolean;
  /** A probe itself errored (not the same as a tolerance miss). */
  errored: boolean;
  probes: ProbeRun[];
}

export function withinTolerance(samples: { value: number }[], t: Tolerance): boolean {
  if (samples.length === 0) return t.empty === 'pass';
  return samples.every(({ value: v }) => !Number.isNaN(v) && (t.equals === undefined || v === t.equals) && (t.min === undefined || v >= t.min) && (t.max === undefined || v <= t.max));
}

export function describeTolerance(t: Tolerance): string {
  if (t.equals !== undefined) return `== ${t.equals}`;
  if (t.min !== undefined && t.max !== undefined) return `in [${t.min}, ${t.max}]`;
  return t.min !== undefined ? `>= ${t.min}` : `<= ${t.max}`;
}

/** Resolves a probe-module target: a component name (agent) becomes its Workload API socket. */
function probeTarget(stack: StackView | undefined, target: string): string {
  const c = stack?.components.get(target);
  return c?.socketPath ? `unix://${c.socketPath}` : target;
}

export async function runProbe(p: Probe, prom: PrometheusClient | undefined, stack: StackView | undefined): Promise<ProbeRun> {
  try {
    if (p.type === 'promql') {
      if (!prom) throw new SvidscopeError('usage', 'no Prometheus URL (--prometheus-url)');
      const samples = await prom.query(p.query);
      return { name: p.name, type: p.type, status: 'succeeded', tolerance_met: withinTolerance(samples, p.tolerance), output: samples.map((s) => ({ labels: s.labels, value: s.value })) };
    }
    if (!stack) throw new SvidscopeError('usage', 'probe-module checks need the stack (endpoints.json)');
    const u = new URL('/probe', stack.endpoints.prober.url);
    u.searchParams.set('module', p.module);
    u.searchParams.set('target', probeTarget(stack, p.target));
    const res = await fetch(u, { signal: AbortSignal.timeout(20_000) });
    const text = await res.text();
    const success = /^probe_success(?:\{[^}]*\})?\s+1\b/m.test(text);
    const ok = p.expect === 'success' ? success : !success;
    return { name: p.name, type: p.type, status: 'succeeded', tolerance_met: ok, output: { http: res.status, probe_success: success ? 1 : 0, reason: /reason="([^"]+)"/.exec(text)?.[1] } };
  } catch (err) {
    return { name: p.name, type: p.type, status: 'failed', tolerance_met: false, output: null, error: (err as Error).message };
  }
}

export async function checkHypothesis(probes: Probe[], prom: PrometheusClient | undefined, stack: StackView | undefined, clock: Clock): Promise<HypothesisRun> {
  const at = clock.now().toISOString();
  const runs = await Promise.all(probes.map((p) => runProbe(p, prom, stack)));
  return { at, steady_state_met: runs.every((r) => r.tolerance_met), errored: runs.some((r) => r.status === 'failed'), probes: runs };
}
