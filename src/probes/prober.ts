/**
 * The prober process: blackbox-style `/probe?target=&module=` (one probe per request, its metrics
 * as the answer), scheduled probing of the configured targets with their results on `/metrics`,
 * one continuous rotation watch per `rotation_watch` target, and `/live` + `/ready`.
 */
import Fastify from 'fastify';
import type { Registry } from 'prom-client';
import { systemClock, type Clock, type TimerHandle } from '../common/clock.js';
import { isSvidscopeError } from '../common/errors/catalog.js';
import { nullLogger, type Logger } from '../common/log.js';
import { checkHostPort } from '../common/net.js';
import { negotiateExposition, renderExposition } from '../common/telemetry/exposition.js';
import type { ModuleConfig, ProberConfig, TargetConfig } from './config.js';
import { renderProbeMetrics } from './exposition.js';
import { createProberMetrics } from './metrics.js';
import { watchRotations, type RotationWatcher } from './modules/rotation-watch.js';
import { runProbe } from './probe.js';
import { formatReport, reportJson } from './report.js';
import type { ProbeResult } from './result.js';

export interface ProberDeps {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Where the prober's own metrics go; a fresh registry (with process metrics) by default. */
  readonly registry?: Registry;
}

export interface RunningProber {
  readonly url: string;
  /** The last result of each scheduled target, by target name. */
  lastResults(): ReadonlyMap<string, ProbeResult>;
  stop(): Promise<void>;
}

const MAX_WATCH_BACKOFF_MS = 30_000;

export async function startProber(config: ProberConfig, deps: ProberDeps = {}): Promise<RunningProber> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? nullLogger();
  const metrics = createProberMetrics(deps.registry, { processMetrics: deps.registry === undefined });
  const results = new Map<string, ProbeResult>();
  const timers = new Map<string, TimerHandle>();
  const watchers = new Map<string, RotationWatcher>();
  const inFlight = new Set<Promise<unknown>>();
  let stopping = false;

  const app = Fastify({ logger: false });
  app.get('/live', async () => ({ ok: true, checks: {} }));
  app.get('/ready', async () => ({ ok: !stopping, checks: { targets: String(config.targets.length) } }));
  app.get('/metrics', async (req, reply) => {
    const exposition = negotiateExposition(req.headers.accept);
    return reply.header('content-type', exposition.contentType).send(await renderExposition(metrics.registry, exposition));
  });
  app.get('/probe', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    const module = config.modules.get(q.module ?? '');
    if (!q.target) return reply.code(400).type('text/plain').send('target parameter is missing\n');
    if (!module) return reply.code(400).type('text/plain').send(`unknown module ${JSON.stringify(q.module ?? '')}; known: ${[...config.modules.keys()].join(', ')}\n`);
    // blackbox: the scrape timeout Prometheus announces, minus an offset, capped by the module's.
    const header = Number(req.headers['x-prometheus-scrape-timeout-seconds']);
    const timeoutSeconds = Number.isFinite(header) && header > 0 ? Math.max(0.1, header - config.timeoutOffsetSeconds) : undefined;
    let result: ProbeResult;
    try {
      result = await track(runProbe(module, q.target, { clock, timeoutSeconds }));
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'config-invalid') return reply.code(400).type('text/plain').send(`${err.message}\n`);
      throw err;
    }
    metrics.recordAdhoc(result);
    logger.debug({ module: module.name, target: q.target, success: result.success, reason: result.reason }, 'probe');
    if (q.format === 'json') return reply.send(reportJson(result));
    if (q.debug === 'true') return reply.type('text/plain').send(`${formatReport(result).join('\n')}\n\n${renderProbeMetrics(result)}`);
    const exposition = negotiateExposition(req.headers.accept);
    return reply.header('content-type', exposition.contentType).send(renderProbeMetrics(result, exposition.format));
  });

  function track<T>(p: Promise<T>): Promise<T> {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  function schedule(t: TargetConfig, module: ModuleConfig, delayMs: number): void {
    if (stopping) return;
    timers.set(t.name, clock.setTimeout(() => {
      const started = clock.nowMs();
      track(runProbe(module, t.target, { clock }))
        .then((r) => {
          const before = results.get(t.name);
          results.set(t.name, r);
          metrics.record(t.name, r);
          // Log changes of verdict only: a target failing every 30 s is one line, not one per probe.
          if (!r.success && before?.reason !== r.reason) logger.warn({ target: t.name, module: module.name, reason: r.reason, message: r.message }, 'probe failing');
          else if (r.success && before && !before.success) logger.info({ target: t.name, module: module.name }, 'probe succeeds again');
        }, (err: unknown) => logger.error({ target: t.name, err: (err as Error).message }, 'probe could not run (configuration)'))
        .finally(() => schedule(t, module, Math.max(0, t.intervalSeconds * 1000 - (clock.nowMs() - started))));
    }, delayMs));
  }

  function watch(t: TargetConfig, module: Extract<ModuleConfig, { kind: 'rotation_watch' }>, backoffMs: number): void {
    if (stopping) return;
    // A stream that delivered its first message was healthy: reopen it soon; else back off.
    let healthyAgain = false;
    const w = watchRotations(t.target, module.settings, clock, {
      first(svid, life) {
        metrics.watch.up(t.name, true);
        metrics.watch.state(t.name, true);
        metrics.watch.svid(t.name, life.notAfter, life.remainingRatio);
        healthyAgain = true;
        logger.info({ target: t.name, spiffeId: svid.id.toString() }, 'rotation watch: stream open');
      },
      rotation(r) {
        metrics.watch.rotation(t.name, r.oldRemainingRatio, r.newValid);
        if (r.newValid) {
          metrics.watch.state(t.name, true);
          metrics.watch.svid(t.name, r.newLifetime.notAfter, r.newLifetime.remainingRatio);
        }
      },
      problem(reason, message, fatal) {
        metrics.watch.state(t.name, false, reason);
        logger.warn({ target: t.name, reason, message, fatal }, 'rotation watch problem');
      },
    });
    watchers.set(t.name, w);
    void w.done.then(() => {
      metrics.watch.up(t.name, false);
      if (stopping) return;
      metrics.watch.restart(t.name);
      const next = healthyAgain ? 1000 : Math.min(MAX_WATCH_BACKOFF_MS, backoffMs * 2);
      timers.set(`watch:${t.name}`, clock.setTimeout(() => watch(t, module, next), next));
    });
  }

  const { host, port } = checkHostPort(config.listen, 'listen');
  await app.listen({ host, port });
  const address = app.server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  logger.info({ url, targets: config.targets.length }, 'prober listening (/probe, /metrics, /live, /ready)');

  config.targets.forEach((t, i) => {
    const module = config.modules.get(t.module)!;
    metrics.initTarget(module.name, t.name);
    if (module.kind === 'rotation_watch') {
      metrics.watch.init(t.name);
      watch(t, module, 500);
    } else {
      // Spread the first round over a second so targets do not all start at once.
      schedule(t, module, Math.floor((i * 1000) / Math.max(1, config.targets.length)));
    }
  });

  return {
    url,
    lastResults: () => results,
    async stop() {
      stopping = true;
      for (const t of timers.values()) clock.clearTimeout(t);
      for (const w of watchers.values()) w.close();
      await Promise.allSettled([...inFlight]);
      await app.close();
    },
  };
}

