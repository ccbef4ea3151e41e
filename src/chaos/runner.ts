import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Experiment, ExpectedAlert, MethodStep } from './experiment/schema.js';
import { faultImpl, type PreparedFault } from './faults/index.js';
import { checkHypothesis, describeTolerance, withinTolerance, type HypothesisRun } from './hypothesis.js';
import type { AlertRecord, Journal, FaultRecord, RollbackRecord } from './journal.js';
import { chaosDir, Ledger, playRollback, recover } from './ledger.js';
import { ChaosMetrics, type Verdict } from './metrics.js';
import { sleep, snapshot } from './proc.js';
import type { AlertmanagerClient, PrometheusClient } from './prometheus.js';
import { renderReport } from './report.js';
import type { StackView } from './stack.js';

export interface RunOptions {
  dataDir: string;
  stack: StackView;
  prometheus?: PrometheusClient;
  alertmanager?: AlertmanagerClient;
  /** Aborting (Ctrl-C, SIGTERM) stops the method; rollbacks still run. */
  signal?: AbortSignal;
  progress?: (line: string) => void;
  /** SLO objective for the error-budget figure (probe success ratio). */
  sloObjective?: number;
}

export interface RunResult {
  journal: Journal;
  journalFile: string;
  reportFile: string;
}

/** The dry-run plan: what would be checked, injected and undone, without touching anything. */
export function planExperiment(exp: Experiment, stack: StackView | undefined): string[] {
  const lines = [`experiment ${exp.id}: ${exp.title}`, `  ${exp.description.trim().split('\n')[0]}`];
  const br = exp.blastRadius;
  lines.push(`blast radius: servers [${br.servers.join(', ')}] agents [${br.agents.join(', ')}] workloads [${br.workloads.join(', ')}]`);
  lines.push(`steady state (must hold within ${exp.runtime.steadyStateTimeoutMs / 1000}s before, and again within ${exp.runtime.recoveryTimeoutMs / 1000}s after):`);
  for (const p of exp.steadyState.probes) lines.push(p.type === 'promql' ? `  - ${p.name}: ${p.query} ${describeTolerance(p.tolerance)}` : `  - ${p.name}: /probe module=${p.module} target=${p.target} expect ${p.expect}`);
  lines.push('method:');
  exp.method.forEach((s, i) => {
    const plan = faultImpl(s).plan(s, stack);
    lines.push(`  ${i + 1}. ${s.name} [${s.fault}] for ${s.durationMs / 1000}s`, `     inject:   ${plan.inject}`, `     rollback: ${plan.rollback}`);
  });
  if (exp.expectedAlerts.length) lines.push('expected alerts:', ...exp.expectedAlerts.map((a) => `  - ${a.name}${Object.keys(a.labels).length ? ` ${JSON.stringify(a.labels)}` : ''} firing within ${a.withinMs / 1000}s of the first injection`));
  if (exp.haltConditions.length) lines.push('halt (abort and roll back) when:', ...exp.haltConditions.map((h) => `  - ${h.name}: ${h.query} leaves ${describeTolerance(h.tolerance)}`));
  lines.push('dry run: nothing was changed');
  return lines;
}

class Interrupted extends Error {}
class Halted extends Error {
  constructor(readonly condition: string, readonly samples: unknown) {
    super(`halt condition '${condition}' violated`);
  }
}

export async function runExperiment(exp: Experiment, o: RunOptions): Promise<RunResult> {
  const progress = o.progress ?? (() => undefined);
  const t0 = new Date();
  const runId = `${t0.toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${exp.id}`;
  const dir = chaosDir(o.dataDir);
  const runDir = path.join(dir, 'runs', runId);
  mkdirSync(runDir, { recursive: true });
  const ledger = new Ledger(o.dataDir);
  const metrics = new ChaosMetrics(dir);
  const leftovers = await recover(ledger);
  if (leftovers.faults.length) progress(`recovered ${leftovers.faults.length} fault(s) left by an earlier harness`);
  ledger.beginRun({ runId, experiment: exp.id, harnessPid: process.pid, harnessStartTime: snapshot(process.pid).startTime, startedAt: t0.toISOString() });

  const journal: Journal = {
    'svidscope-chaos-version': 1, run_id: runId, experiment: exp, node: hostname(), start: t0.toISOString(), end: '', duration: 0,
    status: 'completed', deviated: false, verdict: 'passed', reasons: [], steady_states: { during: [] }, run: [], rollbacks: [], alerts: [], recovered: false, leftovers: [],
  };
  const alerts: (AlertRecord & { spec: ExpectedAlert })[] = exp.expectedAlerts.map((a) => ({ spec: a, name: a.name, labels: a.labels, within_seconds: a.withinMs / 1000, fired: false, checked_alertmanager: !!o.alertmanager }));
  let firstInjection: number | undefined;
  const interrupted = () => o.signal?.aborted === true;

  const pollAlerts = async () => {
    if (firstInjection === undefined || !o.prometheus) return;
    const since = (Date.now() - firstInjection) / 1000;
    for (const a of alerts) {
      try {
        if (a.prometheus_delay_seconds === undefined && (await o.prometheus.firing(a.name, a.labels)).length > 0) {
          a.prometheus_delay_seconds = since;
          progress(`alert ${a.name} firing in Prometheus after ${since.toFixed(0)}s`);
        }
        if (o.alertmanager && a.alertmanager_delay_seconds === undefined) {
          const am = (await o.alertmanager.alerts(a.name)).filter((x) => x.status.state === 'active' && Object.entries(a.labels).every(([k, v]) => x.labels[k] === v));
          if (am.length > 0) {
            a.alertmanager_delay_seconds = since;
            progress(`alert ${a.name} received by Alertmanager after ${since.toFixed(0)}s`);
          }
        }
      } catch (err) {
        progress(`alert check failed: ${(err as Error).message}`);
      }
    }
  };
  const alertsSettled = () => alerts.every((a) => (a.prometheus_delay_seconds !== undefined && (!o.alertmanager || a.alertmanager_delay_seconds !== undefined)) || (firstInjection !== undefined && Date.now() - firstInjection > a.spec.withinMs));

  const checkHalts = async () => {
    if (!o.prometheus) return;
    for (const h of exp.haltConditions) {
      // No data is not a violation (a scrape gap must not abort a game day); a bad value is.
      const samples = await o.prometheus.query(h.query).catch(() => undefined);
      if (samples && samples.length > 0 && !withinTolerance(samples, h.tolerance)) throw new Halted(h.name, samples);
    }
  };

  const hypothesisUntil = async (timeoutMs: number, label: string): Promise<HypothesisRun> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const h = await checkHypothesis(exp.steadyState.probes, o.prometheus, o.stack);
      if (h.steady_state_met || Date.now() >= deadline || interrupted()) return h;
      progress(`${label}: steady state not met yet (${h.probes.filter((p) => !p.tolerance_met).map((p) => p.name).join(', ')}); retrying`);
      await pollAlerts();
      await sleep(exp.runtime.pollIntervalMs, o.signal);
    }
  };

  const rollBack = async (step: MethodStep, prepared: PreparedFault, faultId: string, rec: FaultRecord) => {
    const at = new Date();
    try {
      const notes = await playRollback(prepared.rollback);
      await prepared.release?.();
      ledger.removeFault(runId, faultId);
      journal.rollbacks.push({ step: step.name, status: 'succeeded', at: at.toISOString(), notes } satisfies RollbackRecord);
      progress(`rolled back ${step.name}${notes.length ? `: ${notes.join('; ')}` : ''}`);
    } catch (err) {
      journal.rollbacks.push({ step: step.name, status: 'failed', at: at.toISOString(), notes: [], error: (err as Error).message });
      progress(`ROLLBACK FAILED for ${step.name}: ${(err as Error).message} (run svidscope chaos recover)`);
    } finally {
      rec.rolled_back_at = new Date().toISOString();
      metrics.faultActive(exp.id, step.name, false);
    }
  };

  try {
    progress(`[${exp.id}] checking steady state: ${exp.steadyState.title}`);
    journal.steady_states.before = await hypothesisUntil(exp.runtime.steadyStateTimeoutMs, 'before');
    if (interrupted()) throw new Interrupted();
    if (!journal.steady_states.before.steady_state_met) {
      journal.status = 'failed';
      journal.reasons.push(`steady state not met before the method: ${journal.steady_states.before.probes.filter((p) => !p.tolerance_met).map((p) => `${p.name}${p.error ? ` (${p.error})` : ''}`).join(', ')}`);
      progress('steady state not met before the method: skipping it');
    } else {
      for (const [i, step] of exp.method.entries()) {
        if (interrupted()) throw new Interrupted();
        const rec: FaultRecord = { step: step.name, fault: step.fault, target: '', status: 'failed' };
        journal.run.push(rec);
        const faultId = `${i}-${step.name}`;
        let prepared: PreparedFault | undefined;
        try {
          prepared = await faultImpl(step).prepare(step, { stack: o.stack, backupDir: path.join(dir, 'backups', runId), progress });
          rec.target = prepared.target;
          ledger.addFault(runId, { id: faultId, step: step.name, kind: step.fault, target: prepared.target, state: 'applying', injectedAt: new Date().toISOString(), rollback: prepared.rollback });
          metrics.faultActive(exp.id, step.name, true);
          progress(`injecting ${step.name} [${step.fault}] on ${prepared.target} for ${step.durationMs / 1000}s`);
          rec.injected_at = new Date().toISOString();
          firstInjection ??= Date.now();
          rec.output = await prepared.apply();
          rec.status = 'succeeded';
          ledger.setFault(runId, faultId, { state: 'active' });
          const until = Date.now() + step.durationMs;
          while (Date.now() < until) {
            if (interrupted()) throw new Interrupted();
            await checkHalts();
            await pollAlerts();
            await sleep(Math.min(exp.runtime.pollIntervalMs, Math.max(0, until - Date.now())), o.signal);
          }
        } catch (err) {
          if (!(err instanceof Interrupted) && !(err instanceof Halted)) {
            rec.error = (err as Error).message;
            journal.status = 'failed';
            journal.reasons.push(`fault ${step.name} could not be injected: ${rec.error}`);
            progress(`fault ${step.name} failed: ${rec.error}`);
          }
          if (prepared) await rollBack(step, prepared, faultId, rec);
          if (err instanceof Interrupted || err instanceof Halted) throw err;
          break;
        }
        await rollBack(step, prepared, faultId, rec);
        if (step.pauseAfterMs) await sleep(step.pauseAfterMs, o.signal);
      }
    }
  } catch (err) {
    if (err instanceof Halted) {
      journal.status = 'interrupted';
      journal.halt = { condition: err.condition, at: new Date().toISOString(), samples: err.samples };
      journal.reasons.push(err.message);
      progress(`HALT: ${err.message}; aborted and rolled back`);
    } else if (err instanceof Interrupted || interrupted()) {
      journal.status = 'interrupted';
      journal.reasons.push('interrupted (signal); faults rolled back');
      progress('interrupted: faults rolled back');
    } else {
      journal.status = 'aborted';
      journal.reasons.push(`unexpected error: ${(err as Error).message}`);
    }
  }

  // After the method: the system must return to steady state, and the alerts get their full window.
  if (journal.steady_states.before?.steady_state_met) {
    if (journal.status === 'completed') progress('waiting for steady state to return');
    const after = await hypothesisUntil(exp.runtime.recoveryTimeoutMs, 'after');
    journal.steady_states.after = after;
    journal.recovered = after.steady_state_met;
    if (after.steady_state_met && firstInjection !== undefined) journal.time_to_recovery_seconds = (Date.now() - firstInjection) / 1000;
    if (!after.steady_state_met) {
      journal.deviated = true;
      journal.reasons.push(`steady state did not return within ${exp.runtime.recoveryTimeoutMs / 1000}s: ${after.probes.filter((p) => !p.tolerance_met).map((p) => p.name).join(', ')}`);
    }
    while (journal.status === 'completed' && !alertsSettled() && !interrupted()) {
      await pollAlerts();
      await sleep(exp.runtime.pollIntervalMs, o.signal);
    }
    await pollAlerts();
  }
  for (const a of alerts) {
    a.fired = a.prometheus_delay_seconds !== undefined && a.prometheus_delay_seconds <= a.within_seconds
      && (!o.alertmanager || (a.alertmanager_delay_seconds !== undefined && a.alertmanager_delay_seconds <= a.within_seconds));
    if (journal.status === 'completed' && !a.fired) {
      journal.deviated = true;
      journal.reasons.push(`expected alert ${a.name} did not fire within ${a.within_seconds}s (Prometheus: ${fmt(a.prometheus_delay_seconds)}, Alertmanager: ${o.alertmanager ? fmt(a.alertmanager_delay_seconds) : 'not checked'})`);
    }
  }
  journal.alerts = alerts.map(({ spec: _spec, ...a }) => a);

  const end = new Date();
  if (o.prometheus && firstInjection !== undefined) journal.slo = await errorBudget(o.prometheus, (end.getTime() - firstInjection) / 1000, o.sloObjective ?? 0.999).catch(() => undefined);
  const rolledBackOk = journal.rollbacks.every((r) => r.status === 'succeeded');
  if (!rolledBackOk) journal.reasons.push('a rollback failed: the system may still carry a fault (svidscope chaos recover)');
  journal.leftovers = ledger.read().runs.filter((r) => r.runId === runId).flatMap((r) => r.faults.map((f) => `${f.step} on ${f.target}`));
  ledger.endRun(runId);
  journal.verdict = verdictOf(journal, rolledBackOk);
  journal.end = end.toISOString();
  journal.duration = (end.getTime() - t0.getTime()) / 1000;
  metrics.runFinished(exp.id, journal.verdict, end);

  const journalFile = path.join(runDir, 'journal.json');
  const reportFile = path.join(runDir, 'report.md');
  writeFileSync(journalFile, JSON.stringify(journal, null, 2) + '\n');
  writeFileSync(reportFile, renderReport(journal));
  progress(`[${exp.id}] verdict: ${journal.verdict.toUpperCase()}${journal.reasons.length ? ` (${journal.reasons.join('; ')})` : ''}`);
  return { journal, journalFile, reportFile };
}

function verdictOf(j: Journal, rolledBackOk: boolean): Verdict {
  if (j.status === 'interrupted' || j.status === 'aborted') return 'aborted';
  if (j.status === 'failed' || !rolledBackOk) return 'failed';
  return j.deviated ? 'deviated' : 'passed';
}

const fmt = (s: number | undefined) => (s === undefined ? 'never' : `${s.toFixed(0)}s`);

/**
 * Error budget burned during the run, on the probe-success SLI: the bad fraction over the run
 * window, as a share of the budget of a 30-day window at `objective`.
 */
async function errorBudget(prom: PrometheusClient, windowSeconds: number, objective: number): Promise<Journal['slo']> {
  const w = Math.max(1, Math.ceil(windowSeconds));
  const query = `1 - avg(avg_over_time(svidscope_prober_probe_success[${w}s]))`;
  const [s] = await prom.query(query);
  const errorRatio = s && Number.isFinite(s.value) ? s.value : 0;
  return { objective, window_seconds: w, error_ratio: errorRatio, budget_burned_ratio: (errorRatio * w) / ((1 - objective) * 30 * 86400), query };
}
