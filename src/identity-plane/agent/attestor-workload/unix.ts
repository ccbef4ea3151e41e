/**
 * The `unix` workload attestor (SPIRE plugin/agent/workloadattestor/unix): selectors derived from
 * the kernel's view of the calling process, read through the caller's pinned /proc directory.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { systemClock, type Clock } from '../../../common/clock.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import { BinaryDigestCache, type FileVersion } from './digest-cache.js';
import { NameDatabase } from './name-db.js';
import { readProcFileSync } from '../peercred/proc-file.js';

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
  /**
   * Caches an agent keeps across attestations (see {@link createUnixAttestorCaches}); without them
   * every attestation rereads the name databases and rehashes the binary.
   */
  readonly caches?: UnixAttestorCaches;
}

export interface UnixAttestorCaches {
  readonly users: NameDatabase;
  readonly groups: NameDatabase;
  readonly digests: BinaryDigestCache;
}

export function createUnixAttestorCaches(opts: { passwdPath?: string; groupPath?: string; clock?: Clock; digestEntries?: number } = {}): UnixAttestorCaches {
  return {
    users: new NameDatabase(opts.passwdPath ?? '/etc/passwd', { clock: opts.clock }),
    groups: new NameDatabase(opts.groupPath ?? '/etc/group', { clock: opts.clock }),
    digests: new BinaryDigestCache(opts.digestEntries),
  };
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
    // Nothing reads for this attestation any more (collect is awaited to its end, or the timer
    // already aborted it), so the signal is left alone: aborting builds an error and an event
    // per attestation for no listener.
    if (timer) clock.clearTimeout(timer);
  }
}

async function collect(caller: AttestableCaller, opts: UnixAttestorOptions, signal: AbortSignal): Promise<Selector[]> {
  // Read synchronously: the kernel answers from memory, and a thousand callers attested at once
  // would otherwise each queue four thread-pool round trips (see readProcFileSync).
  const status = await readProc(caller, 'status', async () => readProcFileSync(caller.procPath('status')));
  const ids = parseStatus(status);
  const caches = opts.caches ?? createUnixAttestorCaches({ passwdPath: opts.passwdPath, groupPath: opts.groupPath, digestEntries: 0 });
  const [users, groups] = await Promise.all([caches.users.names(), caches.groups.names()]);
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
    const digest = await hashBinary(caller, exe, opts.workloadSizeLimit, caches.digests, signal);
    if (digest !== undefined) add(`sha256:${digest}`);
  }
  return out;
}

/** Effective uid/gid (second column of the Uid:/Gid: lines) and the supplementary groups. */
export function parseStatus(status: string): { uid: string; gid: string; supplementary: string[] } {
  const lines = status.split('\n');
  const line = (key: string) => lines.find((l) => l.startsWith(`${key}:`))?.slice(key.length + 1).trim().split(/\s+/);
  const uids = line('Uid');
  const gids = line('Gid');
  if (!uids || uids.length < 2 || !gids || gids.length < 2) {
    throw new SvidscopeError('unavailable', 'workload attestation failed: /proc status has no uid or gid line');
  }
  const groups = line('Groups')?.filter((g) => g !== '') ?? [];
  return { uid: uids[1], gid: gids[1], supplementary: groups };
}

async function hashBinary(caller: AttestableCaller, exe: string, limit: number, digests: BinaryDigestCache, signal: AbortSignal): Promise<string | undefined> {
  if (limit < 0) return undefined;
  const before = await readProc(caller, 'exe', () => fs.promises.stat(exe, { bigint: true }));
  if (limit > 0 && before.size > BigInt(limit)) return undefined;
  const known = digests.get(before);
  if (known !== undefined) return known;
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
  const digest = hash.digest('hex');
  // Remembered only if the file did not change while it was read: a digest of half-old,
  // half-new contents must not be reused (this caller still gets it, as before caching).
  const after = await readProc(caller, 'exe', () => fs.promises.stat(exe, { bigint: true }));
  if (sameVersion(before, after)) digests.set(before, digest);
  return digest;
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
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
