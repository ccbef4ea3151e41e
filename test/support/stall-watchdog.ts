/**
 * A vitest reporter that keeps one stuck test file from holding the whole run until CI's limit.
 *
 * vitest times out tests and hooks with timers inside the worker process, so a worker that stops
 * answering (stopped, blocked in a native call, a synchronous loop) is never timed out: the run
 * waits for it forever. This reporter:
 * - prints, every `progressMinutes`, which files are still running and for how long;
 * - when a file has run for `stallMinutes`, prints what its worker is doing (process state, kernel
 *   wait channel and stack, a Node diagnostic report's JavaScript stack, gdb's native threads),
 *   names the file in `.svidscope/stalled-files.txt` and SIGKILLs that worker and its descendants.
 *   vitest then fails the file ("Worker exited unexpectedly") and finishes the run; scripts/test.sh
 *   runs the named files once more on their own and says so in its closing lines.
 *
 * The longest file (the game day) takes ≈ 8 minutes on the 2-core machine; the default stall limit
 * is 20 (SVIDSCOPE_TEST_STALL_MINUTES).
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

const REPORT_DIR = path.resolve('.svidscope', 'stall-reports');
export const STALLED_FILES = path.resolve('.svidscope', 'stalled-files.txt');

interface Running {
  file: string;
  startedMs: number;
  stalled: boolean;
}

function minutesFromEnv(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

function read(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    return `(${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
}

function parentOf(pid: number): number | undefined {
  // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
  const stat = read(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  return Number.isFinite(ppid) ? ppid : undefined;
}

function ageSeconds(pid: number): number {
  const stat = read(`/proc/${pid}/stat`);
  const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const uptime = Number(read('/proc/uptime').split(' ')[0]);
  return uptime - startTicks / 100; // USER_HZ is 100 on Linux
}

function allPids(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

/** `root` and every process below it. */
function descendants(root: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const pid of allPids()) {
    const ppid = parentOf(pid);
    if (ppid !== undefined) byParent.set(ppid, [...(byParent.get(ppid) ?? []), pid]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(byParent.get(pid) ?? []));
  }
  return out;
}

function run(cmd: string, args: string[], timeoutMs: number): string {
  try {
    return execFileSync(cmd, args, { timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; message: string };
    return `${e.stdout ?? ''}\n(${cmd} failed: ${e.message.split('\n')[0]})`;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The worker's JavaScript stack from a Node diagnostic report it writes on SIGUSR2. */
function javascriptStack(pid: number): string {
  mkdirSync(REPORT_DIR, { recursive: true });
  const before = new Set(readdirSync(REPORT_DIR));
  try {
    process.kill(pid, 'SIGUSR2');
  } catch {
    // gone already
  }
  for (let i = 0; i < 20 && readdirSync(REPORT_DIR).every((f) => before.has(f)); i++) sleepSync(500);
  const report = readdirSync(REPORT_DIR).find((f) => !before.has(f));
  if (!report) return 'no diagnostic report within 10 s: the main thread is not running JavaScript';
  const parsed = JSON.parse(read(path.join(REPORT_DIR, report))) as { javascriptStack?: { message?: string; stack?: string[] } };
  return `JavaScript stack (${report}): ${parsed.javascriptStack?.message ?? ''}\n  ${(parsed.javascriptStack?.stack ?? []).join('\n  ')}`;
}

/** What a stuck worker is doing, as text for the log. */
function describeWorker(pid: number): string {
  const lines: string[] = [];
  const status = read(`/proc/${pid}/status`).split('\n').filter((l) => /^(State|Threads|VmRSS|SigBlk|SigIgn):/.test(l));
  lines.push(`worker ${pid}: ${status.join('; ')}; wchan ${read(`/proc/${pid}/wchan`)}`);
  lines.push(`kernel stack:\n${read(`/proc/${pid}/stack`)}`);
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = read(`/proc/${pid}/task/${tid}/stat`);
    lines.push(`  thread ${tid} ${stat.slice(stat.indexOf('('), stat.lastIndexOf(')') + 3)} wchan ${read(`/proc/${pid}/task/${tid}/wchan`)}`);
  }
  lines.push('processes below it:');
  for (const child of descendants(pid)) lines.push(`  ${child} ${read(`/proc/${child}/cmdline`).split('\0').join(' ').slice(0, 300)}`);
  // The workers run with --report-on-signal (vitest.config.ts): a JavaScript stack, unless the
  // main thread is blocked outside V8. Without that flag SIGUSR2 would end the worker unseen.
  if (read(`/proc/${pid}/cmdline`).split('\0').includes('--report-on-signal')) lines.push(javascriptStack(pid));
  else lines.push('no --report-on-signal on the worker: no JavaScript stack');
  if (existsSync('/usr/bin/gdb')) lines.push(`gdb, the main thread:\n${run('gdb', ['-batch', '-p', String(pid), '-ex', 'bt 40'], 60_000)}`);
  return lines.join('\n');
}

export default class StallWatchdog implements Reporter {
  private readonly stallMs = minutesFromEnv('SVIDSCOPE_TEST_STALL_MINUTES', 20) * 60_000;
  private readonly progressMs = minutesFromEnv('SVIDSCOPE_TEST_PROGRESS_MINUTES', 5) * 60_000;
  private readonly running = new Map<string, Running>();
  private timer: NodeJS.Timeout | undefined;
  private lastProgressMs = Date.now();

  onInit(): void {
    mkdirSync(path.dirname(STALLED_FILES), { recursive: true });
    rmSync(STALLED_FILES, { force: true });
    this.timer = setInterval(() => this.check(), 15_000);
    this.timer.unref();
  }

  onTestModuleStart(module: TestModule): void {
    this.running.set(module.moduleId, { file: path.relative(process.cwd(), module.moduleId), startedMs: Date.now(), stalled: false });
  }

  onTestModuleEnd(module: TestModule): void {
    this.running.delete(module.moduleId);
  }

  onTestRunEnd(): void {
    clearInterval(this.timer);
  }

  private log(text: string): void {
    process.stderr.write(`[stall-watchdog] ${text}\n`);
  }

  private check(): void {
    const now = Date.now();
    if (now - this.lastProgressMs >= this.progressMs && this.running.size) {
      this.lastProgressMs = now;
      this.log(`still running: ${[...this.running.values()].map((r) => `${r.file} (${((now - r.startedMs) / 60_000).toFixed(1)} min)`).join(', ')}`);
    }
    const stalled = [...this.running.values()].filter((r) => !r.stalled && now - r.startedMs >= this.stallMs);
    if (!stalled.length) return;
    // With isolation every file gets a worker of its own, started just before the file: a stalled
    // file's worker is a worker at least as old as the file's run.
    const oldest = Math.min(...stalled.map((r) => r.startedMs));
    const workers = descendants(process.pid).filter(
      (pid) => pid !== process.pid && read(`/proc/${pid}/cmdline`).includes('vitest/dist/workers/') && ageSeconds(pid) * 1000 >= now - oldest - 5_000,
    );
    for (const r of stalled) {
      r.stalled = true;
      this.log(`${r.file} has run for ${((now - r.startedMs) / 60_000).toFixed(1)} min (limit ${this.stallMs / 60_000}): ending its worker, the file will fail and run once more on its own`);
      appendFileSync(STALLED_FILES, `${r.file}\n`);
    }
    for (const pid of workers) {
      this.log(describeWorker(pid));
      for (const victim of descendants(pid).reverse()) {
        try {
          process.kill(victim, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (!workers.length) this.log('found no worker process as old as the stalled file: nothing ended');
  }
}
