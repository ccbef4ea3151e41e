/**
 * The `unix` workload attestor (SPIRE plugin/agent/workloadattestor/unix): selectors derived from
 * the kernel's view of the calling process, read through the caller's pinned /proc directory.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { systemClock, type Clock } from '../../../common/clock.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';

export interface Selector {
  readonly type: string;
  readonly value: string;
}

/** What the attestor needs of a caller; `CallerTracker` provides it. */
export interface AttestableCaller {
  readonly pid: number;
  procPath(entry: string): string;
  isAlive(): Promise<boolean>;
  /** True when the process runs another program than when it connected (see CallerTracker). */
  execChanged(): Promise<boolean>;
}

export interface UnixAttestorOptions {
  /** Adds `path` and `sha256` selectors (reading another user's /proc/<pid>/exe needs root). */
  readonly discoverWorkloadPath: boolean;
  /** Largest binary to hash, in bytes: 0 = no limit, negative = never hash (DoS guard). */
  readonly workloadSizeLimit: number;
  /** Upper bound for the whole attestation; SPIRE takes it from the RPC deadline. Default 5 s. */
  readonly timeoutMs?: number;
  readonly clock?: Clock;
  /** Name databases; only the files backend is consulted (no NSS/LDAP). */
  readonly passwdPath?: string;
  readonly groupPath?: string;
}

export const PID_REUSED_MESSAGE = 'workload attestation failed: caller exited or pid reused';
export const EXEC_AFTER_CONNECT_MESSAGE = 'workload attestation failed: the process that connected has executed another program since (exec after connect)';
const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * Attests the caller and returns its selectors, effective ids first. Fails with `unavailable` if
 * the caller exited or its PID was reused at any point before the answer is handed back.
 */
export async function attestUnix(caller: AttestableCaller, opts: UnixAttestorOptions): Promise<Selector[]> {
  const clock = opts.clock ?? systemClock;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const abort = new AbortController();
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(() => {
      abort.abort();
      reject(new SvidscopeError('unavailable', `workload attestation failed: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    const selectors = await Promise.race([collect(caller, opts, abort.signal), timedOut]);
    // The liveness check must come last: everything above may have read a process that has
    // since exited and whose PID now belongs to someone else.
    if (!(await Promise.race([caller.isAlive(), timedOut]))) {
      throw new SvidscopeError('unavailable', PID_REUSED_MESSAGE);
    }
    // Also last, for the same reason: an exec at any point since connect means the selectors
    // describe a program that did not open this connection (and may share it with a child).
    // A changed exe with a dead process is an exit, not an exec.
    if (await Promise.race([caller.execChanged(), timedOut])) {
      if (!(await Promise.race([caller.isAlive(), timedOut]))) throw new SvidscopeError('unavailable', PID_REUSED_MESSAGE);
      throw new SvidscopeError('workload-exec-after-connect', EXEC_AFTER_CONNECT_MESSAGE);
    }
    return selectors;
  } finally {
    if (timer) clock.clearTimeout(timer);
    abort.abort();
  }
}

async function collect(caller: AttestableCaller, opts: UnixAttestorOptions, signal: AbortSignal): Promise<Selector[]> {
  const status = await readProc(caller, 'status', () => fs.promises.readFile(caller.procPath('status'), { encoding: 'utf8', signal }));
  const ids = parseStatus(status);
  const [users, groups] = await Promise.all([
    readNames(opts.passwdPath ?? '/etc/passwd', signal),
    readNames(opts.groupPath ?? '/etc/group', signal),
  ]);
  const out: Selector[] = [];
  const add = (value: string) => out.push({ type: 'unix', value });
  add(`uid:${ids.uid}`);
  if (users.has(ids.uid)) add(`user:${users.get(ids.uid)}`);
  add(`gid:${ids.gid}`);
  if (groups.has(ids.gid)) add(`group:${groups.get(ids.gid)}`);
  for (const gid of ids.supplementary) {
    add(`supplementary_gid:${gid}`);
    if (groups.has(gid)) add(`supplementary_group:${groups.get(gid)}`);
  }
  if (opts.discoverWorkloadPath) {
    const exe = caller.procPath('exe');
    add(`path:${await readProc(caller, 'exe', () => fs.promises.readlink(exe))}`);
    const digest = await hashBinary(caller, exe, opts.workloadSizeLimit, signal);
    if (digest !== undefined) add(`sha256:${digest}`);
  }
  return out;
}

/** Effective uid/gid (second column of the Uid:/Gid: lines) and the supplementary groups. */
export function parseStatus(status: string): { uid: string; gid: string; supplementary: string[] } {
  const line = (key: string) => status.split('\n').find((l) => l.startsWith(`${key}:`))?.slice(key.length + 1).trim().split(/\s+/);
  const uids = line('Uid');
  const gids = line('Gid');
  if (!uids || uids.length < 2 || !gids || gids.length < 2) {
    throw new SvidscopeError('unavailable', 'workload attestation failed: /proc status has no uid or gid line');
  }
  const groups = line('Groups')?.filter((g) => g !== '') ?? [];
  return { uid: uids[1], gid: gids[1], supplementary: groups };
}

/** id → name from a passwd/group style file; the first entry wins, as in getpwuid over files. */
async function readNames(path: string, signal: AbortSignal): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  let text: string;
  try {
    text = await fs.promises.readFile(path, { encoding: 'utf8', signal });
  } catch {
    return names; // no database: names are simply unresolvable, ids still attest
  }
  for (const row of text.split('\n')) {
    const cols = row.split(':');
    if (cols.length < 3 || row.startsWith('#') || !/^\d+$/.test(cols[2])) continue;
    if (!names.has(cols[2])) names.set(cols[2], cols[0]);
  }
  return names;
}

async function hashBinary(caller: AttestableCaller, exe: string, limit: number, signal: AbortSignal): Promise<string | undefined> {
  if (limit < 0) return undefined;
  const size = (await readProc(caller, 'exe', () => fs.promises.stat(exe))).size;
  if (limit > 0 && size > limit) return undefined;
  const hash = createHash('sha256');
  let read = 0;
  await readProc(caller, 'exe', async () => {
    for await (const chunk of fs.createReadStream(exe, { signal }) as AsyncIterable<Buffer>) {
      read += chunk.length;
      // The file may have grown since stat: never hash more than the limit allows.
      if (limit > 0 && read > limit) throw new SvidscopeError('unavailable', 'workload attestation failed: workload binary exceeds the size limit');
      hash.update(chunk);
    }
  });
  return hash.digest('hex');
}

/** Runs a /proc read; a vanished process becomes the pid-reuse error, anything else keeps its cause. */
async function readProc<T>(caller: AttestableCaller, what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof SvidscopeError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH' || code === 'ENOENT') throw new SvidscopeError('unavailable', PID_REUSED_MESSAGE, { cause: err });
    throw new SvidscopeError('unavailable', `workload attestation failed: cannot read /proc/${caller.pid}/${what}`, { cause: err });
  }
}
