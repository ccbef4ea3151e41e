/**
 * A real Prometheus and Alertmanager for `svidscope up`: writes prometheus.yml (every component
 * of the stack, `job` names matching the rule selectors, a `trust_domain` and `cluster` label per
 * target; the prober both as a static scrape and through the multi-target /probe pattern), the
 * generated rules and an alertmanager.yml, then runs both binaries on loopback with their data
 * under `<dataDir>/monitoring`. Without the binaries it says how to install them.
 */
import { parseDurationSeconds } from '../common/duration.js';
import { pickPort } from '../common/net.js';
import { execa, type ResultPromise } from 'execa';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import type { Logger } from '../common/log.js';
import { negotiateExposition } from '../common/telemetry/exposition.js';
import { alertmanagerConfig } from './alertmanager.js';
import { resolveConfig, type ConfigOverrides, type MonitoringConfig } from './config.js';
import { renderAlertingRules, renderRecordingRules } from './rules.js';
import { SvidscopeError } from '../common/errors/catalog.js';

/** The parts of `svidscope up`'s Endpoints (src/cli/up/up.ts) that are scraped. */
export interface StackDomain {
  trustDomain: string;
  server: { metrics: string; bundleEndpoint: string };
  agents: { name: string; metrics: string; socketPath: string }[];
}
export interface StackEndpoints extends StackDomain {
  prober: { url: string; metrics: string; config: string };
  exporter: { metrics: string };
  peer?: StackDomain;
}

export interface PrometheusStackOptions {
  dataDir: string;
  endpoints: StackEndpoints;
  logger: Logger;
  prometheusPort?: number;
  alertmanagerPort?: number;
  /** Mixin parameters for the rules and the Alertmanager config (tests: short `for`, webhook URLs). */
  config?: ConfigOverrides;
  /** Scrape and rule evaluation interval (default 15s). */
  scrapeInterval?: string;
  /** Value of the `cluster` label on every target (default "local"). */
  cluster?: string;
  /** More targets: `{ job, url }`. */
  extraTargets?: { job: string; url: string; labels?: Record<string, string> }[];
  /**
   * The chaos harness's textfile (default `<dataDir>/chaos/metrics.prom`): served on loopback and
   * scraped as the chaos job, so the Game day dashboard sees experiment runs. `false` turns it off.
   */
  chaosTextfile?: string | false;
}

export type PrometheusStack =
  | { installed: true; prometheusUrl: string; alertmanagerUrl: string; files: { prometheus: string; alertmanager: string; rules: string[] }; stop(): Promise<void> }
  | { installed: false; message: string };

export const INSTALL_HINT = 'Prometheus and Alertmanager are not installed: apt-get install prometheus prometheus-alertmanager (Debian/Ubuntu), or put `prometheus` and `alertmanager` on PATH';

/** Finds the binaries on PATH (Debian names the Alertmanager binary prometheus-alertmanager). */
export function findBinaries(env: NodeJS.ProcessEnv = process.env): { prometheus?: string; alertmanager?: string } {
  const dirs = (env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const find = (...names: string[]) => {
    for (const d of dirs) for (const n of names) if (existsSync(path.join(d, n))) return path.join(d, n);
    return undefined;
  };
  return { prometheus: find('prometheus'), alertmanager: find('prometheus-alertmanager', 'alertmanager') };
}

export async function startPrometheusStack(opts: PrometheusStackOptions): Promise<PrometheusStack> {
  const bins = findBinaries();
  if (!bins.prometheus || !bins.alertmanager) {
    const missing = [!bins.prometheus && 'prometheus', !bins.alertmanager && 'alertmanager'].filter(Boolean).join(' and ');
    opts.logger.warn({ missing }, INSTALL_HINT);
    return { installed: false, message: `${missing} not found. ${INSTALL_HINT}` };
  }
  const c = resolveConfig(opts.config);
  const dir = path.join(opts.dataDir, 'monitoring');
  const logDir = path.join(opts.dataDir, 'logs');
  for (const d of [dir, logDir, path.join(dir, 'prometheus-data'), path.join(dir, 'alertmanager-data')]) mkdirSync(d, { recursive: true });
  const amPort = await pickPort(opts.alertmanagerPort ?? 9093);
  const promPort = await pickPort(opts.prometheusPort ?? 9090);
  const alertmanagerUrl = `http://127.0.0.1:${amPort}`;
  const prometheusUrl = `http://127.0.0.1:${promPort}`;

  const rules = [path.join(dir, 'svidscope-recording-rules.yaml'), path.join(dir, 'svidscope-alerts.yaml')];
  writeFileSync(rules[0], renderRecordingRules(c));
  writeFileSync(rules[1], renderAlertingRules(c));
  const amFile = path.join(dir, 'alertmanager.yml');
  writeFileSync(amFile, stringify(alertmanagerConfig(c), { aliasDuplicateObjects: false }));

  const children: { name: string; proc: ResultPromise }[] = [];
  const chaosFile = opts.chaosTextfile === undefined ? path.join(opts.dataDir, 'chaos', 'metrics.prom') : opts.chaosTextfile;
  const chaos = chaosFile ? await serveTextfile(chaosFile) : undefined;
  const extraTargets = [...(opts.extraTargets ?? []), ...(chaos ? [{ job: jobNameOf(c, 'chaos'), url: `${chaos.url}/metrics` }] : [])];
  const promFile = path.join(dir, 'prometheus.yml');
  writeFileSync(promFile, stringify(prometheusConfig(c, { ...opts, extraTargets }, rules, `127.0.0.1:${amPort}`), { aliasDuplicateObjects: false, lineWidth: 0 }));
  const stop = async () => {
    chaos?.server.close();
    for (const ch of children.reverse()) {
      if (ch.proc.exitCode !== null) continue;
      ch.proc.kill('SIGTERM');
      const timer = setTimeout(() => ch.proc.kill('SIGKILL'), 10_000);
      await ch.proc;
      clearTimeout(timer);
    }
  };
  const spawn = (name: string, file: string, args: string[]) => {
    const log = createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
    const proc = execa(file, args, { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', cleanup: true });
    proc.stdout?.pipe(log);
    proc.stderr?.pipe(log);
    children.push({ name, proc });
    return proc;
  };
  try {
    const am = spawn('alertmanager', bins.alertmanager, [
      `--config.file=${amFile}`, `--storage.path=${path.join(dir, 'alertmanager-data')}`,
      `--web.listen-address=127.0.0.1:${amPort}`, `--web.external-url=${alertmanagerUrl}`,
      '--cluster.listen-address=', // no HA gossip port
    ]);
    await waitReady(`${alertmanagerUrl}/-/ready`, am, 'alertmanager', path.join(logDir, 'alertmanager.log'));
    const prom = spawn('prometheus', bins.prometheus, [
      `--config.file=${promFile}`, `--storage.tsdb.path=${path.join(dir, 'prometheus-data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`, `--web.external-url=${prometheusUrl}`,
      '--storage.tsdb.retention.time=7d',
    ]);
    await waitReady(`${prometheusUrl}/-/ready`, prom, 'prometheus', path.join(logDir, 'prometheus.log'));
  } catch (err) {
    await stop();
    throw err;
  }
  opts.logger.info({ prometheus: prometheusUrl, alertmanager: alertmanagerUrl, config: promFile }, 'prometheus and alertmanager are up');
  return { installed: true, prometheusUrl, alertmanagerUrl, files: { prometheus: promFile, alertmanager: amFile, rules }, stop };
}

/** prometheus.yml for the stack. Exported for tests and for users who run their own Prometheus. */
export function prometheusConfig(c: MonitoringConfig, opts: Pick<PrometheusStackOptions, 'endpoints' | 'scrapeInterval' | 'cluster' | 'extraTargets'>, ruleFiles: string[], alertmanager: string): Record<string, unknown> {
  const e = opts.endpoints;
  const interval = opts.scrapeInterval ?? '15s';
  const probeInterval = parseDurationSeconds(interval, 'interval') < 5 ? '5s' : interval;
  const cluster = opts.cluster ?? 'local';
  const domains = [e, ...(e.peer ? [e.peer] : [])];
  const hostOf = (url: string) => new URL(url).host;
  const labels = (td: string, extra: Record<string, string> = {}) => ({ [c.clusterLabel]: cluster, [c.trustDomainLabel]: td, ...extra });
  const jobName = (component: keyof MonitoringConfig['selectors']) => jobNameOf(c, component);
  const staticJob = (job: string, targets: { url: string; td: string }[], extra: Record<string, unknown> = {}) => ({
    job_name: job,
    metrics_path: new URL(targets[0].url).pathname,
    static_configs: targets.map((t) => ({ targets: [hostOf(t.url)], labels: labels(t.td) })),
    ...extra,
  });
  const proberHost = hostOf(e.prober.url);
  // The multi-target jobs: x509_svid against every agent socket, and every bundle_endpoint module of the prober config against its server's endpoint.
  const probeJobs: Record<string, unknown>[] = [];
  const probePrefix = jobName('probe');
  const relabel = [
    { source_labels: ['__address__'], target_label: '__param_target' },
    { source_labels: ['__param_target'], target_label: 'instance' },
    { target_label: '__address__', replacement: proberHost },
  ];
  probeJobs.push({
    job_name: `${probePrefix}x509`, metrics_path: '/probe', params: { module: ['x509_svid'] }, scrape_interval: probeInterval, scrape_timeout: probeInterval,
    static_configs: domains.flatMap((d) => d.agents.map((a) => ({ targets: [`unix://${a.socketPath}`], labels: labels(d.trustDomain, { module: 'x509_svid' }) }))),
    relabel_configs: relabel,
  });
  const bundleModules = proberBundleModules(e.prober.config);
  const bundleTargets = domains.flatMap((d) => {
    const module = bundleModules.get(d.trustDomain);
    return module ? [{ targets: [d.server.bundleEndpoint], labels: labels(d.trustDomain, { module }) }] : [];
  });
  for (const t of bundleTargets) {
    probeJobs.push({
      job_name: `${probePrefix}bundle-${t.labels[c.trustDomainLabel].replace(/[^a-zA-Z0-9]+/g, '-')}`, metrics_path: '/probe', params: { module: [t.labels.module] },
      scrape_interval: probeInterval, scrape_timeout: probeInterval, static_configs: [t], relabel_configs: relabel,
    });
  }
  return {
    global: { scrape_interval: interval, scrape_timeout: parseDurationSeconds(interval, 'interval') < 10 ? interval : '10s', evaluation_interval: interval },
    rule_files: ruleFiles,
    alerting: { alertmanagers: [{ static_configs: [{ targets: [alertmanager] }] }] },
    scrape_configs: [
      staticJob(jobName('server'), domains.map((d) => ({ url: d.server.metrics, td: d.trustDomain }))),
      staticJob(jobName('agent'), domains.flatMap((d) => d.agents.map((a) => ({ url: a.metrics, td: d.trustDomain })))),
      staticJob(jobName('prober'), [{ url: e.prober.metrics, td: e.trustDomain }]),
      // The exporter labels its series with the trust domain they are about: keep those (honor_labels).
      staticJob(jobName('exporter'), [{ url: e.exporter.metrics, td: e.trustDomain }], { honor_labels: true }),
      ...probeJobs,
      ...(opts.extraTargets ?? []).map((t) => ({
        job_name: t.job, metrics_path: new URL(t.url).pathname,
        static_configs: [{ targets: [hostOf(t.url)], labels: { ...labels(e.trustDomain), ...t.labels } }],
      })),
    ],
  };
}

/** The scrape job name a component's selector selects (`job="x"`, or the prefix of `job=~"x.+"`). */
function jobNameOf(c: MonitoringConfig, component: keyof MonitoringConfig['selectors']): string {
  const m = /job=~?"([^"]+)"/.exec(c.selectors[component]);
  if (!m || /[|*+?()[\]]/.test(m[1].replace(/\.\+$/, ''))) throw new SvidscopeError('config-invalid', `cannot derive a job name from selector ${c.selectors[component]}`);
  return m[1].replace(/\.\+$/, '');
}

/**
 * Serves a Prometheus textfile (read at every scrape; empty until it exists) on a free loopback
 * port. The file is node_exporter textfile-collector input, i.e. the text format, so that is the
 * one format offered: a scraper asking for OpenMetrics gets text, as negotiation allows.
 */
export async function serveTextfile(file: string): Promise<{ url: string; server: Server }> {
  const server = createHttpServer((req, res) => {
    const { contentType } = negotiateExposition(req.headers.accept, { openMetrics: false });
    let body = '';
    try {
      body = readFileSync(file, 'utf8');
    } catch {
      // not written yet: no chaos run so far
    }
    res.writeHead(200, { 'content-type': contentType }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  return { url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, server };
}

/** trust domain → name of the prober's bundle_endpoint module for it (from the prober config `svidscope up` wrote). */
function proberBundleModules(configFile: string): Map<string, string> {
  const out = new Map<string, string>();
  try {
    const doc = parse(readFileSync(configFile, 'utf8')) as { modules?: Record<string, { prober?: string; bundle_endpoint?: { trust_domain?: string } }> };
    for (const [name, m] of Object.entries(doc.modules ?? {})) {
      if (m.prober === 'bundle_endpoint' && m.bundle_endpoint?.trust_domain) out.set(m.bundle_endpoint.trust_domain, name);
    }
  } catch {
    // no readable prober config: no bundle-endpoint probe jobs
  }
  return out;
}

async function waitReady(url: string, proc: ResultPromise, what: string, log: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new SvidscopeError('unavailable', `${what} exited during start; see ${log}`);
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new SvidscopeError('unavailable', `${what} was not ready within ${timeoutMs / 1000}s; see ${log}`);
}
