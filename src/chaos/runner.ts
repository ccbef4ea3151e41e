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

/** Clock slack when telling alerts raised by this run from older ones (Prometheus and the harness share a host). */
const ACTIVE_AT_SLACK_MS = 2000;

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

  // An alert counts for this run only if it became active after the first injection (less a little
  // clock slack): one still going from an earlier experiment proves nothing about this fault.
  const raisedByThisRun = (activeAt: Date) => firstInjection !== undefined && activeAt.getTime() >= firstInjection - ACTIVE_AT_SLACK_MS;
  let polling = false;
  const pollAlerts = async () => {
    if (firstInjection === undefined || !o.prometheus || polling) return;
    polling = true;
    try {
      await pollAlertsOnce(firstInjection, o.prometheus);
    } finally {
      polling = false;
    }
  };
  const pollAlertsOnce = async (injectedAt: number, prometheus: PrometheusClient) => {
    const since = (Date.now() - injectedAt) / 1000;
    for (const a of alerts) {
      try {
        if (a.prometheus_delay_seconds === undefined && (await prometheus.alerts(a.name, a.labels)).some((x) => x.state === 'firing' && raisedByThisRun(x.activeAt))) {
          a.prometheus_delay_seconds = since;
          progress(`alert ${a.name} firing in Prometheus after ${since.toFixed(0)}s`);
        }
        if (o.alertmanager && a.alertmanager_delay_seconds === undefined) {
          const am = (await o.alertmanager.alerts(a.name)).filter((x) => x.status.state === 'active' && raisedByThisRun(new Date(x.startsAt)) && Object.entries(a.labels).every(([k, v]) => x.labels[k] === v));
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

  /**
   * Before anything is injected: every expected alert must be loaded in Prometheus with a `for`
   * that fits its window (production rules wait minutes; `svidscope up --alert-profile gameday`
   * loads rules made for rehearsals), else the run could only deviate.
   */
  const preflight = async (): Promise<string[]> => {
    if (!o.prometheus || alerts.length === 0) return [];
    const rules = await o.prometheus.alertRules();
    const problems: string[] = [];
    for (const a of alerts) {
      const rule = rules.get(a.name);
      if (!rule) problems.push(`expected alert ${a.name} is not loaded in Prometheus (${o.prometheus.url}): load alerts/svidscope-alerts.yaml`);
      else {
        a.for_seconds = rule.forSeconds;
        if (rule.forSeconds >= a.within_seconds) problems.push(`expected alert ${a.name} waits for: ${rule.forSeconds}s in Prometheus but must fire within ${a.within_seconds}s: it cannot fire in time (run the stack with \`svidscope up --alert-profile gameday\`, or raise \`within\`)`);
      }
    }
    return problems;
  };

  /** Expected alerts still pending or firing from an earlier run: the names, empty when all are quiet. */
  const noisyAlerts = async (): Promise<string[]> => {
    if (!o.prometheus) return [];
    const noisy: string[] = [];
    for (const a of alerts) if ((await o.prometheus.alerts(a.name, a.labels).catch(() => [])).length > 0) noisy.push(a.name);
    return noisy;
  };
  // Alerts are polled on their own loop from the first injection to the end of the run, so their
  // delays stay exact while the harness waits on a slow rollback (e.g. admin calls to a starved server).
  let pollerDone = false;
  let poller: Promise<void> | undefined;
  const startAlertPoller = () => {
    if (poller || !o.prometheus || alerts.length === 0) return;
    poller = (async () => {
      while (!pollerDone) {
        await pollAlerts();
        await new Promise((r) => setTimeout(r, exp.runtime.pollIntervalMs));
      }
    })();
  };
  const allAlertsFired = () => alerts.length > 0 && alerts.every((a) => a.prometheus_delay_seconds !== undefined && (!o.alertmanager || a.alertmanager_delay_seconds !== undefined));

  const alertsSettled = () => alerts.every((a) => (a.prometheus_delay_seconds !== undefined && (!o.alertmanager || a.alertmanager_delay_seconds !== undefined)) || (firstInjection !== undefined && Date.now() - firstInjection > a.spec.withinMs));

  const checkHalts = async () => {
    if (!o.prometheus) return;
    for (const h of exp.haltConditions) {
      // No data is not a violation (a scrape gap must not abort a game day); a bad value is.
      const samples = await o.prometheus.query(h.query).catch(() => undefined);
      if (samples && samples.length > 0 && !withinTolerance(samples, h.tolerance)) throw new Halted(h.name, samples);
    }
  };

  /** Polls the hypothesis (and, before the method, the quiet of the expected alerts) until it holds or time runs out. */
  const hypothesisUntil = async (timeoutMs: number, label: 'before' | 'after'): Promise<{ run: HypothesisRun; noisy: string[] }> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const h = await checkHypothesis(exp.steadyState.probes, o.prometheus, o.stack);
      const noisy = label === 'before' ? await noisyAlerts() : [];
      if ((h.steady_state_met && noisy.length === 0) || Date.now() >= deadline || interrupted()) return { run: h, noisy };
      const waiting = [...h.probes.filter((p) => !p.tolerance_met).map((p) => p.name), ...noisy.map((n) => `${n} still active from before`)];
      progress(`${label}: steady state not met yet (${waiting.join(', ')}); retrying`);
      await pollAlerts();
      await sleep(exp.runtime.pollIntervalMs, o.signal);
    }
  };

  // A rollback that fails may have been blocked by a fault still in place (admin calls to a server
  // starved of CPU, whose throttle is undone after them): it is tried once more after every other
  // rollback ran. Only a second failure leaves the fault to `chaos recover`.
  const retryLater: [MethodStep, PreparedFault, string, FaultRecord][] = [];
  const rollBack = async (step: MethodStep, prepared: PreparedFault, faultId: string, rec: FaultRecord, retry = false) => {
    const at = new Date();
    try {
      const notes = await playRollback(prepared.rollback);
      await prepared.release?.();
      ledger.removeFault(runId, faultId);
      journal.rollbacks.push({ step: step.name, status: 'succeeded', at: at.toISOString(), notes: retry ? ['second attempt, after the other rollbacks', ...notes] : notes } satisfies RollbackRecord);
      progress(`rolled back ${step.name}${notes.length ? `: ${notes.join('; ')}` : ''}`);
    } catch (err) {
      journal.rollbacks.push({ step: step.name, status: 'failed', at: at.toISOString(), notes: retry ? ['second attempt'] : [], error: (err as Error).message });
      if (retry) progress(`ROLLBACK FAILED for ${step.name}: ${(err as Error).message} (run svidscope chaos recover)`);
      else {
        retryLater.push([step, prepared, faultId, rec]);
        progress(`rollback of ${step.name} failed (${(err as Error).message}); trying again after the other rollbacks`);
      }
    } finally {
      rec.rolled_back_at = new Date().toISOString();
      metrics.faultActive(exp.id, step.name, false);
    }
  };

  // Background faults stay injected across the following steps; they are rolled back after the
  // last step (or at once when the run is interrupted, halted or a step fails).
  const background: { step: MethodStep; prepared: PreparedFault; faultId: string; rec: FaultRecord; until: number }[] = [];
  /** Holds the injected faults until `until`, or, with `untilAlerts`, until every expected alert has fired. */
  const holdFor = async (until: number, untilAlerts = false) => {
    while (Date.now() < until && !(untilAlerts && allAlertsFired())) {
      if (interrupted()) throw new Interrupted();
      await checkHalts();
      await pollAlerts();
      await sleep(Math.min(exp.runtime.pollIntervalMs, Math.max(0, until - Date.now())), o.signal);
    }
  };
  const rollBackBackground = async () => {
    while (background.length > 0) {
      const b = background.pop()!;
      await rollBack(b.step, b.prepared, b.faultId, b.rec);
    }
  };

  try {
    progress(`[${exp.id}] checking steady state: ${exp.steadyState.title}`);
    const problems = await preflight();
    const before = problems.length === 0 ? await hypothesisUntil(exp.runtime.steadyStateTimeoutMs, 'before') : undefined;
    journal.steady_states.before = before?.run;
    if (interrupted()) throw new Interrupted();
    if (problems.length > 0) {
      journal.status = 'failed';
      journal.reasons.push(...problems);
      progress(`cannot run: ${problems.join('; ')}`);
    } else if (!before!.run.steady_state_met || before!.noisy.length > 0) {
      journal.status = 'failed';
      const failing = before!.run.probes.filter((p) => !p.tolerance_met).map((p) => `${p.name}${p.error ? ` (${p.error})` : ''}`);
      if (failing.length) journal.reasons.push(`steady state not met before the method: ${failing.join(', ')}`);
      if (before!.noisy.length) journal.reasons.push(`expected alert(s) ${before!.noisy.join(', ')} still active before the method: this run could not tell whether its faults raise them`);
      progress('steady state not met before the method: skipping it');
    } else {
      try {
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
            progress(`injecting ${step.name} [${step.fault}] on ${prepared.target} for ${step.durationMs / 1000}s${step.background ? ' in the background' : ''}`);
            rec.injected_at = new Date().toISOString();
            firstInjection ??= Date.now();
            startAlertPoller();
            rec.output = await prepared.apply();
            rec.status = 'succeeded';
            ledger.setFault(runId, faultId, { state: 'active' });
            if (step.background) {
              background.push({ step, prepared, faultId, rec, until: Date.now() + step.durationMs });
              continue;
            }
            await holdFor(Date.now() + step.durationMs, step.untilAlerts);
            if (step.untilAlerts && allAlertsFired()) progress(`every expected alert fired: ending ${step.name} early`);
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
        if (journal.status === 'completed') await holdFor(Math.max(0, ...background.map((b) => b.until)), background.every((b) => b.step.untilAlerts));
      } finally {
        await rollBackBackground();
        for (const args of retryLater.splice(0)) await rollBack(...args, true);
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
    const after = (await hypothesisUntil(exp.runtime.recoveryTimeoutMs, 'after')).run;
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
  pollerDone = true;
  await poller;
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
  // Every step's last rollback attempt must have succeeded.
  const lastAttempt = new Map(journal.rollbacks.map((r) => [r.step, r.status]));
  const rolledBackOk = [...lastAttempt.values()].every((status) => status === 'succeeded');
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
