import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FaultProxy, parseHostPort, type ProxyMode } from './fault-proxy.js';
import { SvidscopeError } from '../common/errors/catalog.js';

/**
 * A fault relay: a FaultProxy that passes traffic through until told otherwise, plus a loopback
 * HTTP control endpoint (toxiproxy's API idea, one mode at a time). `svidscope up` puts one in
 * front of the server for every agent, so a game day can partition or slow one agent's link
 * without touching the agent: no config rewrite, no restart, its cache stays as it was.
 *
 *   GET  /mode  → {"kind":"pass"}
 *   PUT  /mode  {"kind":"partition"|"reset"|"pass"} or {"kind":"latency","ms":500} → the new mode
 */
export interface FaultRelay {
  /** Where the agent dials (host:port). */
  address: string;
  /** Base URL of the control endpoint. */
  control: string;
  stop(): Promise<void>;
}

export async function startFaultRelay(upstream: string): Promise<FaultRelay> {
  const proxy = new FaultProxy(parseHostPort(upstream));
  await proxy.start();
  const control: Server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url !== '/mode') return reply(404, { error: 'only /mode exists' });
    if (req.method === 'GET') return reply(200, proxy.mode);
    if (req.method !== 'PUT') return reply(405, { error: 'GET or PUT /mode' });
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const mode = parseMode(text);
      if (typeof mode === 'string') return reply(400, { error: mode });
      proxy.setMode(mode);
      reply(200, proxy.mode);
    });
  });
  await new Promise<void>((resolve, reject) => {
    control.once('error', reject);
    control.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    address: proxy.address,
    control: `http://127.0.0.1:${(control.address() as AddressInfo).port}`,
    async stop() {
      await new Promise<void>((resolve) => control.close(() => resolve()));
      await proxy.stop();
    },
  };
}

/** A mode from its JSON body, or the problem with it. */
export function parseMode(text: string): ProxyMode | string {
  let body: { kind?: unknown; ms?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    return 'body must be JSON such as {"kind":"partition"}';
  }
  if (body.kind === 'pass' || body.kind === 'partition' || body.kind === 'reset') return { kind: body.kind };
  if (body.kind === 'latency') {
    if (typeof body.ms !== 'number' || !(body.ms > 0 && body.ms <= 60_000)) return 'latency needs ms between 1 and 60000';
    return { kind: 'latency', ms: body.ms };
  }
  return `kind must be pass, partition, reset or latency (got ${JSON.stringify(body.kind)})`;
}

/** Client side, for the harness: read or set a relay's mode. */
export async function relayMode(control: string, mode?: ProxyMode): Promise<ProxyMode> {
  const res = await fetch(`${control}/mode`, { method: mode ? 'PUT' : 'GET', body: mode ? JSON.stringify(mode) : undefined, signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as ProxyMode & { error?: string };
  if (!res.ok) throw new SvidscopeError('chaos-fault-failed', `fault relay ${control}: ${body.error ?? res.status}`);
  return body;
}
