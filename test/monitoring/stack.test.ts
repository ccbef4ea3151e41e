// End to end: `svidscope up` (identity plane, prober, exporter), a real Prometheus scraping it
// with the generated rules (1s scrapes, 3s `for`) and a real Alertmanager posting to a local
// webhook, plus the chaos harness's textfile. Every dashboard query, recorded series and alert signal must return data; then an
// agent is killed and its page must reach the webhook with the runbook URL.
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Endpoints } from '../../src/cli/up/up.js';
import { ChaosMetrics } from '../../src/chaos/metrics.js';
import { agentFamilies, serverFamilies } from '../../src/common/telemetry/names.js';
import { nullLogger } from '../../src/common/log.js';
import { createWorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { resolveConfig, type ConfigOverrides } from '../../src/monitoring/config.js';
import { dashboards } from '../../src/monitoring/dashboards/index.js';
import { allAlerts, recordingGroups } from '../../src/monitoring/rules.js';
import { findBinaries, startPrometheusStack, type PrometheusStack } from '../../src/monitoring/stack.js';
import { freePort, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { instantQuery, panelQueries, substitute } from './support.js';

const dir = tempDir('monitoring');
const servers: Server[] = [];
let stack: PrometheusStack | undefined;
let up: ReturnType<typeof spawnCli> | undefined;

afterAll(async () => {
  if (stack?.installed) await stack.stop();
  if (up) {
    up.child.kill('SIGTERM');
    const timer = setTimeout(() => up?.child.kill('SIGKILL'), 30_000);
    await up.child;
    clearTimeout(timer);
  }
  for (const s of servers) s.close();
  removeDir(dir);
}, 60_000);

interface Webhook { path: string; body: { alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string> }[] } }

async function listen(handler: (path: string, body: string) => string): Promise<string> {
  const port = await freePort();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => res.end(handler(req.url ?? '/', body)));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return `http://127.0.0.1:${port}`;
}

// Key compromise: the agents' taint metrics and the server's authority states come with the taint
// work. Until the metric catalogue declares them, `svidscope up` cannot serve them and their queries
// are left out; once declared, they are checked like every other.
const declared = new Set([...Object.values(serverFamilies), ...Object.values(agentFamilies)].map((fam) => fam.name));
const pendingTaint = ['svidscope_server_authorities', 'svidscope_agent_svids_by_authority', 'svidscope_agent_tainted_svids', 'svidscope_agent_taint_clear_seconds'].filter((n) => !declared.has(n));
function awaitsTaintMetrics(expr: string): boolean {
  return pendingTaint.some((n) => expr.includes(n)) || (pendingTaint.includes('svidscope_agent_taint_clear_seconds') && expr.includes('slo="taint-clear"'));
}

const hasTools = !!findBinaries().prometheus && !!findBinaries().alertmanager;

describe.skipIf(!hasTools)('monitoring stack against svidscope up', () => {
  it('every panel query and rule returns data, and a killed agent pages with its runbook', async () => {
    up = spawnCli(['up', '--data-dir', dir, '--no-monitoring']); // this test starts its own, with short intervals
    const file = path.join(dir, 'endpoints.json');
    await waitFor('endpoints.json', async () => existsSync(file), 150_000, up.logs);
    const endpoints = JSON.parse(readFileSync(file, 'utf8')) as Endpoints;

    const received: Webhook[] = [];
    const hook = await listen((p, body) => {
      received.push({ path: p, body: JSON.parse(body) as Webhook['body'] });
      return 'ok';
    });
    // The Game day panels' event: the harness's own writer records a finished run and an active fault
    // in <dataDir>/chaos/metrics.prom, which startPrometheusStack serves to Prometheus.
    const chaos = new ChaosMetrics(path.join(dir, 'chaos'));
    chaos.runFinished('agent-crash', 'passed', new Date());
    chaos.faultActive('agent-crash', 'process_kill', true);

    const overrides: ConfigOverrides = {
      forOverride: '3s',
      alertmanager: { pageWebhookUrl: `${hook}/page`, ticketWebhookUrl: `${hook}/ticket`, groupWait: '1s', groupInterval: '2s', repeatInterval: '1h' },
    };
    stack = await startPrometheusStack({
      dataDir: dir, endpoints, logger: nullLogger(), scrapeInterval: '1s', config: overrides,
      prometheusPort: await freePort(), alertmanagerPort: await freePort(),
    });
    expect(stack.installed).toBe(true);
    if (!stack.installed) return;
    const prom = stack.prometheusUrl;

    // Traffic beyond what the stack makes itself: a caller without an entry (PERMISSION_DENIED at the Workload API).
    const client = createWorkloadApiClient({ address: `unix://${endpoints.agents[0].socketPath}`, deadlineMs: 10_000 });
    await expect(client.fetchX509Context()).rejects.toMatchObject({ code: 'workload-no-identity' });
    client.close();

    const c = resolveConfig(overrides);
    const panel = dashboards(c).flatMap((d) => panelQueries(d.file, d.dashboard));
    const queries = ([
      // `svidscope up` signs without an upstream authority: its expiry panel stays empty (the gauge is 0).
      ...panel.filter((q) => (!q.eventOnly || !q.expr.startsWith('ALERTS')) && !q.expr.includes('svidscope_server_upstream_authority_expiry_timestamp_seconds')).map((q) => ({ what: `${q.dashboard} / ${q.panel}`, expr: substitute(q.expr, '30s') })),
      ...recordingGroups(c).flatMap((g) => g.rules.map((r) => ({ what: `recording rule ${r.record} (${r.labels!.slo})`, expr: `${r.record}{slo="${r.labels!.slo}"}` }))),
      ...allAlerts(c).map((r) => ({ what: `alert ${r.alert} ${r.labels.long ?? ''}`, expr: r.signal })),
      ...allAlerts(c).map((r) => ({ what: `alert expression of ${r.alert} evaluates`, expr: `count(${r.expr.replace(/\n/g, ' ')}) or vector(0)` })),
    ] as { what: string; expr: string }[]).filter((q) => !awaitsTaintMetrics(q.expr));
    let empty: string[] = [];
    await waitFor('data for every query', async () => {
      empty = [];
      for (const q of queries) if ((await instantQuery(prom, q.expr)).length === 0) empty.push(`${q.what}: ${q.expr}`);
      return empty.length === 0;
    }, 90_000).catch(() => undefined);
    expect(empty).toEqual([]);

    // Every target is up, the /probe jobs included (their first scrape may still be on its way).
    const probeJobs = ['svidscope-probe-bundle-example-org', 'svidscope-probe-bundle-peer-example', 'svidscope-probe-x509'];
    let health = { down: [] as string[], probing: [] as string[] };
    await waitFor('every target up and every /probe job reporting', async () => {
      health = {
        down: (await instantQuery(prom, 'up == 0')).map((t) => `${t.metric.job} ${t.metric.instance}`),
        probing: [...new Set((await instantQuery(prom, 'probe_success')).map((r) => r.metric.job))].sort(),
      };
      return health.down.length === 0 && health.probing.join() === probeJobs.join();
    }, 30_000).catch(() => undefined);
    expect(health).toEqual({ down: [], probing: probeJobs });

    // Kill agent-1 (its pid is not in endpoints.json: find it by its config path).
    const agent = endpoints.agents[0];
    const pids = (await execa('pgrep', ['-f', path.join(dir, `${agent.name}.yaml`)], { reject: false })).stdout.split('\n').filter(Boolean);
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
    const instance = new URL(agent.metrics).host;

    const page = await waitFor('the SvidscopeAgentDown page at the webhook', async () => received
      .filter((w) => w.path === '/page')
      .flatMap((w) => w.body.alerts)
      .find((a) => a.status === 'firing' && a.labels.alertname === 'SvidscopeAgentDown' && a.labels.instance === instance), 60_000);
    expect(page.labels).toMatchObject({ severity: 'page', job: 'svidscope-agent', trust_domain: endpoints.trustDomain, cluster: 'local' });
    expect(page.annotations.runbook_url).toBe(`${c.runbookBaseUrl}/SvidscopeAgentDown.md`);
    expect(page.annotations.description).toContain(instance);
    // It pages; it never lands in the ticket queue.
    expect(received.filter((w) => w.path === '/ticket').flatMap((w) => w.body.alerts).some((a) => a.labels.alertname === 'SvidscopeAgentDown')).toBe(false);

    // The event-only incident table now has rows.
    for (const q of panel.filter((p) => p.eventOnly && p.expr.startsWith('ALERTS'))) {
      expect((await instantQuery(prom, substitute(q.expr))).length, q.panel).toBeGreaterThan(0);
    }
  }, 240_000);
});
