// Helpers of the monitoring tests: dashboard queries as a runnable list, and the Prometheus HTTP API.
import type { Dashboard, Panel, RowPanel } from '@grafana/grafana-foundation-sdk/dashboard';
import type { Dataquery as PromQuery } from '@grafana/grafana-foundation-sdk/prometheus';

export interface PanelQuery {
  dashboard: string;
  panel: string;
  expr: string;
  eventOnly: boolean;
}

export function panelsOf(d: Dashboard): Panel[] {
  return (d.panels ?? []).filter((p): p is Panel => (p as RowPanel).type !== 'row');
}

export function panelQueries(file: string, d: Dashboard): PanelQuery[] {
  return panelsOf(d).flatMap((p) => ((p.targets ?? []) as PromQuery[]).map((t) => ({
    dashboard: file, panel: p.title ?? '', expr: t.expr, eventOnly: (p.description ?? '').startsWith('Event-only:'),
  })));
}

/** Replaces Grafana's template variables by what "All" and a short range mean. */
export function substitute(expr: string, rateInterval = '1m'): string {
  return expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('"$cluster"', '".*"')
    .replaceAll('"$trust_domain"', '".*"')
    .replaceAll('"$instance"', '".+"');
}

export async function instantQuery(prometheusUrl: string, expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const r = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(10_000) });
  const body = (await r.json()) as { status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== 'success') throw new Error(`query failed: ${body.error}: ${expr}`);
  return body.data!.result;
}
