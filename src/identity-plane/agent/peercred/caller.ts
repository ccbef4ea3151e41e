/**
 * The caller of a Workload API connection, pinned so that a PID recycled between attestation and
 * reply cannot inherit another workload's identity (SPIRE pkg/common/peertracker, Linux flavour).
 *
 * On accept we open /proc/<pid> as a directory and keep the descriptor: it refers to that one
 * process for as long as we hold it, and reading it fails (ESRCH) once the process has exited,
 * even if the number has been handed to a new process. Reads for attestation go through
 * /proc/self/fd/<fd>/… for the same reason: they can only ever see the pinned process.
 */
import fs from 'node:fs';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import type { PeerCredentials } from './peercred.js';
import { readProcFileSync } from './proc-file.js';

export interface CallerTrackerOptions {
  /** Where the process table is mounted; SPIRE's HOST_PROC. Default `/proc`. */
  readonly procRoot?: string;
}

/** `/proc/<pid>/stat` field 22 (starttime, clock ticks since boot), kept as text to compare exactly. */
export function parseStarttime(stat: string): string {
  // comm (field 2) is wrapped in parentheses and may itself contain spaces and ')' characters, so
  // fields are only split after the last ')'. Field 3 is then index 0, field 22 index 19.
  const close = stat.lastIndexOf(')');
  if (close < 0) throw new SvidscopeError('io-error', 'peercred: malformed /proc stat: no comm field');
  const fields = stat.slice(close + 1).trim().split(/\s+/);
  // A complete stat line has at least 38 fields in total (SPIRE rejects shorter ones): 36 after comm.
  if (fields.length < 36) {
    throw new SvidscopeError('io-error', `peercred: malformed /proc stat: ${fields.length + 2} fields, want at least 38`);
  }
  const starttime = fields[19];
  if (!/^\d+$/.test(starttime)) throw new SvidscopeError('io-error', 'peercred: malformed /proc stat: starttime is not a number');
  return starttime;
}

/** Out of descriptors is the agent's problem, not the caller's: reported as such, never as "caller exited". */
function pinFailure(err: unknown): SvidscopeError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EMFILE' || code === 'ENFILE') {
    return new SvidscopeError('workload-api-fd-exhausted', `workload api: out of file descriptors (${code}) while pinning a caller; connection closed`, { cause: err });
  }
  return new SvidscopeError('unavailable', 'workload attestation failed: caller exited before it could be pinned', { cause: err });
}

/** dev:ino of the pinned process's program, or undefined (another uid's process and no root, or a kernel thread). */
function exeIdentity(fd: number): string | undefined {
  try {
    const st = fs.statSync(`/proc/self/fd/${fd}/exe`);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

export class CallerTracker implements PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** starttime recorded when the caller was pinned. */
  readonly starttime: string;
  private readonly procRoot: string;
  private fd: number;

  /** dev:ino of the program the caller ran when it was pinned; undefined when it could not be read. */
  private readonly exe: string | undefined;

  private constructor(creds: PeerCredentials, procRoot: string, fd: number, starttime: string, exe: string | undefined) {
    this.exe = exe;
    this.pid = creds.pid;
    this.uid = creds.uid;
    this.gid = creds.gid;
    this.procRoot = procRoot;
    this.fd = fd;
    this.starttime = starttime;
  }

  /**
   * Pins the process named by the peer credentials. Synchronous on purpose: it runs in the accept
   * path, and every tick between getsockopt and open widens the window for a PID race.
   */
  static track(creds: PeerCredentials, opts: CallerTrackerOptions = {}): CallerTracker {
    // PID 0 means the peer lives in another PID namespace the kernel cannot map into ours.
    if (!Number.isInteger(creds.pid) || creds.pid <= 0) {
      throw new SvidscopeError('unavailable', `workload attestation failed: caller pid ${creds.pid} cannot be tracked`);
    }
    const procRoot = opts.procRoot ?? '/proc';
    let fd: number;
    try {
      fd = fs.openSync(`${procRoot}/${creds.pid}`, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch (err) {
      throw pinFailure(err);
    }
    try {
      // Reading stat opens one more descriptor for a moment: if even that fails with EMFILE, the
      // agent has no headroom left and the connection is better closed than kept.
      const starttime = parseStarttime(readProcFileSync(`/proc/self/fd/${fd}/stat`));
      return new CallerTracker(creds, procRoot, fd, starttime, exeIdentity(fd));
    } catch (err) {
      fs.closeSync(fd);
      if (err instanceof SvidscopeError) throw err;
      throw pinFailure(err);
    }
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /**
   * Path of an entry (`status`, `exe`, …) of the pinned process directory. Opening it can only
   * reach the pinned process; it fails with ESRCH once that process has exited.
   */
  procPath(entry: string): string {
    if (this.fd < 0) throw new SvidscopeError('unavailable', 'workload attestation failed: caller connection closed');
    return `/proc/self/fd/${this.fd}/${entry}`;
  }

  /**
   * SPIRE's IsAlive: (a) the pinned process has not exited, (b) /proc/<pid>/stat still shows the
   * recorded starttime (the PID was not reused), and (c) the pinned directory belongs to the
   * SO_PEERCRED uid/gid (we did not lose a race between getsockopt and open and pin a different
   * process). Any failure, or the tracker being closed, means "not alive".
   *
   * (a) opens `stat` through the pinned directory: the kernel refuses any lookup in the directory
   * of a process that has exited, as it refuses to list it (what SPIRE checks), and a lookup
   * costs one small read where a listing built some fifty names. The reads are synchronous (the
   * kernel answers them from memory): nothing else runs between them, and they cost microseconds
   * instead of a thread-pool round trip each.
   */
  async isAlive(): Promise<boolean> {
    const fd = this.fd;
    if (fd < 0) return false;
    try {
      if (parseStarttime(readProcFileSync(`/proc/self/fd/${fd}/stat`)) !== this.starttime) return false;
      if (parseStarttime(readProcFileSync(`${this.procRoot}/${this.pid}/stat`)) !== this.starttime) return false;
      const st = fs.fstatSync(fd);
      return st.uid === this.uid && st.gid === this.gid;
    } catch {
      return false;
    }
  }

  /**
   * Whether the pinned process runs another program than when it was pinned (it called execve).
   * exec keeps the pid, the start time, the owner and every descriptor without close-on-exec, so
   * none of the other checks see it: a process could connect, hand the connection to a child, and
   * exec the binary a `unix:path` entry selects. The program is compared by the device and inode
   * the kernel's exe link resolves to (exec of the same file is no change). A process whose exe
   * became unreadable since (it exited, or exec'd a non-dumpable program) counts as changed; the
   * attestor tells exit from exec with isAlive.
   */
  async execChanged(): Promise<boolean> {
    const fd = this.fd;
    if (fd < 0) return true;
    return exeIdentity(fd) !== this.exe;
  }

  /** Releases the pinned descriptor; idempotent so a double close cannot hit a reused fd number. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    fs.closeSync(fd);
  }
}
