/**
 * The exporter's composition: config → sources (background) → state → scrape. `startExporter`
 * is the one entry point (the CLI's `exporter run` and `svidscope up` call it); `createExporter`
 * is the same without HTTP, for benchmarks and tests that feed the state directly.
 */
import Fastify from 'fastify';
import { systemClock, type Clock } from '../common/clock.js';
import { nullLogger, type Logger } from '../common/log.js';
import { checkHostPort } from '../common/net.js';
import { connectAdmin } from '../identity-plane/server-api/admin-client.js';
import type { ExporterConfig, SourceConfig } from './config.js';
import type { CredentialKind, ErrorReason } from './names.js';
import { negotiateExposition, type ExpositionFormat } from '../common/telemetry/exposition.js';
import { renderMetrics, type RenderResult } from './render.js';
import { SelfMetrics } from './self-metrics.js';
import { ExporterState, type SourceRole } from './state.js';
import { createBundleEndpointSource } from './sources/bundle-endpoint.js';
import { createFilesSource } from './sources/files.js';
import { createServerAdminSource, type AdminConnector } from './sources/server-admin.js';
import type { Source, SourceContext } from './sources/types.js';
import { createWorkloadApiSource } from './sources/workload-api.js';

export interface ExporterDeps {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** How server_admin sources reach the admin socket; the CLI's admin client by default. */
  readonly connectAdmin?: AdminConnector;
  /** prom-client's process/runtime families (default on). */
  readonly processMetrics?: boolean;
}

export interface RunningExporter {
  /** `http://host:port` of /metrics, /healthz, /ready. */
  readonly url: string;
  stop(): Promise<void>;
}

export interface Exporter {
  readonly state: ExporterState;
  readonly metrics: SelfMetrics;
  readonly sources: readonly Source[];
  start(): void;
  stop(): Promise<void>;
  /** One scrape's body within `budgetMs` (default: the configured scrape timeout), in `format` (default text). */
  render(budgetMs?: number, format?: ExpositionFormat): Promise<RenderResult>;
}

const KINDS_BY_TYPE: Record<SourceConfig['type'], readonly CredentialKind[]> = {
  workload_api: ['x509_svid', 'ca', 'jwt_authority'],
  files: ['x509_svid', 'ca', 'jwt_authority'],
  bundle_endpoint: ['ca', 'jwt_authority'],
  server_admin: ['x509_svid', 'ca', 'jwt_authority'],
};

const ROLE_BY_TYPE: Record<SourceConfig['type'], SourceRole> = { workload_api: 'agent', server_admin: 'server', files: 'other', bundle_endpoint: 'other' };

export function createExporter(config: ExporterConfig, deps: ExporterDeps = {}): Exporter {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? nullLogger();
  const metrics = new SelfMetrics({ processMetrics: deps.processMetrics });
  const state = new ExporterState({ clock, metrics, perSvid: config.perSvidSeries, references: config.propagationReferences });

  const sources = config.sources.map((sc): Source => {
    state.addSource(sc.name, ROLE_BY_TYPE[sc.type]);
    metrics.addSource(sc.name, { kinds: KINDS_BY_TYPE[sc.type], lag: !config.propagationReferences.includes(sc.name) });
    const log = logger.child({ source: sc.name });
    const ctx: SourceContext = {
      clock,
      logger: log,
      observe: (snapshot) => state.observe(sc.name, snapshot),
      fail: (reason: ErrorReason, err: unknown) => {
        state.error(sc.name, reason);
        log.debug({ reason, err: (err as Error)?.message }, 'source failed');
      },
      itemError: (reason: ErrorReason) => state.itemError(sc.name, reason),
    };
    switch (sc.type) {
      case 'workload_api':
        return createWorkloadApiSource(sc, ctx);
      case 'files':
        return createFilesSource(sc, ctx);
      case 'bundle_endpoint':
        return createBundleEndpointSource(sc, ctx);
      case 'server_admin':
        return createServerAdminSource(sc, ctx, deps.connectAdmin ?? connectAdmin);
    }
  });

  const renderOpts = { maxSeries: config.maxSeries, perSvidSeries: config.perSvidSeries, perSvidMaxSeries: config.perSvidMaxSeries, authorityMaxSeries: config.authorityMaxSeries };
  return {
    state,
    metrics,
    sources,
    start: () => sources.forEach((s) => s.start()),
    stop: async () => {
      await Promise.all(sources.map((s) => s.stop()));
    },
    render: (budgetMs = config.scrapeTimeoutSeconds * 1000, format: ExpositionFormat = 'text') => renderMetrics(state, metrics, clock, renderOpts, budgetMs, format),
  };
}

/** Starts the sources and the HTTP endpoints; resolves once listening. */
export async function startExporter(config: ExporterConfig, deps: ExporterDeps = {}): Promise<RunningExporter> {
  const logger = deps.logger ?? nullLogger();
  const exporter = createExporter(config, deps);
  const app = Fastify({ logger: false });
  app.get('/metrics', async (req, reply) => {
    // Prometheus says how long it will wait; leave it half a second to receive the body.
    const header = Number(req.headers['x-prometheus-scrape-timeout-seconds']);
    const budgetSeconds = Number.isFinite(header) && header > 0 ? Math.min(config.scrapeTimeoutSeconds, Math.max(0.05, header - 0.5)) : config.scrapeTimeoutSeconds;
    const exposition = negotiateExposition(req.headers.accept);
    const result = await exporter.render(budgetSeconds * 1000, exposition.format);
    return reply.header('content-type', exposition.contentType).send(result.body);
  });
  const healthy = async () => ({ ok: true, checks: { process: 'ok' } });
  app.get('/healthz', healthy);
  app.get('/live', healthy);
  app.get('/ready', async (_req, reply) => {
    const r = exporter.state.ready();
    return reply.code(r.ok ? 200 : 503).send(r);
  });
  const { host, port } = checkHostPort(config.listen, 'listen');
  exporter.start();
  try {
    await app.listen({ host, port });
  } catch (err) {
    await exporter.stop();
    throw err;
  }
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  logger.info({ url, sources: config.sources.map((s) => `${s.type}:${s.name}`) }, 'exporter listening (/metrics, /healthz, /ready)');
  let stopping: Promise<void> | undefined;
  return {
    url,
    stop: () => (stopping ??= (async () => {
      await app.close();
      await exporter.stop();
    })()),
  };
}
