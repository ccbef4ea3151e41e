import { accessSync, constants, existsSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isAlive, sameProcess, sleep } from './proc.js';
import { SvidscopeError } from '../common/errors/catalog.js';

/**
 * The CPU controller's cgroup hierarchy, seen from /proc only (like proc.ts): cgroup v1 (a
 * `cgroup` mount whose options name the `cpu` controller; files cpu.cfs_period_us,
 * cpu.cfs_quota_us) or v2 (a `cgroup2` mount listing `cpu` in cgroup.controllers; file cpu.max).
 * A hybrid host has both mounts; the cpu controller then belongs to v1, so v1 is looked for first.
 */
export interface CpuHierarchy {
  version: 1 | 2;
  /** Where the hierarchy is mounted (e.g. /sys/fs/cgroup/cpu or /sys/fs/cgroup). */
  mount: string;
  /** The cgroup the mount shows at its top, as /proc/<pid>/cgroup names cgroups (usually `/`). */
  root: string;
}

/** mountinfo escapes blanks and backslashes as octal (\040). */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function cpuHierarchy(mountinfo = '/proc/self/mountinfo'): CpuHierarchy | undefined {
  const mounts: { root: string; mount: string; fstype: string; superOptions: string[] }[] = [];
  for (const line of readFileSync(mountinfo, 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!post) continue;
    const f = pre.split(' ');
    const [fstype, , superOptions = ''] = post.split(' ');
    mounts.push({ root: unescape(f[3]), mount: unescape(f[4]), fstype, superOptions: superOptions.split(',') });
  }
  const v1 = mounts.find((m) => m.fstype === 'cgroup' && m.superOptions.includes('cpu'));
  if (v1) return { version: 1, mount: v1.mount, root: v1.root };
  for (const m of mounts.filter((x) => x.fstype === 'cgroup2')) {
    try {
      if (readFileSync(path.join(m.mount, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).includes('cpu')) return { version: 2, mount: m.mount, root: m.root };
    } catch {
      // not readable: not this one
    }
  }
  return undefined;
}

/** The directory of `pid`'s cgroup in `h`, or undefined when the process is gone. */
export function cgroupDirOf(h: CpuHierarchy, pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const mine = h.version === 2 ? m[1] === '0' && m[2] === '' : m[2].split(',').includes('cpu');
    if (!mine) continue;
    const cg = m[3];
    const rel = h.root === '/' ? cg : cg === h.root ? '/' : cg.startsWith(`${h.root}/`) ? cg.slice(h.root.length) : undefined;
    if (rel === undefined || rel.split('/').includes('..')) throw new SvidscopeError('chaos-target-invalid', `chaos: process ${pid}'s cpu cgroup ${cg} is outside the hierarchy mounted at ${h.mount} (root ${h.root})`);
    return path.join(h.mount, rel).replace(/(.)\/+$/, '$1');
  }
  throw new SvidscopeError('chaos-target-invalid', `chaos: process ${pid} has no cgroup in the ${h.version === 1 ? 'cgroup v1 cpu' : 'cgroup v2'} hierarchy (${h.mount})`);
}

/**
 * Why this process cannot throttle through `h` (or no hierarchy at all), as one sentence naming
 * what is missing; undefined when it can.
 */
export function throttleUnavailable(h: CpuHierarchy | undefined): string | undefined {
  if (process.getuid?.() !== 0) return `cpu-throttle needs root: it creates a cgroup and moves processes into it (running as uid ${process.getuid?.() ?? '?'})`;
  if (!h) return 'cpu-throttle needs the cgroup cpu controller: /proc/self/mountinfo shows neither a cgroup v1 hierarchy with "cpu" nor a cgroup v2 mount listing "cpu" in cgroup.controllers';
  try {
    accessSync(h.mount, constants.W_OK);
  } catch (err) {
    return `cpu-throttle needs a writable cpu cgroup: ${h.mount} is not writable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; a container needs a read-write cgroupfs)`;
  }
  if (h.version === 2) {
    let control = '';
    try {
      control = readFileSync(path.join(h.mount, 'cgroup.subtree_control'), 'utf8').trim();
    } catch {
      // reported below
    }
    if (!control.split(/\s+/).includes('cpu')) {
      return `cpu-throttle needs the cgroup v2 cpu controller enabled for the children of ${h.mount}, and its cgroup.subtree_control holds "${control}": enable it with \`echo +cpu > ${path.join(h.mount, 'cgroup.subtree_control')}\` (the harness does not change it: that would outlive the experiment, and is refused while ${h.mount} itself holds processes)`;
    }
  }
  return undefined;
}

/** Sets `dir`'s CPU bandwidth: `quotaUs` of CPU time per `periodUs`. */
export function setCpuMax(h: CpuHierarchy, dir: string, quotaUs: number, periodUs: number): void {
  if (h.version === 2) {
    writeFileSync(path.join(dir, 'cpu.max'), `${quotaUs} ${periodUs}`);
    return;
  }
  // v1 checks quota against the current period: set the period first (quota is -1 in a new cgroup).
  writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(periodUs));
  writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quotaUs));
}

/** Moves a whole process (every thread) into `dir`; false when it is gone (ESRCH). */
export function moveProcess(dir: string, pid: number): boolean {
  try {
    writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

export function cgroupProcs(dir: string): number[] {
  try {
    return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** `dir`, or its nearest ancestor that still exists (never above the hierarchy's mount). */
function existingCgroup(dir: string, mount: string): string {
  let d = dir;
  while (d !== mount && d.startsWith(`${mount}/`) && !existsSync(path.join(d, 'cgroup.procs'))) d = path.dirname(d);
  return d === mount || d.startsWith(`${mount}/`) ? d : mount;
}

/** The ledger's record of a throttled process: where it came from. */
export interface ThrottledProc {
  pid: number;
  startTime: string;
  /** Its cgroup directory before the fault. */
  cgroup: string;
}

/**
 * Rollback, step 1: every recorded process still in the chaos cgroup goes back to its original
 * cgroup (or that cgroup's nearest existing ancestor). A process that is gone, whose pid now
 * belongs to another process, or that is no longer in the chaos cgroup is left alone.
 */
export function moveBack(s: { hierarchy: CpuHierarchy; cgroup: string; procs: ThrottledProc[] }): string {
  const notes: string[] = [];
  for (const p of s.procs) {
    if (!sameProcess(p)) {
      notes.push(`pid ${p.pid} is gone`);
      continue;
    }
    const now = cgroupDirOf(s.hierarchy, p.pid);
    if (now !== s.cgroup) {
      notes.push(`pid ${p.pid} is not in ${path.basename(s.cgroup)}${now === undefined ? ' (gone)' : ''}`);
      continue;
    }
    const back = existingCgroup(p.cgroup, s.hierarchy.mount);
    notes.push(moveProcess(back, p.pid) ? `moved pid ${p.pid} back to ${back}` : `pid ${p.pid} is gone`);
  }
  return notes.join('; ') || 'no process to move back';
}

/**
 * Rollback, step 2: processes still in the chaos cgroup (children the target started since) go
 * to `evacuateTo`, then the cgroup is removed, retried while the kernel still counts a leaving
 * task. Already gone = done.
 */
export async function removeCgroup(s: { hierarchy: CpuHierarchy; cgroup: string; evacuateTo: string }): Promise<string> {
  if (!existsSync(s.cgroup)) return `${s.cgroup} already gone`;
  const target = existingCgroup(s.evacuateTo, s.hierarchy.mount);
  const deadline = Date.now() + 5_000;
  let moved = 0;
  for (;;) {
    // A task that is exiting is still listed for a moment, and does not keep rmdir from succeeding for long.
    for (const pid of cgroupProcs(s.cgroup)) if (isAlive(pid) && moveProcess(target, pid)) moved++;
    try {
      rmdirSync(s.cgroup);
      return `removed ${s.cgroup}${moved ? ` (moved ${moved} other process(es) to ${target})` : ''}`;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return `${s.cgroup} already gone`;
      if (code !== 'EBUSY' || Date.now() >= deadline) throw new SvidscopeError('chaos-fault-failed', `chaos: cannot remove ${s.cgroup}: ${(err as Error).message} (still holds pids ${cgroupProcs(s.cgroup).join(', ') || 'none'})`, { cause: err });
    }
    await sleep(100);
  }
}
