import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  AlertmanagerClient, chaosDir, Ledger, listExperimentFiles, loadExperimentFile, loadStack, planExperiment, PrometheusClient, recover, resolveExperiment, runExperiment, runGameday,
  type RunOptions,
} from '../../chaos/index.js';
import { projectRoot } from '../up/children.js';
import { CommandExit, printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { systemClock } from '../../common/clock.js';

interface Common {
  dataDir: string;
  experiments: string;
  prometheusUrl?: string;
  alertmanagerUrl?: string;
  json?: boolean;
}

const defaultExperiments = () => process.env.SVIDSCOPE_EXPERIMENTS ?? path.join(projectRoot, 'experiments');

function common(cmd: Command): Command {
  return cmd
    .option('--data-dir <dir>', 'the `svidscope up` data directory (endpoints.json; chaos state, journals and metrics go under <dir>/chaos)', '.svidscope/up')
    .option('--experiments <dir>', 'where experiments and suites live', defaultExperiments())
    .option('--json', 'one JSON object as the result');
}

function withProm(cmd: Command): Command {
  return cmd
    .option('--prometheus-url <url>', 'Prometheus for PromQL probes, halt conditions and alerts (default: the one `svidscope up` started, from endpoints.json)', process.env.SVIDSCOPE_PROMETHEUS_URL)
    .option('--alertmanager-url <url>', 'Alertmanager: expected alerts must also reach it (default: the one `svidscope up` started)', process.env.SVIDSCOPE_ALERTMANAGER_URL);
}

/** The Prometheus and Alertmanager `svidscope up` started, as recorded in its endpoints.json. */
function upMonitoring(dataDir: string): { prometheus?: string; alertmanager?: string } {
  try {
    const e = JSON.parse(readFileSync(path.join(dataDir, 'endpoints.json'), 'utf8')) as { monitoring?: { prometheus?: string; alertmanager?: string } };
    return { prometheus: e.monitoring?.prometheus, alertmanager: e.monitoring?.alertmanager };
  } catch {
    return {};
  }
}

/**
 * Ctrl-C / SIGTERM abort the method; rollbacks always run. A second signal is ignored while
 * rolling back (the ledger would still let `chaos recover` finish the job).
 */
function abortOnSignals(io: Io): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const on = (sig: NodeJS.Signals) => {
    if (!ac.signal.aborted) io.err(`${sig}: stopping the method and rolling back (a second signal is ignored until rollback ends)`);
    ac.abort();
  };
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return { signal: ac.signal, dispose: () => (process.off('SIGINT', on), process.off('SIGTERM', on)) };
}

function runOptions(f: Common & { quiet?: boolean }, io: Io, signal: AbortSignal): RunOptions {
  const dataDir = path.resolve(f.dataDir);
  const up = upMonitoring(dataDir);
  const prometheusUrl = f.prometheusUrl ?? up.prometheus;
  const alertmanagerUrl = f.alertmanagerUrl ?? up.alertmanager;
  return {
    dataDir, stack: loadStack(dataDir), signal, clock: systemClock,
    prometheus: prometheusUrl ? new PrometheusClient(prometheusUrl) : undefined,
    alertmanager: alertmanagerUrl ? new AlertmanagerClient(alertmanagerUrl) : undefined,
    progress: f.json ? undefined : (line) => io.err(`${systemClock.now().toISOString().slice(11, 19)} ${line}`),
  };
}

export function registerChaosCommands(program: Command, io: Io): void {
  const chaos = program.command('chaos').description('hypothesis-driven chaos experiments and game days, with guaranteed rollback');

  common(chaos.command('list').description('list the shipped experiments (validated)')).action(withErrors(io, async (f: Common) => {
    const items = listExperimentFiles(f.experiments).map((file) => {
      try {
        const e = loadExperimentFile(file);
        return { id: e.id, title: e.title, faults: e.method.map((m) => m.fault), alerts: e.expectedAlerts.map((a) => a.name), valid: true };
      } catch (err) {
        return { id: path.basename(file), title: '', faults: [], alerts: [], valid: false, error: (err as Error).message };
      }
    });
    printResult(io, f, { experiments: items }, () => items.map((e) => e.valid ? `${e.id.padEnd(28)} ${e.title}  [${e.faults.join(', ')}]${e.alerts.length ? ` → ${e.alerts.join(', ')}` : ''}` : `${e.id.padEnd(28)} INVALID: ${e.error}`));
    if (items.some((e) => !e.valid)) throw new CommandExit(2);
  }));

  withProm(common(chaos.command('run <experiment>').description('run one experiment (a name in --experiments or a file); journal and report under <data-dir>/chaos/runs')))
    .option('--dry-run', 'validate and print the plan; change nothing')
    .action(withErrors(io, async (name: string, f: Common & { dryRun?: boolean }) => {
      const exp = resolveExperiment(name, f.experiments);
      if (f.dryRun) {
        const dataDir = path.resolve(f.dataDir);
        const stack = existsSync(path.join(dataDir, 'endpoints.json')) ? loadStack(dataDir) : undefined;
        const plan = planExperiment(exp, stack);
        printResult(io, f, { experiment: exp.id, dryRun: true, plan }, () => plan);
        return;
      }
      const sig = abortOnSignals(io);
      try {
        const r = await runExperiment(exp, runOptions(f, io, sig.signal));
        printResult(io, f, { experiment: exp.id, verdict: r.journal.verdict, reasons: r.journal.reasons, journal: r.journalFile, report: r.reportFile }, () => [
          `${exp.id}: ${r.journal.verdict.toUpperCase()}`, ...r.journal.reasons.map((x) => `  - ${x}`), `journal: ${r.journalFile}`, `report:  ${r.reportFile}`,
        ]);
        if (r.journal.verdict !== 'passed') throw new CommandExit(1);
      } finally {
        sig.dispose();
      }
    }));

  withProm(common(chaos.command('gameday <suite>').description('run a suite of experiments in sequence, with a summary'))).action(withErrors(io, async (suite: string, f: Common) => {
    const sig = abortOnSignals(io);
    try {
      const r = await runGameday(suite, f.experiments, runOptions(f, io, sig.signal));
      printResult(io, f, { ...r }, () => [
        `game day ${r.suite}: ${Object.entries(r.summary).map(([k, v]) => `${v} ${k}`).join(', ')}`,
        ...r.results.map((x) => `  ${x.verdict.toUpperCase().padEnd(9)} ${x.experiment.padEnd(28)} ${x.duration.toFixed(0)}s  ${x.report}`),
      ]);
      if (r.results.some((x) => x.verdict !== 'passed')) throw new CommandExit(1);
    } finally {
      sig.dispose();
    }
  }));

  chaos.command('recover').description('roll back every fault a dead harness left behind (reads <data-dir>/chaos/state.json)')
    .option('--data-dir <dir>', 'the `svidscope up` data directory', '.svidscope/up')
    .option('--force', 'also roll back runs whose harness is still alive')
    .option('--json', 'one JSON object as the result')
    .action(withErrors(io, async (f: { dataDir: string; force?: boolean; json?: boolean }) => {
      const ledger = new Ledger(path.resolve(f.dataDir));
      const r = await recover(ledger, { force: f.force });
      printResult(io, f, { ...r, state: path.join(chaosDir(path.resolve(f.dataDir)), 'state.json') }, () => r.faults.length === 0 ? ['nothing to recover'] : r.faults.map((x) => `${x.ok ? 'recovered' : 'FAILED   '} ${x.experiment}/${x.fault}: ${x.ok ? x.notes.join('; ') : x.error}`));
      if (r.faults.some((x) => !x.ok)) throw new CommandExit(1);
    }));
}
