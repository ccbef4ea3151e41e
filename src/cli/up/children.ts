import { execa, type ResultPromise } from 'execa';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../common/log.js';

/** The project's `bin/svidscope.js`, from either src/ or dist/ (both sit two levels below the root). */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliEntry = path.join(projectRoot, 'bin', 'svidscope.js');
/** Children run the same code as this process: from source when this runs from source, else the build. */
const fromSource = fileURLToPath(import.meta.url).endsWith('.ts') ? '1' : '';

export interface Child {
  readonly name: string;
  readonly logFile: string;
  readonly process: ResultPromise;
  exited: boolean;
}

/**
 * Starts `svidscope <args>` as a child process (optionally under another uid with setpriv, or
 * through another node binary path), its stdout and stderr appended to `<logDir>/<name>.log`.
 */
export function startChild(opts: { name: string; args: string[]; logDir: string; logger: Logger; runAs?: { uid: number; gid: number }; nodeBinary?: string }): Child {
  const node = opts.nodeBinary ?? process.execPath;
  const [file, args] = opts.runAs
    ? ['setpriv', [`--reuid=${opts.runAs.uid}`, `--regid=${opts.runAs.gid}`, '--clear-groups', node, cliEntry, ...opts.args]]
    : [node, [cliEntry, ...opts.args]];
  const logFile = path.join(opts.logDir, `${opts.name}.log`);
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = execa(file, args, { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', env: { SVIDSCOPE_FROM_SOURCE: fromSource } });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const record: Child = { name: opts.name, logFile, process: child, exited: false };
  void child.then((r) => {
    record.exited = true;
    if (stopping.has(child)) return;
    // A clean exit is usually the shared Ctrl-C reaching the child first; anything else is worth a warning.
    const clean = r.exitCode === 0;
    opts.logger[clean ? 'info' : 'warn']({ child: opts.name, exitCode: r.exitCode, signal: r.signal, log: logFile }, clean ? 'component stopped' : 'component exited unexpectedly');
  });
  return record;
}

const stopping = new WeakSet<ResultPromise>();

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export async function stopChild(child: Child, graceMs = 10_000): Promise<void> {
  if (child.exited) return;
  stopping.add(child.process);
  child.process.kill('SIGTERM');
  const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
  await child.process;
  clearTimeout(timer);
}

/**
 * Stops processes of this stack that are not our children any more: a game day may have killed a
 * component and started it again itself. They are found by the stack's config files on their
 * command lines (every component runs with `--config <dataDir>/<name>.yaml`).
 */
export async function stopStrays(dataDir: string, graceMs = 10_000): Promise<void> {
  const marker = `${dataDir}/`;
  const strays: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    const i = argv.indexOf('--config');
    if (i >= 0 && argv[i + 1]?.startsWith(marker) && argv[i + 1].endsWith('.yaml')) strays.push(pid);
  }
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGCONT'); // a frozen process cannot act on SIGTERM
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (strays.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of strays.filter(alive)) process.kill(pid, 'SIGKILL');
}
