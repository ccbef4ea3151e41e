// Every endpoint a Prometheus scrapes, as a second consumer would meet it after Prometheus: the
// server, an agent (both tracing, so histograms carry exemplars), the prober (/metrics and /probe)
// and the exporter as real processes, plus the chaos textfile server. Each endpoint is scraped as
// OpenMetrics, then as text, then as OpenMetrics again; every answer must carry the content type
// it negotiated and pass that format's judge (the strict OpenMetrics parser, or promtool).
import { createServer, type Server } from 'node:http';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';
import { ChaosMetrics } from '../../src/chaos/index.js';
import { serveTextfile } from '../../src/monitoring/stack.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { ACCEPT, CONTENT_TYPE, expositionProblems, scrapeAs, type ScrapeFormat } from '../support/openmetrics.js';
import { removeDir, tempDir } from '../support/server.js';

const TD = 'example.org';
const dir = tempDir('exposition-formats');
chmodSync(dir, 0o755);
const socketPath = path.join(dir, 'agent', 'public', 'api.sock');
const procs: ReturnType<typeof spawnCli>[] = [];
let admin: AdminClient | undefined;
let receiver: Server;
let chaos: { url: string; server: Server } | undefined;
const urls: Record<string, string> = {};

const logs = () => procs.map((p) => p.logs().slice(-1500)).join('\n---\n');

beforeAll(async () => {
  // A sink for the spans: tracing on is what puts exemplars on the server's and agent's histograms.
  receiver = createServer((req, res) => req.resume().on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}')));
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as { port: number }).port}`, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '200' };

  const ports = { server: await freePort(), serverHealth: await freePort(), agentHealth: await freePort(), prober: await freePort(), exporter: await freePort() };
  writeFileSync(path.join(dir, 'server.yaml'), [
    `trust_domain: ${TD}`, `data_dir: ${path.join(dir, 'server')}`, `bind: 127.0.0.1:${ports.server}`,
    `health_bind: 127.0.0.1:${ports.serverHealth}`, 'cache_reload_interval: 1s', 'log_level: warn',
  ].join('\n'));
  const server = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')], otel);
  procs.push(server);
  urls.server = `http://127.0.0.1:${ports.serverHealth}/metrics`;
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${ports.serverHealth}/ready`), 60_000, server.logs);
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const { token, agentId } = await bootstrapAgent(admin, { dir, trustDomain: TD, serverPort: ports.server, healthPort: ports.agentHealth, socketPath, extra: ['log_level: warn'] });
  await admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/probe/client`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${process.getuid?.() ?? 0}` }] } });
  const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), '--join-token', token], otel);
  procs.push(agent);
  urls.agent = `http://127.0.0.1:${ports.agentHealth}/metrics`;
  await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${ports.agentHealth}/ready`), 60_000, agent.logs);

  writeFileSync(path.join(dir, 'prober.yaml'), [
    `listen: 127.0.0.1:${ports.prober}`, 'log_level: warn',
    'modules:', `  x509: { prober: x509_svid, x509_svid: { expected_trust_domain: ${TD} } }`,
    'targets:', `  - { name: agent-x509, module: x509, target: "unix://${socketPath}", interval: 1s }`,
  ].join('\n'));
  writeFileSync(path.join(dir, 'exporter.yaml'), [
    `listen: 127.0.0.1:${ports.exporter}`, 'log_level: warn', 'sources:',
    `  - { name: server, type: server_admin, socket: ${path.join(dir, 'server', 'admin.sock')}, interval: 1s }`,
    `  - { name: agent, type: workload_api, address: "unix://${socketPath}" }`,
  ].join('\n'));
  const prober = spawnCli(['prober', 'run', '--config', path.join(dir, 'prober.yaml')]);
  const exporter = spawnCli(['exporter', 'run', '--config', path.join(dir, 'exporter.yaml')]);
  procs.push(prober, exporter);
  urls.prober = `http://127.0.0.1:${ports.prober}/metrics`;
  urls.probe = `http://127.0.0.1:${ports.prober}/probe?module=x509&target=${encodeURIComponent(`unix://${socketPath}`)}`;
  urls.exporter = `http://127.0.0.1:${ports.exporter}/metrics`;

  // The chaos harness's textfile after one game day, served the way `svidscope up` serves it.
  const metrics = new ChaosMetrics(path.join(dir, 'chaos'));
  metrics.faultActive('agent-outage', 'kill', false);
  metrics.runFinished('agent-outage', 'passed', new Date());
  chaos = await serveTextfile(metrics.file);
  urls.chaos = `${chaos.url}/metrics`;

  await waitFor('exporter ready', () => httpOk(`http://127.0.0.1:${ports.exporter}/ready`), 60_000, exporter.logs);
  // Scheduled probes went through the Workload API: the prober has results and the agent traced
  // requests, so both counters and exemplars are there to be rendered.
  await waitFor('a successful scheduled probe', async () => /^svidscope_prober_probe_success\{[^}]*target="agent-x509"\} 1$/m.test(await (await fetch(urls.prober)).text()), 60_000, logs);
  await waitFor('an exemplar on the agent', async () => / # \{trace_id="[0-9a-f]{32}"\}/.test(await (await fetch(urls.agent, { headers: { accept: ACCEPT.openmetrics } })).text()), 20_000, logs);
}, 240_000);

afterAll(async () => {
  admin?.close();
  for (const p of procs) {
    p.child.kill('SIGTERM');
    await p.child;
  }
  chaos?.server.close();
  receiver?.close();
  removeDir(dir);
});

describe('exposition formats, whichever scraper came first', () => {
  const endpoints: [string, boolean][] = [
    ['server', true], ['agent', true], ['prober', true], ['probe', true], ['exporter', true],
    // The textfile is node_exporter's text format; it is offered as text to every scraper.
    ['chaos', false],
  ];

  it.each(endpoints)('%s: OpenMetrics, then text, then OpenMetrics, each valid in its format', async (name, speaksOpenMetrics) => {
    const answers: { format: ScrapeFormat; contentType: string | null; body: string }[] = [];
    for (const format of ['openmetrics', 'text', 'openmetrics'] as const) {
      const a = await scrapeAs(urls[name], format);
      answers.push({ format, ...a });
      const expected = speaksOpenMetrics ? CONTENT_TYPE[format] : CONTENT_TYPE.text;
      expect(a.contentType, `${name} answer ${answers.length} (${format})`).toBe(expected);
      expect(await expositionProblems(a.contentType, a.body), `${name} answer ${answers.length} (${format})\n${a.body.slice(0, 3000)}`).toBe('');
    }
    const [om, text] = answers;
    // The symptom of the shared state, checked directly: text names counters with _total after an
    // OpenMetrics scrape, and carries no exemplar (its grammar has none).
    const counters = [...text.body.matchAll(/^# TYPE (\S+) counter$/gm)].map((m) => m[1]);
    // (/probe answers gauges only, as blackbox_exporter does.)
    if (name !== 'probe') expect(counters.length, `${name} has counters`).toBeGreaterThan(0);
    for (const c of counters) expect(c, `${name} text counter`).toMatch(/_total$/);
    expect(text.body).not.toMatch(/ # \{/);
    if (speaksOpenMetrics) {
      const omCounters = [...om.body.matchAll(/^# TYPE (\S+) counter$/gm)].map((m) => m[1]);
      for (const c of omCounters) expect(c, `${name} OpenMetrics counter family`).not.toMatch(/_total$/);
    }
    if (name === 'server' || name === 'agent') expect(answers[2].body, `${name} exemplars in OpenMetrics`).toMatch(/_bucket\{[^}]*\} \d+ # \{trace_id="[0-9a-f]{32}"\} \S+ \S+$/m);
  }, 30_000);
});
