import { existsSync, readdirSync } from 'node:fs';
import { SvidscopeError } from '../../common/errors/catalog.js';
import type { MethodStep } from '../experiment/schema.js';
import { isAlive, respawn, signal, snapshot, waitFor, httpOk } from '../proc.js';
import { component, componentPids, type StackComponent, type StackView } from '../stack.js';
import { startStep, type FaultContext, type FaultKindImpl, type PreparedFault } from './types.js';

type Kill = Extract<MethodStep, { fault: 'process-kill' }>;
type Freeze = Extract<MethodStep, { fault: 'process-freeze' }>;
type Skew = Extract<MethodStep, { fault: 'clock-skew' }>;

export function onePid(c: StackComponent): number {
  const pids = componentPids(c);
  if (pids.length !== 1) throw new SvidscopeError('unavailable', `chaos: expected one running ${c.name} process, found ${pids.length}${pids.length ? ` (${pids.join(', ')})` : ''}`);
  return pids[0];
}

export const processKill: FaultKindImpl<Kill> = {
  plan: (s) => ({ inject: `kill -9 ${s.target} (read its command line from /proc first)`, rollback: `restart ${s.target} with the same command line, environment and uid; wait for its health endpoint` }),
  async prepare(s: Kill, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.target);
    const pid = onePid(c);
    const snap = snapshot(pid);
    return {
      target: c.name,
      rollback: [startStep(c, snap, false)],
      async apply() {
        signal(pid, 'SIGKILL');
        await waitFor(() => !isAlive(pid), 5_000, undefined, ctx.clock);
        return { pid, signal: 'SIGKILL' };
      },
    };
  },
};

export const processFreeze: FaultKindImpl<Freeze> = {
  plan: (s) => ({ inject: `SIGSTOP ${s.target}`, rollback: `SIGCONT ${s.target} (only if the pid is still the same process)` }),
  async prepare(s: Freeze, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.target);
    const pid = onePid(c);
    const snap = snapshot(pid);
    return {
      target: c.name,
      rollback: [{ op: 'sigcont', pid, startTime: snap.startTime }],
      async apply() {
        signal(pid, 'SIGSTOP');
        return { pid, signal: 'SIGSTOP' };
      },
    };
  },
};

/** Debian's libfaketime (package `faketime`), under the machine's multiarch directory. */
export function findLibfaketime(): string | undefined {
  const candidates = ['/usr/lib/faketime/libfaketime.so.1', ...(existsSync('/usr/lib') ? readdirSync('/usr/lib').map((d) => `/usr/lib/${d}/faketime/libfaketime.so.1`) : [])];
  return candidates.find((f) => existsSync(f));
}

/**
 * Clock skew with libfaketime: LD_PRELOAD cannot be added to a running process, so the component
 * is restarted under it (FAKETIME=<offset>, monotonic clock left real so timers keep working, no
 * shared memory to leak); the rollback restarts it with its original environment.
 */
export const clockSkew: FaultKindImpl<Skew> = {
  plan: (s) => ({ inject: `restart ${s.target} under libfaketime with FAKETIME=${s.offset}`, rollback: `restart ${s.target} with its original environment (real clock)` }),
  async prepare(s: Skew, ctx: FaultContext): Promise<PreparedFault> {
    const libfaketime = findLibfaketime();
    if (!libfaketime) throw new SvidscopeError('unavailable', 'chaos: clock-skew needs libfaketime (/usr/lib/<arch>/faketime/libfaketime.so.1): apt-get install -y faketime');
    const c = component(ctx.stack, s.target);
    const pid = onePid(c);
    const snap = snapshot(pid);
    return {
      target: c.name,
      rollback: [startStep(c, snap, true)],
      async apply() {
        signal(pid, 'SIGKILL');
        await waitFor(() => !isAlive(pid), 5_000, undefined, ctx.clock);
        const env = { ...snap.env, LD_PRELOAD: libfaketime, FAKETIME: s.offset, FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_DISABLE_SHM: '1' };
        const newPid = respawn({ ...snap, env }, c.log);
        // Liveness, not readiness: an agent that cannot attest with its skewed clock never gets ready.
        if (c.live) await waitFor(() => httpOk(c.live!), 30_000, 250, ctx.clock);
        return { pid: newPid, offset: s.offset };
      },
    };
  },
};

export function planTarget(stack: StackView | undefined, name: string): string {
  if (!stack) return name;
  const c = stack.components.get(name);
  if (!c) return `${name} (UNKNOWN in this stack)`;
  const pids = componentPids(c);
  return `${name} (pid ${pids.join(', ') || 'not running'})`;
}
