import path from 'node:path';
import { loadSuite, resolveExperiment } from './experiment/validate.js';
import type { Verdict } from './metrics.js';
import { runExperiment, type RunOptions } from './runner.js';

export interface GamedayResult {
  suite: string;
  results: { experiment: string; verdict: Verdict; duration: number; report: string; reasons: string[] }[];
  summary: Record<Verdict, number>;
}

/** Runs a suite's experiments in sequence (never in parallel: one blast radius at a time). */
export async function runGameday(suiteName: string, dir: string, o: RunOptions): Promise<GamedayResult> {
  const suite = loadSuite(suiteName, dir);
  const experiments = suite.experiments.map((e) => resolveExperiment(e, path.dirname(suite.file!)));
  const result: GamedayResult = { suite: suite.id, results: [], summary: { passed: 0, deviated: 0, failed: 0, aborted: 0 } };
  for (const [i, exp] of experiments.entries()) {
    if (o.signal?.aborted) break;
    o.progress?.(`=== game day ${suite.id}: ${i + 1}/${experiments.length} ${exp.id} ===`);
    const r = await runExperiment(exp, o);
    result.results.push({ experiment: exp.id, verdict: r.journal.verdict, duration: r.journal.duration, report: r.reportFile, reasons: r.journal.reasons });
    result.summary[r.journal.verdict]++;
  }
  return result;
}
