/**
 * The harness's view of Prometheus and Alertmanager: their HTTP APIs only (PromQL instant queries,
 * `ALERTS`, Alertmanager `/api/v2/alerts`).
 */
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
    if (body.status !== 'success') throw new Error(`prometheus: ${q}: ${body.error ?? res.status}`);
    const { resultType, result } = body.data!;
    if (resultType === 'scalar') return [{ labels: {}, value: Number((result as [number, string])[1]) }];
    if (resultType === 'vector') return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
    throw new Error(`prometheus: ${q}: unsupported result type ${resultType}`);
  }

  /** Firing alerts with this name (Prometheus's own `ALERTS` series). */
  async firing(name: string, labels: Record<string, string> = {}): Promise<Sample[]> {
    const m = Object.entries({ alertname: name, alertstate: 'firing', ...labels }).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',');
    return this.query(`ALERTS{${m}}`);
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
    if (!res.ok) throw new Error(`alertmanager: ${res.status}`);
    return (await res.json()) as AmAlert[];
  }
}
