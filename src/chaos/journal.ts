import type { Experiment } from './experiment/schema.js';
import type { HypothesisRun } from './hypothesis.js';
import type { Verdict } from './metrics.js';

/** The run journal (chaostoolkit's shape: status + deviated, plus svidscope's verdict and alert timings). */
export interface FaultRecord {
  step: string;
  fault: string;
  target: string;
  status: 'succeeded' | 'failed' | 'skipped';
  injected_at?: string;
  rolled_back_at?: string;
  output?: Record<string, unknown>;
  error?: string;
}

export interface RollbackRecord {
  step: string;
  status: 'succeeded' | 'failed';
  at: string;
  notes: string[];
  error?: string;
}

export interface AlertRecord {
  name: string;
  labels: Record<string, string>;
  within_seconds: number;
  /** The rule's `for` as loaded in Prometheus (the shortest, for an alert with several rules). */
  for_seconds?: number;
  fired: boolean;
  /** Seconds from the first injection until Prometheus reported it firing. */
  prometheus_delay_seconds?: number;
  /** Seconds until Alertmanager had it (active). */
  alertmanager_delay_seconds?: number;
  checked_alertmanager: boolean;
}

export interface Journal {
  'svidscope-chaos-version': 1;
  run_id: string;
  experiment: Experiment;
  node: string;
  start: string;
  end: string;
  duration: number;
  status: 'completed' | 'failed' | 'aborted' | 'interrupted';
  deviated: boolean;
  verdict: Verdict;
  reasons: string[];
  steady_states: { before?: HypothesisRun; after?: HypothesisRun; during: HypothesisRun[] };
  run: FaultRecord[];
  rollbacks: RollbackRecord[];
  alerts: AlertRecord[];
  halt?: { condition: string; at: string; samples: unknown };
  /** From the first injection to the after-hypothesis holding again. */
  time_to_recovery_seconds?: number;
  recovered: boolean;
  slo?: { objective: number; window_seconds: number; error_ratio: number; budget_burned_ratio: number; query: string };
  leftovers: string[];
}
