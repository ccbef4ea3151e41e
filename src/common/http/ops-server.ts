import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { negotiateExposition, renderExposition } from '../telemetry/exposition.js';

export interface HealthReport {
  ok: boolean;
  /** Per-subsystem detail, e.g. { datastore: 'ok', ca: 'no active key' }. */
  checks: Record<string, string>;
}

export interface OpsServerOptions {
  host: string;
  port: number;
  registry: Registry;
  logger: Logger;
  /** Liveness: the process is not wedged (answers with 503 when it should be restarted). */
  live(): Promise<HealthReport>;
  /** Readiness: the component can serve its purpose now. */
  ready(): Promise<HealthReport>;
}

/**
 * The operational HTTP endpoints every long-running svidscope process serves: `/live`,
 * `/ready` (200 or 503 with a JSON report) and `/metrics` (Prometheus text, or OpenMetrics when
 * the scraper asks for it, so exemplars show; each scrape in its own format, telemetry/exposition.ts).
 */
export async function startOpsServer(opts: OpsServerOptions): Promise<{ app: FastifyInstance; url: string; close(): Promise<void> }> {
  const app = Fastify({ logger: false });
  const report = (check: () => Promise<HealthReport>) => async (_req: unknown, reply: import('fastify').FastifyReply) => {
    let result: HealthReport;
    try {
      result = await check();
    } catch (err) {
      result = { ok: false, checks: { error: (err as Error).message } };
    }
    return reply.code(result.ok ? 200 : 503).send(result);
  };
  app.get('/live', report(opts.live));
  app.get('/ready', report(opts.ready));
  app.get('/metrics', async (req, reply) => {
    const exposition = negotiateExposition(req.headers.accept);
    return reply.header('content-type', exposition.contentType).send(await renderExposition(opts.registry, exposition));
  });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  opts.logger.info({ url }, 'ops endpoints listening (/live, /ready, /metrics)');
  return { app, url, close: () => app.close() };
}
