import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../common/fs/atomic.js';
import path from 'node:path';

/**
 * Game-day results as a Prometheus text file (`<dataDir>/chaos/metrics.prom`, node_exporter
 * textfile-collector format, rewritten atomically at every change), so the dashboard sees results
 * after the harness has exited. Run counts persist in `metrics-state.json` next to it.
 */
interface State {
  runs: Record<string, Record<string, number>>;
  lastRun: Record<string, number>;
  active: Record<string, Record<string, number>>;
}

export const VERDICTS = ['passed', 'deviated', 'failed', 'aborted'] as const;
export type Verdict = (typeof VERDICTS)[number];

export class ChaosMetrics {
  readonly file: string;
  private readonly stateFile: string;
  constructor(dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = path.join(dir, 'metrics.prom');
    this.stateFile = path.join(dir, 'metrics-state.json');
  }

  private read(): State {
    try {
      if (existsSync(this.stateFile)) return JSON.parse(readFileSync(this.stateFile, 'utf8')) as State;
    } catch {
      // start over
    }
    return { runs: {}, lastRun: {}, active: {} };
  }

  private save(s: State): void {
    // Exclusive temp files: a symlink planted at a predictable `.tmp` name is never followed.
    writeFileAtomic(this.stateFile, JSON.stringify(s), 0o644);
    writeFileAtomic(this.file, render(s), 0o644);
  }

  faultActive(experiment: string, fault: string, active: boolean): void {
    const s = this.read();
    (s.active[experiment] ??= {})[fault] = active ? 1 : 0;
    this.save(s);
  }

  runFinished(experiment: string, verdict: Verdict, at: Date): void {
    const s = this.read();
    const byVerdict = (s.runs[experiment] ??= {});
    byVerdict[verdict] = (byVerdict[verdict] ?? 0) + 1;
    s.lastRun[experiment] = at.getTime() / 1000;
    for (const f of Object.keys(s.active[experiment] ?? {})) s.active[experiment][f] = 0;
    this.save(s);
  }
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

function render(s: State): string {
  const out: string[] = [
    '# HELP svidscope_chaos_experiment_runs_total Chaos experiment runs by verdict.',
    '# TYPE svidscope_chaos_experiment_runs_total counter',
  ];
  for (const [e, byV] of Object.entries(s.runs)) {
    for (const v of VERDICTS) out.push(`svidscope_chaos_experiment_runs_total{experiment="${esc(e)}",verdict="${v}"} ${byV[v] ?? 0}`);
  }
  out.push('# HELP svidscope_chaos_experiment_last_run_timestamp_seconds When the experiment last finished.', '# TYPE svidscope_chaos_experiment_last_run_timestamp_seconds gauge');
  for (const [e, t] of Object.entries(s.lastRun)) out.push(`svidscope_chaos_experiment_last_run_timestamp_seconds{experiment="${esc(e)}"} ${t}`);
  out.push('# HELP svidscope_chaos_fault_active 1 while the fault is injected.', '# TYPE svidscope_chaos_fault_active gauge');
  for (const [e, byF] of Object.entries(s.active)) for (const [f, v] of Object.entries(byF)) out.push(`svidscope_chaos_fault_active{experiment="${esc(e)}",fault="${esc(f)}"} ${v}`);
  return out.join('\n') + '\n';
}
