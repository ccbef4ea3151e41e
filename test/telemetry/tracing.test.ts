// Traces end to end: server and agent as real processes exporting OTLP/HTTP (JSON) to a receiver
// in this test; one workload's FetchJWTSVID must be one trace across agent and server.
import { createServer, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin, type AdminClient } from '../../src/cli/admin/client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { createWorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

interface ExportedSpan { service: string; name: string; traceId: string; spanId: string; parentSpanId?: string; attributes: Record<string, unknown> }

const dir = tempDir('tracing');
const spans: ExportedSpan[] = [];
let exportRequests = 0;
let receiver: Server;
let receiverUrl: string;
const procs: ReturnType<typeof spawnCli>[] = [];
let admin: AdminClient;

function collect(body: string): void {
  const doc = JSON.parse(body) as { resourceSpans?: { resource?: { attributes?: { key: string; value: { stringValue?: string } }[] }; scopeSpans?: { spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; attributes?: { key: string; value: Record<string, unknown> }[] }[] }[] }[] };
  for (const rs of doc.resourceSpans ?? []) {
    const service = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
    for (const ss of rs.scopeSpans ?? []) for (const sp of ss.spans ?? []) {
      spans.push({ service, name: sp.name, traceId: sp.traceId, spanId: sp.spanId, parentSpanId: sp.parentSpanId || undefined,
        attributes: Object.fromEntries((sp.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]])) });
    }
  }
}

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      exportRequests++;
      if (req.url === '/v1/traces') collect(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const addr = receiver.address();
  receiverUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}, 30_000);

afterAll(async () => {
  admin?.close();
  for (const p of procs) {
    p.child.kill('SIGTERM');
    await p.child;
  }
  receiver?.close();
  removeDir(dir);
});

const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '100' };

describe('tracing', () => {
  it('makes one trace of a workload\'s FetchJWTSVID across agent and server, with SPIFFE attributes', async () => {
    const env = { ...otel, OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl };
    const [port, health, agentHealth] = [await freePort(), await freePort(), await freePort()];
    const server = spawnCli(['server', 'run', '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'server'), '--bind', `127.0.0.1:${port}`, '--health-bind', `127.0.0.1:${health}`], env);
    procs.push(server);
    await waitFor('server ready', () => httpOk(`http://127.0.0.1:${health}/ready`), 30_000, server.logs);
    admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
    const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
    writeFileSync(path.join(dir, 'bundle.pem'), x509BundleToPem(parseSpiffeBundle(EXAMPLE_ORG, bundle.document)));
    const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
    await admin.call('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/traced', parent_id: `spiffe://example.org/spire/agent/join_token/${token.value}`, selectors: [{ type: 'unix', value: `uid:${process.getuid?.() ?? 0}` }] } });
    const socket = path.join(dir, 'agent', 'api.sock');
    writeFileSync(path.join(dir, 'agent.yaml'), `sync_interval: 1s\nsocket_path: ${socket}\n`);
    const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), '--trust-domain', 'example.org', '--server-address', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'agent'),
      '--join-token', token.value, '--trust-bundle', path.join(dir, 'bundle.pem'), '--health-bind', `127.0.0.1:${agentHealth}`], env);
    procs.push(agent);
    await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${agentHealth}/ready`), 30_000, agent.logs);

    const client = createWorkloadApiClient({ address: `unix://${socket}`, deadlineMs: 10_000 });
    const svid = await waitFor('JWT-SVID', () => client.fetchJwtSvid({ audience: ['traced-audience'] }), 20_000, agent.logs);
    client.close();
    expect(svid.id.toString()).toBe('spiffe://example.org/traced');

    const [agentSpan, mintSpan] = await waitFor('agent and server spans of one trace', async () => {
      const a = spans.find((s) => s.service === 'svidscope-agent' && s.name === 'svidscope.agent/FetchJWTSVID');
      const m = a && spans.find((s) => s.service === 'svidscope-server' && s.name === 'svidscope.server/mint jwt-svid' && s.traceId === a.traceId);
      return a && m ? [a, m] as const : undefined;
    }, 20_000, () => JSON.stringify(spans.map((s) => [s.service, s.name, s.traceId]), null, 1));
    expect(mintSpan.attributes['spiffe.id']).toBe('spiffe://example.org/traced');
    expect(mintSpan.attributes['spiffe.svid_type']).toBe('jwt');
    expect(agentSpan.attributes['spiffe.id']).toBe('spiffe://example.org/traced');
    // The server's RPC span is the child of the agent's outgoing context.
    const rpc = spans.find((s) => s.name === 'svidscope.server/NewJWTSVID' && s.traceId === agentSpan.traceId);
    expect(rpc).toBeDefined();
    expect(mintSpan.parentSpanId).toBe(rpc!.spanId);
    // With tracing on, latency histograms carry the trace id as an OpenMetrics exemplar.
    const om = await (await fetch(`http://127.0.0.1:${agentHealth}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } })).text();
    const exemplars = [...om.matchAll(/^svidscope_agent_workload_api_request_duration_seconds_bucket\{[^}]*method="FetchJWTSVID"[^}]*\} \d+ # \{trace_id="([0-9a-f]{32})"\}/gm)].map((m) => m[1]);
    expect(exemplars).toContain(agentSpan.traceId);
    expect(om.trimEnd().endsWith('# EOF')).toBe(true);
    // The sync loop and the datastore are traced too.
    expect(spans.some((s) => s.service === 'svidscope-agent' && s.name === 'svidscope.agent/sync')).toBe(true);
    expect(spans.some((s) => s.service === 'svidscope-server' && s.name.startsWith('svidscope.datastore/'))).toBe(true);
  }, 90_000);

  it('starts no exporter when tracing is off, even with an endpoint configured', async () => {
    // Stop the traced processes first, so every export from now on would come from the new server.
    for (const p of procs.splice(0)) {
      p.child.kill('SIGTERM');
      await p.child;
    }
    admin.close();
    await new Promise((r) => setTimeout(r, 300));
    const before = exportRequests;
    const health = await freePort();
    const env = { ...otel, OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl, OTEL_TRACES_EXPORTER: 'none' };
    const server = spawnCli(['server', 'run', '--trust-domain', 'example.org', '--data-dir', path.join(dir, 'off'), '--bind', '127.0.0.1:0', '--health-bind', `127.0.0.1:${health}`], env);
    procs.push(server);
    await waitFor('server ready', () => httpOk(`http://127.0.0.1:${health}/ready`), 30_000, server.logs);
    const off = connectAdmin(path.join(dir, 'off', 'admin.sock'));
    await off.call('CreateJoinToken', { ttl: 60 });
    off.close();
    await new Promise((r) => setTimeout(r, 1500));
    // Start-up alone runs datastore operations, which would be spans if tracing were on.
    expect(exportRequests).toBe(before);
    expect(server.logs()).not.toContain('tracing on');
  }, 60_000);
});
