import type { Clock } from '../../common/clock.js';
import type { MethodStep } from '../experiment/schema.js';
import type { RollbackStep } from '../ledger.js';
import type { StackComponent, StackView } from '../stack.js';

export interface FaultContext {
  stack: StackView;
  /** Where backups go (`<dataDir>/chaos/backups/<runId>`). */
  backupDir: string;
  progress(line: string): void;
  /** The run's clock: every wait and timestamp of a fault reads it. */
  clock: Clock;
}

/**
 * A prepared fault: its inverse is known (and written to the ledger) before `apply` changes
 * anything. `release` frees in-process resources (the fault proxy) after the rollback steps.
 */
export interface PreparedFault {
  target: string;
  rollback: RollbackStep[];
  apply(): Promise<Record<string, unknown>>;
  release?(): Promise<void>;
}

export interface FaultKindImpl<S extends MethodStep = MethodStep> {
  /** One line for the dry-run plan: what would be done and how it would be undone. */
  plan(step: S, stack: StackView | undefined): { inject: string; rollback: string };
  prepare(step: S, ctx: FaultContext): Promise<PreparedFault>;
}

export function startStep(c: StackComponent, snap: { argv: string[]; env: Record<string, string>; cwd: string; uid: number; gid: number }, replace: boolean): RollbackStep {
  return { op: 'start', component: c.name, match: { config: c.config, workloadName: c.workloadName }, argv: snap.argv, env: snap.env, cwd: snap.cwd, uid: snap.uid, gid: snap.gid, log: c.log, health: c.health, replace };
}
