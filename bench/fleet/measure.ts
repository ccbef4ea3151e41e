/**
 * What the fleet benchmark reads about a process from outside it: CPU time from /proc/<pid>/stat
 * (utime + stime), resident memory from /proc/<pid>/status (VmRSS, and the peak VmHWM), and the
 * datastore operation count and V8 heap in use from one scrape of the server's own /metrics.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** CPU seconds (user + system) the process has used so far. */
export function cpuSeconds(pid: number): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: count fields from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond; // fields 14 and 15 of proc(5)
}

/** VmRSS and VmHWM (peak) in MiB. */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** The server's /metrics text; undefined when it does not answer within 30 s (a saturated server: itself a finding). */
export async function scrapeMetrics(opsUrl: string): Promise<string | undefined> {
  try {
    return await (await fetch(`${opsUrl}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
  } catch {
    return undefined;
  }
}

/** Datastore operations the server has run, by operation (the count of its duration histogram), from a scrape. */
export function datastoreOps(metrics: string | undefined): Map<string, number> | undefined {
  if (metrics === undefined) return undefined;
  const ops = new Map<string, number>();
  for (const m of metrics.matchAll(/^svidscope_server_datastore_operation_duration_seconds_count\{([^}]*)\} (\S+)$/gm)) {
    const op = /operation="([^"]*)"/.exec(m[1])?.[1] ?? 'unknown';
    ops.set(op, (ops.get(op) ?? 0) + Number(m[2]));
  }
  return ops;
}

/** The server's garbage collection so far, from prom-client's `nodejs_gc_duration_seconds` in a scrape. */
export interface GcTotals {
  majors: number;
  /** Major collections that paused the server 100 ms or more (above the 0.1 s bucket). */
  majorsOver100Ms: number;
  /** Pause time of every kind, seconds. */
  pauseSeconds: number;
}

export function gcTotals(metrics: string | undefined): GcTotals | undefined {
  if (metrics === undefined) return undefined;
  const value = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? 0);
  const majors = value(/^nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)$/m);
  const majorsUpTo100Ms = value(/^nodejs_gc_duration_seconds_bucket\{le="0\.1",kind="major"\} (\S+)$/m);
  let pauseSeconds = 0;
  for (const m of metrics.matchAll(/^nodejs_gc_duration_seconds_sum\{kind="[^"]*"\} (\S+)$/gm)) pauseSeconds += Number(m[1]);
  return { majors, majorsOver100Ms: majors - majorsUpTo100Ms, pauseSeconds };
}

/** The server's V8 heap in use (MiB), from a scrape; NaN without one. RSS less this is native memory (TLS, HTTP/2). */
export function heapUsedMiB(metrics: string | undefined): number {
  return Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics ?? '')?.[1] ?? NaN) / 1048576;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export const round = (v: number, digits = 1) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : -1);
