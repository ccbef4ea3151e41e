import { chmodSync, constants, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { connectAdmin } from '../identity-plane/server-api/admin-client.js';
import { moveBack, removeCgroup, type CpuHierarchy, type ThrottledProc } from './cgroup.js';
import { argvMatcher } from './stack.js';
import { assertPrivate, assertSteps } from './ledger-trust.js';
import { writeFileAtomic } from '../common/fs/atomic.js';
import { findPids, isAlive, respawn, sameProcess, signal, waitFor, httpOk } from './proc.js';
import { deleteEntries, killMarked, publishAuthority, relayPass, removePath, restoreFederation } from './faults/rollback-ops.js';
import { SvidscopeError } from '../common/errors/catalog.js';

/**
 * The write-ahead ledger (chaosd's pattern): before a fault is applied, its inverse is written to
 * `<dataDir>/chaos/state.json` as plain data; `svidscope chaos recover` replays the inverses of
 * whatever a dead harness left behind. Every step is idempotent, so replaying twice is safe.
 */
export type RollbackStep =
  | { op: 'sigcont'; pid: number; startTime: string }
  /** Start the component from the snapshot; with `replace`, first kill whatever copy runs now. */
  | { op: 'start'; component: string; match: { config?: string; workloadName?: string }; argv: string[]; env: Record<string, string>; cwd: string; uid: number; gid: number; log?: string; health?: string; replace: boolean }
  /** Kill -9 every live copy of a component (so files can be restored under it). */
  | { op: 'stop'; component: string; match: { config?: string; workloadName?: string } }
  /** Put `backup` back at `path` (backup absent: nothing was changed yet); `absent` deletes `path`. */
  | { op: 'restore-file'; path: string; backup: string | null; orRemove?: boolean }
  | { op: 'recreate-entries'; adminSocket: string; entries: Record<string, unknown>[] }
  /** Re-create a federation relationship as it was (bundle: the SPIFFE bundle JSON stored before, as bootstrap). */
  | { op: 'restore-federation'; adminSocket: string; relationship: FederationRelationshipCopy; bundle: string | null }
  | { op: 'delete-entries'; adminSocket: string; spiffeIds: string[] }
  /** SIGKILL every process whose argv holds `marker` as an exact element. */
  | { op: 'kill-marked'; marker: string }
  | { op: 'remove-path'; path: string }
  /** Set a `svidscope up` fault relay back to pass-through (relay gone with its `up` = nothing to undo). */
  | { op: 'relay-pass'; control: string; agent: string }
  /** Publish a withheld signing key in the server's trust bundle again (WithholdAuthority withhold=false; key gone = done). */
  | { op: 'publish-authority'; adminSocket: string; kind: 'x509' | 'jwt'; keyId: string }
  /** Move the recorded processes still in the chaos cgroup back to their original cgroups. */
  | { op: 'cgroup-move-back'; hierarchy: CpuHierarchy; cgroup: string; procs: ThrottledProc[] }
  /** Move whatever else is left in the chaos cgroup to `evacuateTo`, then rmdir it (gone = done). */
  | { op: 'cgroup-remove'; hierarchy: CpuHierarchy; cgroup: string; evacuateTo: string };

/** A federation relationship as admin.proto's FederationRelationship (without the output-only `source`). */
export interface FederationRelationshipCopy {
  trust_domain: string;
  bundle_endpoint_url: string;
  bundle_endpoint_profile: string;
  endpoint_spiffe_id?: string;
  web_ca_bundle?: string;
}

export interface LedgerFault {
  id: string;
  step: string;
  kind: string;
  target: string;
  state: 'applying' | 'active';
  injectedAt: string;
  rollback: RollbackStep[];
}

export interface LedgerRun {
  runId: string;
  experiment: string;
  harnessPid: number;
  harnessStartTime: string;
  startedAt: string;
  faults: LedgerFault[];
}

interface LedgerFile {
  version: 1;
  runs: LedgerRun[];
}

export function chaosDir(dataDir: string): string {
  return path.join(dataDir, 'chaos');
}

export class Ledger {
  readonly file: string;
  constructor(readonly dataDir: string) {
    this.file = path.join(chaosDir(dataDir), 'state.json');
  }

  read(): LedgerFile {
    assertPrivate(path.dirname(this.file), 'chaos dir');
    assertPrivate(this.file, 'ledger');
    if (!existsSync(this.file)) return { version: 1, runs: [] };
    try {
      return JSON.parse(readFileSync(this.file, 'utf8')) as LedgerFile;
    } catch {
      // A torn write cannot happen (rename), so this is corruption by hand: keep it for forensics.
      renameSync(this.file, `${this.file}.corrupt-${Date.now()}`);
      return { version: 1, runs: [] };
    }
  }

  private write(f: LedgerFile): void {
    const dir = path.dirname(this.file);
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700); // mkdir's mode is cut by the umask; 0700 exactly
    }
    assertPrivate(dir, 'chaos dir');
    // 0600 through an exclusive temp file: no predictable name a planted symlink could redirect.
    writeFileAtomic(this.file, JSON.stringify(f, null, 2) + '\n');
  }

  private update(fn: (f: LedgerFile) => void): void {
    const f = this.read();
    fn(f);
    f.runs = f.runs.filter((r) => r.faults.length > 0 || r.harnessPid === process.pid);
    this.write(f);
  }

  beginRun(run: Omit<LedgerRun, 'faults'>): void {
    this.update((f) => f.runs.push({ ...run, faults: [] }));
  }

  endRun(runId: string): void {
    this.update((f) => {
      f.runs = f.runs.filter((r) => r.runId !== runId || r.faults.length > 0);
    });
  }

  addFault(runId: string, fault: LedgerFault): void {
    this.update((f) => f.runs.find((r) => r.runId === runId)?.faults.push(fault));
  }

  setFault(runId: string, id: string, patch: Partial<LedgerFault>): void {
    this.update((f) => {
      const fault = f.runs.find((r) => r.runId === runId)?.faults.find((x) => x.id === id);
      if (fault) Object.assign(fault, patch);
    });
  }

  removeFault(runId: string, id: string): void {
    this.update((f) => {
      const run = f.runs.find((r) => r.runId === runId);
      if (run) run.faults = run.faults.filter((x) => x.id !== id);
    });
  }
}

/** Plays one fault's inverse; returns the notes of what was done. Throws on a step that could not be done. */
export async function playRollback(steps: RollbackStep[]): Promise<string[]> {
  const notes: string[] = [];
  for (const s of steps) notes.push(await playStep(s));
  return notes;
}

async function playStep(s: RollbackStep): Promise<string> {
  switch (s.op) {
    case 'sigcont': {
      if (!sameProcess(s)) return `pid ${s.pid} is gone: nothing to resume`;
      signal(s.pid, 'SIGCONT');
      return `SIGCONT ${s.pid}`;
    }
    case 'stop': {
      const pids = findPids(argvMatcher(s.match));
      for (const pid of pids) signal(pid, 'SIGKILL');
      const gone = await waitFor(() => pids.every((p) => !isAlive(p)), 10_000);
      if (!gone) throw new SvidscopeError('chaos-fault-failed', `${s.component} (pids ${pids.join(', ')}) did not die`);
      return pids.length ? `stopped ${s.component} (pid ${pids.join(', ')})` : `${s.component} was not running`;
    }
    case 'restore-file': {
      if (s.backup === null) {
        rmSync(s.path, { force: true });
        return `removed ${s.path}`;
      }
      if (!existsSync(s.backup)) {
        if (s.orRemove) rmSync(s.path, { force: true });
        return `no backup ${s.backup}: ${s.path} was never changed${s.orRemove ? ' (removed any copy made since)' : ''}`;
      }
      const tmp = `${s.path}.chaos-restore`;
      // Exclusive: a symlink planted at this predictable name fails the copy instead of redirecting it.
      rmSync(tmp, { force: true });
      copyFileSync(s.backup, tmp, constants.COPYFILE_EXCL);
      renameSync(tmp, s.path);
      rmSync(s.backup, { force: true });
      return `restored ${s.path}`;
    }
    case 'start': {
      const match = argvMatcher(s.match);
      let running = findPids(match);
      if (s.replace && running.length > 0) {
        for (const pid of running) signal(pid, 'SIGKILL');
        await waitFor(() => running.every((p) => !isAlive(p)), 10_000);
        running = [];
      }
      for (const pid of running) signal(pid, 'SIGCONT'); // a running copy must not stay frozen
      if (running.length > 0) return `${s.component} already running (pid ${running.join(', ')})`;
      const pid = respawn(s, s.log);
      const ready = await waitFor(async () => !isAlive(pid) ? true : s.health ? httpOk(s.health) : true, 60_000, 250);
      if (!ready || !isAlive(pid)) throw new SvidscopeError('chaos-fault-failed', `${s.component} did not come back (pid ${pid}; see ${s.log ?? 'its log'})`);
      return `restarted ${s.component} (pid ${pid})`;
    }
    case 'recreate-entries': {
      const admin = connectAdmin(s.adminSocket);
      try {
        let created = 0;
        for (const e of s.entries) {
          const existing = await admin.call<{ entries: unknown[] }>('ListEntries', { filter: { by_spiffe_id: e.spiffe_id, by_parent_id: e.parent_id } });
          if (existing.entries.length > 0) continue;
          await admin.call('CreateEntry', { entry: e });
          created++;
        }
        return `recreated ${created} of ${s.entries.length} entries`;
      } finally {
        admin.close();
      }
    }
    case 'restore-federation':
      return restoreFederation(s);
    case 'delete-entries':
      return deleteEntries(s);
    case 'kill-marked':
      return killMarked(s);
    case 'remove-path':
      return removePath(s);
    case 'relay-pass':
      return relayPass(s);
    case 'publish-authority':
      return publishAuthority(s);
    case 'cgroup-move-back':
      return moveBack(s);
    case 'cgroup-remove':
      return removeCgroup(s);
  }
}

export interface RecoverResult {
  runs: number;
  faults: { runId: string; experiment: string; fault: string; ok: boolean; notes: string[]; error?: string }[];
}

/**
 * Rolls back every fault of runs whose harness is gone (all runs with `force`), newest fault
 * first. Faults whose rollback fails stay in the ledger for the next attempt.
 */
export async function recover(ledger: Ledger, opts: { force?: boolean } = {}): Promise<RecoverResult> {
  const result: RecoverResult = { runs: 0, faults: [] };
  const runs = ledger.read().runs;
  // All or nothing: one foreign step means someone else wrote the ledger, so none of it is replayed.
  for (const run of runs) for (const fault of run.faults) assertSteps(ledger.file, fault.rollback, ledger.dataDir, path.dirname(ledger.file));
  for (const run of runs) {
    const harnessAlive = sameProcess({ pid: run.harnessPid, startTime: run.harnessStartTime });
    if (harnessAlive && !opts.force) continue;
    result.runs++;
    for (const fault of [...run.faults].reverse()) {
      try {
        const notes = await playRollback(fault.rollback);
        ledger.removeFault(run.runId, fault.id);
        result.faults.push({ runId: run.runId, experiment: run.experiment, fault: fault.step, ok: true, notes });
      } catch (err) {
        result.faults.push({ runId: run.runId, experiment: run.experiment, fault: fault.step, ok: false, notes: [], error: (err as Error).message });
      }
    }
    ledger.endRun(run.runId);
  }
  return result;
}
