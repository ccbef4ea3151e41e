/**
 * What the fleet benchmark reads about a process from outside it: CPU time from /proc/<pid>/stat
 * (utime + stime), resident memory from /proc/<pid>/status (VmRSS, and the peak VmHWM), and the
 * datastore operation count from the server's own /metrics.
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

/**
 * Datastore operations the server has run, by operation (the count of its duration histogram);
 * undefined when /metrics does not answer within 30 s (a saturated server: itself a finding).
 */
export async function datastoreOps(opsUrl: string): Promise<Map<string, number> | undefined> {
  // (The count at the window's end is read after the window: a slow answer only delays the report.)
  let text: string;
  try {
    text = await (await fetch(`${opsUrl}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
  } catch {
    return undefined;
  }
  const ops = new Map<string, number>();
  for (const m of text.matchAll(/^svidscope_server_datastore_operation_duration_seconds_count\{([^}]*)\} (\S+)$/gm)) {
    const op = /operation="([^"]*)"/.exec(m[1])?.[1] ?? 'unknown';
    ops.set(op, (ops.get(op) ?? 0) + Number(m[2]));
  }
  return ops;
}

/** The server's V8 heap in use (MiB) from its /metrics; NaN when it does not answer: RSS less this is native memory (TLS, HTTP/2). */
export async function heapUsedMiB(opsUrl: string): Promise<number> {
  try {
    const text = await (await fetch(`${opsUrl}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
    return Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? NaN) / 1048576;
  } catch {
    return NaN;
  }
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export const round = (v: number, digits = 1) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : -1);
