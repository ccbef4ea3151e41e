import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { Clock } from '../common/clock.js';
import { SvidscopeError } from '../common/errors/catalog.js';

/**
 * Processes of the stack, seen only from /proc: how the harness finds, freezes, kills and restarts
 * a component without importing it. A restart reuses the exact command line, environment, working
 * directory and uid/gid read from /proc before the kill.
 */
export interface ProcessSnapshot {
  pid: number;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  uid: number;
  gid: number;
  /** Field 22 of /proc/<pid>/stat: tells a reused pid apart from the original process. */
  startTime: string;
}

/** One-letter state from /proc/<pid>/stat (R, S, T, Z…), or undefined when gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

export function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Alive means present and not a zombie (PID 1 here does not reap orphans, so kill -0 lies). */
export function isAlive(pid: number): boolean {
  const s = processState(pid);
  return s !== undefined && s !== 'Z' && s !== 'X';
}

export function readArgv(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((_, i, a) => i < a.length - 1 || a[i] !== '');
  } catch {
    return undefined;
  }
}

/** Live pids whose argv satisfies `match`, excluding this process. */
export function findPids(match: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (pid === process.pid) continue;
    const argv = readArgv(pid);
    if (argv && argv.length > 0 && match(argv) && isAlive(pid)) pids.push(pid);
  }
  return pids;
}

export function snapshot(pid: number): ProcessSnapshot {
  const argv = readArgv(pid);
  if (!argv) throw new SvidscopeError('not-found', `process ${pid} is gone`);
  const env: Record<string, string> = {};
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  const gid = Number(/^Gid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  return { pid, argv, env, cwd: readlinkSync(`/proc/${pid}/cwd`), uid, gid, startTime: startTime(pid) ?? '' };
}

/** Whether `pid` is still the process `snap` described (not a reused pid). */
export function sameProcess(snap: { pid: number; startTime: string }): boolean {
  return isAlive(snap.pid) && startTime(snap.pid) === snap.startTime;
}

export function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a detached copy of a snapshot (own session, output appended to `logFile`), so it outlives
 * the harness like the original outlived nothing. Returns the new pid.
 */
export function respawn(snap: Pick<ProcessSnapshot, 'argv' | 'env' | 'cwd' | 'uid' | 'gid'>, logFile: string | undefined): number {
  const fd = logFile ? openSync(logFile, 'a') : 'ignore';
  const asOther = process.getuid?.() === 0 && snap.uid !== 0;
  const child = spawn(snap.argv[0], snap.argv.slice(1), {
    env: snap.env, cwd: existsSync(snap.cwd) ? snap.cwd : '/', detached: true,
    stdio: ['ignore', fd, fd], ...(asOther ? { uid: snap.uid, gid: snap.gid } : {}),
  });
  child.unref();
  if (typeof fd === 'number') closeSync(fd);
  if (!child.pid) throw new SvidscopeError('io-error', `could not start ${snap.argv.join(' ')}`);
  return child.pid;
}

/**
 * Polls `cond` every `intervalMs` until it holds or `timeoutMs` passed. `clock`: the run's clock;
 * without one (the ledger's replay and the cgroup cleanup, which run outside any run) the process timers.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100, clock?: Clock): Promise<boolean> {
  const now = () => (clock ? clock.nowMs() : Date.now());
  const deadline = now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (now() >= deadline) return false;
    await sleep(intervalMs, undefined, clock);
  }
}

/** Waits `ms` on `clock` (the process timers without one), or until `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal, clock?: Clock): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const cancel = clock ? clockTimer(clock, done, ms) : processTimer(done, ms);
    function done() {
      cancel();
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function clockTimer(clock: Clock, fn: () => void, ms: number): () => void {
  const handle = clock.setTimeout(fn, ms);
  return () => clock.clearTimeout(handle);
}

function processTimer(fn: () => void, ms: number): () => void {
  const t = setTimeout(fn, ms);
  return () => clearTimeout(t);
}

export async function httpOk(url: string, timeoutMs = 1000): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })).ok;
  } catch {
    return false;
  }
}
