/**
 * Runs one probe: picks the module, enforces the timeout (an abort at the deadline ends the probe
 * with `timeout` whatever the module was waiting on), classifies any failure to its bounded reason
 * and always runs the module's cleanups.
 */
import { performance } from 'node:perf_hooks';
import { systemClock, type Clock } from '../common/clock.js';
import { isSvidscopeError } from '../common/errors/catalog.js';
import { pathLimitOf } from '../identity-plane/spiffe/x509svid/index.js';
import type { ModuleConfig } from './config.js';
import { createProbeContext, type ProbeContext } from './context.js';
import { probeBundleEndpoint } from './modules/bundle-endpoint.js';
import { probeJwtSvid } from './modules/jwt-svid.js';
import { probeMtls } from './modules/mtls.js';
import { probeRotationWatch } from './modules/rotation-watch.js';
import { probeX509Svid } from './modules/x509-svid.js';
import { classifyError, ProbeFailure } from './reasons.js';
import { ProbeRun, type ProbeResult } from './result.js';

export interface RunProbeOptions {
  readonly clock?: Clock;
  /** Overrides the module's timeout (e.g. from Prometheus' scrape timeout header); never raises it. */
  readonly timeoutSeconds?: number;
}

function dispatch(module: ModuleConfig, run: ProbeRun, target: string, ctx: ProbeContext): Promise<void> {
  switch (module.kind) {
    case 'x509_svid':
      return probeX509Svid(run, target, module.settings, ctx);
    case 'jwt_svid':
      return probeJwtSvid(run, target, module.settings, ctx);
    case 'mtls':
      return probeMtls(run, target, module.settings, ctx);
    case 'bundle_endpoint':
      return probeBundleEndpoint(run, target, module.settings, ctx);
    case 'rotation_watch':
      return probeRotationWatch(run, target, module.settings, ctx);
  }
}

/**
 * Probes `target` with `module`. Resolves with the result in every case but one: a configuration
 * problem (bad target address, missing required setting) rejects with `config-invalid`, because
 * that is the caller's mistake, not the target's failure (`/probe` answers 400, the CLI exits 2).
 */
export async function runProbe(module: ModuleConfig, target: string, opts: RunProbeOptions = {}): Promise<ProbeResult> {
  const clock = opts.clock ?? systemClock;
  const timeoutSeconds = Math.min(module.timeoutSeconds, opts.timeoutSeconds ?? Infinity);
  const ctx = createProbeContext(clock, timeoutSeconds * 1000);
  const run = new ProbeRun();
  const startedAt = clock.now();
  const start = performance.now();
  let failure: { reason: ProbeResult['reason']; message: string } | undefined;
  let limit: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ctx.controller.abort();
      reject(new ProbeFailure('timeout', `no result within the ${timeoutSeconds} s timeout`));
    }, timeoutSeconds * 1000);
  });
  try {
    await Promise.race([dispatch(module, run, target, ctx), timedOut]);
  } catch (err) {
    if (isSvidscopeError(err) && err.code === 'config-invalid') {
      clearTimeout(timer);
      await ctx.runCleanups();
      throw err;
    }
    failure = classifyError(err);
    limit = pathLimitOf(err);
    // A step that failed before recording a check (no socket, a timeout) still shows in the report.
    if (!run.checks.some((c) => !c.ok)) run.checks.push({ name: failure.reason === 'timeout' ? 'timeout' : 'connect', ok: false, detail: failure.message });
  } finally {
    clearTimeout(timer);
    await ctx.runCleanups();
  }
  return {
    module: module.name,
    kind: module.kind,
    target,
    success: failure === undefined,
    ...(failure ? { reason: failure.reason, message: failure.message } : {}),
    ...(limit ? { limit } : {}),
    startedAt,
    durationSeconds: (performance.now() - start) / 1000,
    timeoutSeconds,
    phases: run.phases,
    checks: run.checks,
    gauges: run.gauges,
    facts: run.facts,
    ...(run.svidExpiry ? { svidExpiry: run.svidExpiry.getTime() / 1000, ttlRemainingRatio: run.ttlRemainingRatio, svidLifetimeSeconds: run.svidLifetimeSeconds } : {}),
  };
}
