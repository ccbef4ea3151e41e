import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { cgroupDirOf, cpuHierarchy, moveProcess, setCpuMax, throttleUnavailable, type ThrottledProc } from '../cgroup.js';
import type { MethodStep } from '../experiment/schema.js';
import { sameProcess, startTime } from '../proc.js';
import { component, componentPids } from '../stack.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Throttle = Extract<MethodStep, { fault: 'cpu-throttle' }>;

/** CFS quota and period in microseconds. */
export function cfsOf(s: Pick<Throttle, 'quotaPercent' | 'periodMs'>): { quotaUs: number; periodUs: number } {
  const periodUs = Math.round(s.periodMs * 1000);
  return { periodUs, quotaUs: Math.max(1000, Math.round((periodUs * s.quotaPercent) / 100)) };
}

/**
 * CPU starvation of one component: its processes are moved into a new cgroup
 * `<cpu hierarchy>/svidscope-chaos-<run>-<step>` whose CFS bandwidth is `quota` % of one CPU per
 * `period` (cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us, or v2 cpu.max). Each process's
 * original cgroup and start time are in the ledger before anything changes; the rollback moves
 * every recorded process still in the chaos cgroup back (skipping pids that are gone or now
 * belong to another process), moves any other process left in it (children started since) to the
 * first process's original cgroup, and removes it. Root only.
 */
export const cpuThrottle: FaultKindImpl<Throttle> = {
  plan: (s) => {
    const { quotaUs, periodUs } = cfsOf(s);
    return {
      inject: `move ${s.target}'s processes into a new cgroup svidscope-chaos-<run> limited to ${s.quotaPercent}% of one CPU (${quotaUs}us per ${periodUs}us period; needs root and a writable cpu cgroup)`,
      rollback: `move ${s.target}'s processes back to their original cgroups (only the same processes, by start time), then remove the chaos cgroup`,
    };
  },
  async prepare(s: Throttle, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.target);
    const h = cpuHierarchy();
    const missing = throttleUnavailable(h);
    if (missing || !h) throw new SvidscopeError('chaos-target-invalid', `chaos: ${missing ?? 'no cpu cgroup'}`);
    const pids = componentPids(c);
    if (pids.length === 0) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.target} is not running (no process to throttle)`);
    const procs: ThrottledProc[] = [];
    for (const pid of pids) {
      const st = startTime(pid);
      const cgroup = cgroupDirOf(h, pid);
      if (st === undefined || cgroup === undefined) throw new SvidscopeError('chaos-fault-failed', `chaos: ${s.target}'s process ${pid} exited while being inspected`);
      procs.push({ pid, startTime: st, cgroup });
    }
    const tag = `${path.basename(ctx.backupDir)}-${s.name}`.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 200);
    const dir = path.join(h.mount, `svidscope-chaos-${tag}`);
    if (procs.some((p) => p.cgroup === dir)) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.target} already is in ${dir}`);
    const { quotaUs, periodUs } = cfsOf(s);
    return {
      target: c.name,
      rollback: [
        { op: 'cgroup-move-back', hierarchy: h, cgroup: dir, procs },
        { op: 'cgroup-remove', hierarchy: h, cgroup: dir, evacuateTo: procs[0].cgroup },
      ],
      async apply() {
        if (!existsSync(dir)) mkdirSync(dir);
        setCpuMax(h, dir, quotaUs, periodUs);
        const moved: number[] = [];
        for (const p of procs) if (sameProcess(p) && moveProcess(dir, p.pid)) moved.push(p.pid);
        if (moved.length === 0) throw new SvidscopeError('chaos-fault-failed', `chaos: ${s.target}'s processes (${pids.join(', ')}) exited before they could be throttled`);
        return { cgroup: dir, cgroupVersion: h.version, quotaPercent: s.quotaPercent, periodMs: s.periodMs, quotaUs, periodUs, pids: moved, from: [...new Set(procs.map((p) => p.cgroup))] };
      },
    };
  },
};
