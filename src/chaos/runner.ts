import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Clock } from '../common/clock.js';
import { AlertWatch } from './alert-watch.js';
import type { Experiment, MethodStep } from './experiment/schema.js';
import { faultImpl, type PreparedFault } from './faults/index.js';
import type { FaultKindImpl } from './faults/types.js';
import { checkHypothesis, describeTolerance, withinTolerance, type HypothesisRun } from './hypothesis.js';
import type { Journal, FaultRecord, RollbackRecord } from './journal.js';
import { chaosDir, Ledger, playRollback, recover, type RollbackStep } from './ledger.js';
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
  /** The one source of time for the run and its faults (systemClock from the CLI). */
  clock: Clock;
  /** Aborting (Ctrl-C, SIGTERM) stops the method; rollbacks still run. */
  signal?: AbortSignal;
  progress?: (line: string) => void;
  /** SLO objective for the error-budget figure (probe success ratio). */
  sloObjective?: number;
  /** The fault kinds and the rollback player: the built-in kinds and the ledger's player unless a test stands in for them. */
  faults?: { impl(step: MethodStep): FaultKindImpl; playRollback(steps: RollbackStep[]): Promise<string[]> };
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

/** Runs one experiment: steady state before, the method with its rollbacks, steady state after, verdict. */
export async function runExperiment(exp: Experiment, o: RunOptions): Promise<RunResult> {
  // The run waits on o.clock's timers, and systemClock's do not hold the process open (a daemon
  // must be free to exit): the run holds it open itself until its verdict is written.
  const keepAlive = setInterval(() => undefined, KEEP_ALIVE_MS);
  try {
    const run = await ExperimentRun.begin(exp, o);
    try {
      if (await run.steadyStateBefore()) await run.method();
    } catch (err) {
      run.recordAbort(err);
    }
    await run.steadyStateAfter();
    return await run.verdict();
  } finally {
    clearInterval(keepAlive);
  }
}

/** Never fires in practice: the interval only keeps the event loop referenced. */
const KEEP_ALIVE_MS = 2 ** 30;

/** A fault injected by the method, with what it takes to undo it. */
interface InjectedFault {
  step: MethodStep;
  prepared: PreparedFault;
  faultId: string;
  rec: FaultRecord;
}

/** One run of an experiment: its journal, ledger entry, metrics and expected alerts. */
class ExperimentRun {
  private readonly progress: (line: string) => void;
  private readonly clock: Clock;
  private readonly alerts: AlertWatch;
  // A rollback that fails may have been blocked by a fault still in place (admin calls to a server
  // starved of CPU, whose throttle is undone after them): it is tried once more after every other
  // rollback ran. Only a second failure leaves the fault to `chaos recover`.
  private readonly retryLater: InjectedFault[] = [];
  // Background faults stay injected across the following steps; they are rolled back after the
  // last step (or at once when the run is interrupted, halted or a step fails).
  private readonly background: (InjectedFault & { until: number })[] = [];

  private constructor(
    private readonly exp: Experiment,
    private readonly o: RunOptions,
    private readonly t0: Date,
    private readonly runId: string,
    private readonly dir: string,
    private readonly runDir: string,
    private readonly ledger: Ledger,
    private readonly metrics: ChaosMetrics,
    private readonly journal: Journal,
  ) {
    this.progress = o.progress ?? (() => undefined);
    this.clock = o.clock;
    this.alerts = new AlertWatch(exp, o.prometheus, o.alertmanager, this.progress, o.clock);
  }

  /** Names the run, replays faults an earlier harness left behind and records the run in the ledger. */
  static async begin(exp: Experiment, o: RunOptions): Promise<ExperimentRun> {
    const progress = o.progress ?? (() => undefined);
    const t0 = o.clock.now();
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
    return new ExperimentRun(exp, o, t0, runId, dir, runDir, ledger, metrics, journal);
  }

  /** Steady state before the method; false (with the reasons in the journal) when the method must not run. */
  async steadyStateBefore(): Promise<boolean> {
    const { exp, journal } = this;
    this.progress(`[${exp.id}] checking steady state: ${exp.steadyState.title}`);
    const problems = await this.alerts.preflight();
    const before = problems.length === 0 ? await this.hypothesisUntil(exp.runtime.steadyStateTimeoutMs, 'before') : undefined;
    journal.steady_states.before = before?.run;
    if (this.interrupted()) throw new Interrupted();
    if (problems.length > 0) {
      journal.status = 'failed';
      journal.reasons.push(...problems);
      this.progress(`cannot run: ${problems.join('; ')}`);
      return false;
    }
    if (!before!.run.steady_state_met || before!.noisy.length > 0) {
      journal.status = 'failed';
      const failing = before!.run.probes.filter((p) => !p.tolerance_met).map((p) => `${p.name}${p.error ? ` (${p.error})` : ''}`);
      if (failing.length) journal.reasons.push(`steady state not met before the method: ${failing.join(', ')}`);
      if (before!.noisy.length) journal.reasons.push(`expected alert(s) ${before!.noisy.join(', ')} still active before the method: this run could not tell whether its faults raise them`);
      this.progress('steady state not met before the method: skipping it');
      return false;
    }
    return true;
  }

  /** The method: every step in turn, then the background faults' hold; every fault is rolled back whatever happens. */
  async method(): Promise<void> {
    try {
      for (const [i, step] of this.exp.method.entries()) {
        if (!(await this.runStep(i, step))) break;
      }
      const { background } = this;
      if (this.journal.status === 'completed') await this.holdFor(Math.max(0, ...background.map((b) => b.until)), background.every((b) => b.step.untilAlerts));
    } finally {
      await this.rollBackBackground();
      for (const f of this.retryLater.splice(0)) await this.rollBack(f, true);
    }
  }

  /** Injects one step's fault, holds it and rolls it back; false when the method must stop (the step failed). */
  private async runStep(i: number, step: MethodStep): Promise<boolean> {
    const { journal, ledger, runId } = this;
    if (this.interrupted()) throw new Interrupted();
    const rec: FaultRecord = { step: step.name, fault: step.fault, target: '', status: 'failed' };
    journal.run.push(rec);
    const faultId = `${i}-${step.name}`;
    let prepared: PreparedFault | undefined;
    try {
      prepared = await (this.o.faults?.impl ?? faultImpl)(step).prepare(step, { stack: this.o.stack, backupDir: path.join(this.dir, 'backups', runId), progress: this.progress, clock: this.clock });
      rec.target = prepared.target;
      ledger.addFault(runId, { id: faultId, step: step.name, kind: step.fault, target: prepared.target, state: 'applying', injectedAt: this.clock.now().toISOString(), rollback: prepared.rollback });
      this.metrics.faultActive(this.exp.id, step.name, true);
      this.progress(`injecting ${step.name} [${step.fault}] on ${prepared.target} for ${step.durationMs / 1000}s${step.background ? ' in the background' : ''}`);
      rec.injected_at = this.clock.now().toISOString();
      this.alerts.injected();
      rec.output = await prepared.apply();
      rec.status = 'succeeded';
      ledger.setFault(runId, faultId, { state: 'active' });
      if (step.background) {
        this.background.push({ step, prepared, faultId, rec, until: this.clock.nowMs() + step.durationMs });
        return true;
      }
      await this.holdFor(this.clock.nowMs() + step.durationMs, step.untilAlerts);
      if (step.untilAlerts && this.alerts.allFired()) this.progress(`every expected alert fired: ending ${step.name} early`);
    } catch (err) {
      if (!(err instanceof Interrupted) && !(err instanceof Halted)) {
        rec.error = (err as Error).message;
        journal.status = 'failed';
        journal.reasons.push(`fault ${step.name} could not be injected: ${rec.error}`);
        this.progress(`fault ${step.name} failed: ${rec.error}`);
      }
      if (prepared) await this.rollBack({ step, prepared, faultId, rec });
      if (err instanceof Interrupted || err instanceof Halted) throw err;
      return false;
    }
    await this.rollBack({ step, prepared, faultId, rec });
    if (step.pauseAfterMs) await sleep(step.pauseAfterMs, this.o.signal, this.clock);
    return true;
  }

  /** Holds the injected faults until `until`, or, with `untilAlerts`, until every expected alert has fired. */
  private async holdFor(until: number, untilAlerts = false): Promise<void> {
    while (this.clock.nowMs() < until && !(untilAlerts && this.alerts.allFired())) {
      if (this.interrupted()) throw new Interrupted();
      await this.checkHalts();
      await this.alerts.poll();
      await sleep(Math.min(this.exp.runtime.pollIntervalMs, Math.max(0, until - this.clock.nowMs())), this.o.signal, this.clock);
    }
  }

  private async checkHalts(): Promise<void> {
    const prometheus = this.o.prometheus;
    if (!prometheus) return;
    for (const h of this.exp.haltConditions) {
      // No data is not a violation (a scrape gap must not abort a game day); a bad value is.
      const samples = await prometheus.query(h.query).catch(() => undefined);
      if (samples && samples.length > 0 && !withinTolerance(samples, h.tolerance)) throw new Halted(h.name, samples);
    }
  }

  private async rollBack(f: InjectedFault, retry = false): Promise<void> {
    const { step, prepared, faultId, rec } = f;
    const at = this.clock.now();
    try {
      const notes = await (this.o.faults?.playRollback ?? playRollback)(prepared.rollback);
      await prepared.release?.();
      this.ledger.removeFault(this.runId, faultId);
      this.journal.rollbacks.push({ step: step.name, status: 'succeeded', at: at.toISOString(), notes: retry ? ['second attempt, after the other rollbacks', ...notes] : notes } satisfies RollbackRecord);
      this.progress(`rolled back ${step.name}${notes.length ? `: ${notes.join('; ')}` : ''}`);
    } catch (err) {
      this.journal.rollbacks.push({ step: step.name, status: 'failed', at: at.toISOString(), notes: retry ? ['second attempt'] : [], error: (err as Error).message });
      if (retry) this.progress(`ROLLBACK FAILED for ${step.name}: ${(err as Error).message} (run svidscope chaos recover)`);
      else {
        this.retryLater.push(f);
        this.progress(`rollback of ${step.name} failed (${(err as Error).message}); trying again after the other rollbacks`);
      }
    } finally {
      rec.rolled_back_at = this.clock.now().toISOString();
      this.metrics.faultActive(this.exp.id, step.name, false);
    }
  }

  private async rollBackBackground(): Promise<void> {
    while (this.background.length > 0) await this.rollBack(this.background.pop()!);
  }

  /** Records why the run stopped early: a halt condition, a signal, or an unexpected error. */
  recordAbort(err: unknown): void {
    const { journal } = this;
    if (err instanceof Halted) {
      journal.status = 'interrupted';
      journal.halt = { condition: err.condition, at: this.clock.now().toISOString(), samples: err.samples };
      journal.reasons.push(err.message);
      this.progress(`HALT: ${err.message}; aborted and rolled back`);
    } else if (err instanceof Interrupted || this.interrupted()) {
      journal.status = 'interrupted';
      journal.reasons.push('interrupted (signal); faults rolled back');
      this.progress('interrupted: faults rolled back');
    } else {
      journal.status = 'aborted';
      journal.reasons.push(`unexpected error: ${(err as Error).message}`);
    }
  }

  /** After the method: the system must return to steady state, and the alerts get their full window. */
  async steadyStateAfter(): Promise<void> {
    const { exp, journal, alerts } = this;
    if (journal.steady_states.before?.steady_state_met) {
      if (journal.status === 'completed') this.progress('waiting for steady state to return');
      const after = (await this.hypothesisUntil(exp.runtime.recoveryTimeoutMs, 'after')).run;
      journal.steady_states.after = after;
      journal.recovered = after.steady_state_met;
      if (after.steady_state_met && alerts.firstInjection !== undefined) journal.time_to_recovery_seconds = (this.clock.nowMs() - alerts.firstInjection) / 1000;
      if (!after.steady_state_met) {
        journal.deviated = true;
        journal.reasons.push(`steady state did not return within ${exp.runtime.recoveryTimeoutMs / 1000}s: ${after.probes.filter((p) => !p.tolerance_met).map((p) => p.name).join(', ')}`);
      }
      while (journal.status === 'completed' && !alerts.settled() && !this.interrupted()) {
        await alerts.poll();
        await sleep(exp.runtime.pollIntervalMs, this.o.signal, this.clock);
      }
      await alerts.poll();
    }
  }

  /** Polls the hypothesis (and, before the method, the quiet of the expected alerts) until it holds or time runs out. */
  private async hypothesisUntil(timeoutMs: number, label: 'before' | 'after'): Promise<{ run: HypothesisRun; noisy: string[] }> {
    const { exp, o } = this;
    const deadline = this.clock.nowMs() + timeoutMs;
    for (;;) {
      const h = await checkHypothesis(exp.steadyState.probes, o.prometheus, o.stack, this.clock);
      const noisy = label === 'before' ? await this.alerts.noisy() : [];
      if ((h.steady_state_met && noisy.length === 0) || this.clock.nowMs() >= deadline || this.interrupted()) return { run: h, noisy };
      const waiting = [...h.probes.filter((p) => !p.tolerance_met).map((p) => p.name), ...noisy.map((n) => `${n} still active from before`)];
      this.progress(`${label}: steady state not met yet (${waiting.join(', ')}); retrying`);
      await this.alerts.poll();
      await sleep(exp.runtime.pollIntervalMs, o.signal, this.clock);
    }
  }

  /** The verdict (expected alerts judged, error budget burned, rollbacks checked), the ledger closed, the journal and report written. */
  async verdict(): Promise<RunResult> {
    const { exp, o, journal, ledger, runId } = this;
    await this.alerts.stop();
    this.alerts.judge(journal);
    const firstInjection = this.alerts.firstInjection;
    const end = this.clock.now();
    if (o.prometheus && firstInjection !== undefined) journal.slo = await errorBudget(o.prometheus, (end.getTime() - firstInjection) / 1000, o.sloObjective ?? 0.999).catch(() => undefined);
    // Every step's last rollback attempt must have succeeded.
    const lastAttempt = new Map(journal.rollbacks.map((r) => [r.step, r.status]));
    const rolledBackOk = [...lastAttempt.values()].every((status) => status === 'succeeded');
    if (!rolledBackOk) journal.reasons.push('a rollback failed: the system may still carry a fault (svidscope chaos recover)');
    journal.leftovers = ledger.read().runs.filter((r) => r.runId === runId).flatMap((r) => r.faults.map((f) => `${f.step} on ${f.target}`));
    ledger.endRun(runId);
    journal.verdict = verdictOf(journal, rolledBackOk);
    journal.end = end.toISOString();
    journal.duration = (end.getTime() - this.t0.getTime()) / 1000;
    this.metrics.runFinished(exp.id, journal.verdict, end);

    const journalFile = path.join(this.runDir, 'journal.json');
    const reportFile = path.join(this.runDir, 'report.md');
    writeFileSync(journalFile, JSON.stringify(journal, null, 2) + '\n');
    writeFileSync(reportFile, renderReport(journal));
    this.progress(`[${exp.id}] verdict: ${journal.verdict.toUpperCase()}${journal.reasons.length ? ` (${journal.reasons.join('; ')})` : ''}`);
    return { journal, journalFile, reportFile };
  }

  private interrupted(): boolean {
    return this.o.signal?.aborted === true;
  }
}

function verdictOf(j: Journal, rolledBackOk: boolean): Verdict {
  if (j.status === 'interrupted' || j.status === 'aborted') return 'aborted';
  if (j.status === 'failed' || !rolledBackOk) return 'failed';
  return j.deviated ? 'deviated' : 'passed';
}

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
