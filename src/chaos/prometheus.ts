/**
 * The harness's view of Prometheus and Alertmanager: their HTTP APIs only (PromQL instant queries,
 * `/api/v1/alerts` with each alert's activeAt, `/api/v1/rules` for the loaded `for` durations,
 * Alertmanager `/api/v2/alerts`).
 */
import { SvidscopeError } from '../common/errors/catalog.js';

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export class PrometheusClient {
  constructor(readonly url: string) {}

  async query(q: string, time?: Date): Promise<Sample[]> {
    const u = new URL('/api/v1/query', this.url);
    u.searchParams.set('query', q);
    if (time) u.searchParams.set('time', String(time.getTime() / 1000));
    const res = await fetch(u, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } };
    if (body.status !== 'success') throw new SvidscopeError('prometheus-query-failed', `prometheus: ${q}: ${body.error ?? res.status}`);
    const { resultType, result } = body.data!;
    if (resultType === 'scalar') return [{ labels: {}, value: Number((result as [number, string])[1]) }];
    if (resultType === 'vector') return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
    throw new SvidscopeError('prometheus-query-failed', `prometheus: ${q}: unsupported result type ${resultType}`);
  }

  /**
   * Pending and firing alerts with this name from `/api/v1/alerts`, with the instant each became
   * active: what tells an alert raised by this run from one that was already going.
   */
  async alerts(name: string, labels: Record<string, string> = {}): Promise<{ labels: Record<string, string>; state: string; activeAt: Date }[]> {
    const res = await fetch(new URL('/api/v1/alerts', this.url), { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; error?: string; data?: { alerts: { labels: Record<string, string>; state: string; activeAt: string }[] } };
    if (body.status !== 'success') throw new SvidscopeError('prometheus-query-failed', `prometheus: /api/v1/alerts: ${body.error ?? res.status}`);
    return body.data!.alerts
      .filter((a) => a.labels.alertname === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v))
      .map((a) => ({ labels: a.labels, state: a.state, activeAt: new Date(a.activeAt) }));
  }

  /**
   * The loaded alerting rules by name, with their `for` in seconds: the shortest when a name has
   * several rules (burn-rate pairs), since the alert fires as soon as any of them does.
   */
  async alertRules(): Promise<Map<string, { forSeconds: number }>> {
    const u = new URL('/api/v1/rules', this.url);
    u.searchParams.set('type', 'alert');
    const res = await fetch(u, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; error?: string; data?: { groups: { rules: { name: string; duration?: number }[] }[] } };
    if (body.status !== 'success') throw new SvidscopeError('prometheus-query-failed', `prometheus: /api/v1/rules: ${body.error ?? res.status}`);
    const rules = new Map<string, { forSeconds: number }>();
    for (const g of body.data!.groups) for (const r of g.rules) rules.set(r.name, { forSeconds: Math.min(rules.get(r.name)?.forSeconds ?? Infinity, r.duration ?? 0) });
    return rules;
  }
}

export interface AmAlert {
  labels: Record<string, string>;
  startsAt: string;
  status: { state: string };
}

export class AlertmanagerClient {
  constructor(readonly url: string) {}

  async alerts(name?: string): Promise<AmAlert[]> {
    const u = new URL('/api/v2/alerts', this.url);
    if (name) u.searchParams.append('filter', `alertname="${name}"`);
    const res = await fetch(u, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new SvidscopeError('prometheus-query-failed', `alertmanager: ${res.status}`);
    return (await res.json()) as AmAlert[];
  }
}
