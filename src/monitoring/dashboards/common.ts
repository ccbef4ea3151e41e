/**
 * The dashboard layer over @grafana/grafana-foundation-sdk: a panel is described as data
 * (kind, title, description, unit, queries, runbook links) and built with the SDK's builders,
 * so every panel gets the templated datasource, a unit, a description, and `$__rate_interval`
 * is the only rate window (the rules in test/monitoring/dashboard-lint.test.ts).
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import {
  DashboardBuilder, DashboardCursorSync, DashboardLinkBuilder, DashboardLinkType, DatasourceVariableBuilder, QueryVariableBuilder, RowBuilder,
  ThresholdsConfigBuilder, ThresholdsMode, VariableRefresh, VariableSort, type Dashboard,
} from '@grafana/grafana-foundation-sdk/dashboard';
import { PanelBuilder as HeatmapBuilder } from '@grafana/grafana-foundation-sdk/heatmap';
import { DataqueryBuilder, PromQueryFormat } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as StatBuilder } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TableBuilder } from '@grafana/grafana-foundation-sdk/table';
import { PanelBuilder as TimeseriesBuilder } from '@grafana/grafana-foundation-sdk/timeseries';
import { createHash } from 'node:crypto';
import type { MonitoringConfig } from '../config.js';
import { runbookUrl } from '../rules.js';
import type { Component } from '../promql.js';

export const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

/** Marks a panel whose queries return data only while something happens (description prefix; the integration test triggers these). */
export const EVENT_ONLY = 'Event-only:';

export interface Query {
  expr: string;
  legend?: string;
  instant?: boolean;
  format?: 'heatmap' | 'table';
}

export interface PanelSpec {
  kind: 'timeseries' | 'stat' | 'heatmap' | 'table';
  title: string;
  description: string;
  unit: string;
  queries: Query[];
  /** Alerts this panel is about: each becomes a "Runbook: <alert>" panel link. */
  runbooks?: string[];
  /** Documented as returning data only during events (see EVENT_ONLY). */
  eventOnly?: string;
  width?: number;
  height?: number;
  min?: number;
  max?: number;
  /** Red above this value (stat colouring), in the panel's unit. */
  redAbove?: number;
  /** Red below this value. */
  redBelow?: number;
}

export interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

export interface DashboardSpec {
  file: string;
  title: string;
  description: string;
  rows: RowSpec[];
}

/** Label matchers for dashboard queries: component selector + the template variables. */
export function f(c: MonitoringConfig, component: Component | undefined, opts: { instance?: boolean } = {}, ...extra: string[]): string {
  const parts = [
    component ? c.selectors[component] : '',
    c.extraSelector,
    `${c.clusterLabel}=~"$cluster"`,
    `${c.trustDomainLabel}=~"$trust_domain"`,
    opts.instance === false ? '' : 'instance=~"$instance"',
    ...extra,
  ];
  return `{${parts.filter((p) => p !== '').join(', ')}}`;
}

/** Selector for recorded SLO series (no instance label). */
export function fs(c: MonitoringConfig, ...extra: string[]): string {
  return f(c, undefined, { instance: false }, ...extra);
}

export function uidOf(c: MonitoringConfig, file: string): string {
  return `${c.dashboardTag}-${createHash('sha256').update(file).digest('hex').slice(0, 12)}`;
}

export function buildDashboard(c: MonitoringConfig, spec: DashboardSpec, jobRegex: string): Dashboard {
  const variable = (name: string, label: string, query: string, allValue: string) =>
    new QueryVariableBuilder(name).label(label).query(query).definition(query).datasource(DATASOURCE)
      .refresh(VariableRefresh.OnTimeRangeChanged).sort(VariableSort.AlphabeticalAsc).multi(true).includeAll(true).allValue(allValue);
  const up = (matchers: string) => `up{job=~"${jobRegex}"${matchers}}`;
  const b = new DashboardBuilder(spec.title)
    .uid(uidOf(c, spec.file))
    .description(spec.description)
    .tags([c.dashboardTag])
    .readonly()
    .timezone('utc')
    .refresh('1m')
    .time({ from: 'now-6h', to: 'now' })
    .tooltip(DashboardCursorSync.Crosshair)
    .withVariable(new DatasourceVariableBuilder('datasource').label('Data source').type('prometheus'))
    // cluster and trust_domain match absent labels too (".*"): a single-cluster Prometheus may not set them.
    .withVariable(variable('cluster', 'Cluster', `label_values(${up('')}, ${c.clusterLabel})`, '.*'))
    .withVariable(variable('trust_domain', 'Trust domain', `label_values(${up(`, ${c.clusterLabel}=~"$cluster"`)}, ${c.trustDomainLabel})`, '.*'))
    .withVariable(variable('instance', 'Instance', `label_values(${up(`, ${c.clusterLabel}=~"$cluster", ${c.trustDomainLabel}=~"$trust_domain"`)}, instance)`, '.+'))
    .link(new DashboardLinkBuilder('svidscope dashboards').type(DashboardLinkType.Dashboards).tags([c.dashboardTag]).asDropdown(true).includeVars(true).keepTime(true))
    .link(new DashboardLinkBuilder('Runbooks').type(DashboardLinkType.Link).url(`${c.runbookBaseUrl}/README.md`).targetBlank(true));
  let y = 0;
  let id = 1;
  for (const row of spec.rows) {
    b.withRow(new RowBuilder(row.title).gridPos({ x: 0, y, w: 24, h: 1 }).id(id++));
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const p of row.panels) {
      const w = p.width ?? 12;
      const h = p.height ?? 8;
      if (x + w > 24) {
        x = 0;
        y += rowHeight;
        rowHeight = 0;
      }
      b.withPanel(panel(c, p).gridPos({ x, y, w, h }).id(id++));
      x += w;
      rowHeight = Math.max(rowHeight, h);
    }
    y += rowHeight;
  }
  return b.build();
}

type AnyPanel = TimeseriesBuilder | StatBuilder | HeatmapBuilder | TableBuilder;

function panel(c: MonitoringConfig, p: PanelSpec): AnyPanel {
  const builder: AnyPanel = p.kind === 'stat' ? new StatBuilder().reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false)).graphMode(common.BigValueGraphMode.Area)
    : p.kind === 'heatmap' ? new HeatmapBuilder().calculate(false).yAxis(new common.AxisConfigBuilder()) as HeatmapBuilder
    : p.kind === 'table' ? new TableBuilder()
    : new TimeseriesBuilder().fillOpacity(10).lineWidth(1);
  const description = p.eventOnly ? `${EVENT_ONLY} ${p.eventOnly} ${p.description}` : p.description;
  builder.title(p.title).description(description).unit(p.unit).datasource(DATASOURCE);
  if (p.min !== undefined) builder.min(p.min);
  if (p.max !== undefined) builder.max(p.max);
  if (p.redAbove !== undefined || p.redBelow !== undefined) {
    const steps = p.redBelow !== undefined
      ? [{ value: null as unknown as number, color: 'red' }, { value: p.redBelow, color: 'green' }]
      : [{ value: null as unknown as number, color: 'green' }, { value: p.redAbove!, color: 'red' }];
    builder.thresholds(new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps(steps));
  }
  if (p.runbooks?.length) {
    builder.links(p.runbooks.map((alert) => new DashboardLinkBuilder(`Runbook: ${alert}`).type(DashboardLinkType.Link).url(runbookUrl(c, alert)).targetBlank(true)));
  }
  p.queries.forEach((q, i) => {
    const t = new DataqueryBuilder().datasource(DATASOURCE).expr(q.expr).refId(String.fromCharCode(65 + i)).legendFormat(q.legend ?? '__auto');
    if (q.format === 'heatmap') t.format(PromQueryFormat.Heatmap);
    if (q.format === 'table') t.format(PromQueryFormat.Table);
    if (q.instant || p.kind === 'table') t.instant();
    else t.range();
    builder.withTarget(t);
  });
  return builder;
}
