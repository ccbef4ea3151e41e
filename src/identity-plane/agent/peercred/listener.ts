/**
 * The Workload API Unix socket: our own net.Server accepts, the kernel tells us who connected
 * (SO_PEERCRED), the caller is pinned, and only then is the connection handed to the gRPC server
 * (the agent's own, h2-grpc-server.ts, or grpc-js's through `Server.createConnectionInjector`).
 * gRPC never sees a connection whose caller is unknown.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { systemClock, type Clock, type TimerHandle } from '../../../common/clock.js';
import { isSvidscopeError, SvidscopeError } from '../../../common/errors/catalog.js';
import { nullLogger, type Logger } from '../../../common/log.js';
import { CallerTracker } from './caller.js';
import { DEFAULT_FIRST_REQUEST_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_UID, RefusalLog, type RefusalReason, type WorkloadSocketLimits } from './limits.js';
import { readPeerCredentials, type PeerCredentials } from './peercred.js';
import type { ConnectionSink } from '../endpoints/h2-grpc-server.js';

/**
 * Documented default, as SPIRE's public socket: any local process may ask, because the answer
 * depends on who the kernel says it is, not on who could open the file.
 */
export const DEFAULT_SOCKET_MODE = 0o777;
export const DEFAULT_SOCKET_DIR_MODE = 0o755;
const LIVENESS_PROBE_MS = 1_000;
/** How long after the last EMFILE/ENFILE the socket still reports itself out of descriptors. */
export const FD_EXHAUSTED_HOLD_MS = 5_000;

export interface WorkloadSocketOptions {
  readonly socketPath: string;
  /** Permission bits of the socket file; default 0777. */
  readonly mode?: number;
  /** Permission bits of the parent directory when we create it; default 0755. */
  readonly dirMode?: number;
  /** Where vetted connections go: the agent's Workload API server (h2-grpc-server.ts), or a grpc-js server. */
  readonly server: grpc.Server | ConnectionSink;
  /** Called once per accepted connection after its caller was pinned (metrics, logs). */
  readonly onConnection?: (caller: CallerTracker, socket: net.Socket) => void;
  readonly logger?: Logger;
  readonly procRoot?: string;
  /** Connection limits; each defaults to its documented value. */
  readonly limits?: Partial<WorkloadSocketLimits>;
  /** Every refused connection or request, by reason (the refusal metric). */
  readonly onRefused?: (reason: RefusalReason) => void;
  readonly clock?: Clock;
}

/** Anything with grpc-js's `getPeer()`: every server call type (unary, streams) has it. */
export interface PeerNamedCall {
  getPeer(): string;
}

export interface WorkloadSocket {
  readonly socketPath: string;
  /** The pinned caller of the connection this call arrived on; throws `unavailable` if unknown. */
  callerOf(call: PeerNamedCall): CallerTracker;
  /** A request arrived on this call's connection: its first-request deadline no longer applies. */
  requestArrived(call: PeerNamedCall): void;
  /** Counts and logs (rate-limited) a refusal decided outside the listener, e.g. exec after connect. */
  refused(reason: RefusalReason, uid?: number): void;
  /** Connections open now. */
  readonly connections: number;
  /** Not ok while at the total connection limit or out of descriptors (readiness). */
  health(): { ok: boolean; detail: string };
  /** Stops accepting, closes our gRPC sessions and removes the socket file (if it is still ours). */
  close(): Promise<void>;
}

/**
 * How a call is mapped to its connection: both gRPC servers build `call.getPeer()` from
 * `session.socket.remoteAddress`, and Node's http2 session socket is a proxy that reads
 * plain properties straight from the net.Socket we injected. A Unix socket has no remote address,
 * so before injecting we define an own `remoteAddress` on the socket holding a token unique to
 * this listener (random prefix) and connection (sequence number). The token is set by us on our
 * side of the connection, so a client cannot forge it, and `callerOf` is an exact map lookup.
 * The entry is dropped, and the pinned /proc fd released, when the socket closes.
 *
 * Each connection holds two descriptors (socket and /proc directory), so the limits in
 * `limits.ts` are enforced here, at accept, by closing the socket: per uid, in total, and a
 * deadline for the first request (lifted by `requestArrived`, which the gRPC server's
 * interceptor calls for every call).
 */
export async function listenWorkloadSocket(opts: WorkloadSocketOptions): Promise<WorkloadSocket> {
  const log = opts.logger ?? nullLogger();
  const clock = opts.clock ?? systemClock;
  const limits: WorkloadSocketLimits = {
    maxConnections: opts.limits?.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    maxConnectionsPerUid: opts.limits?.maxConnectionsPerUid ?? DEFAULT_MAX_CONNECTIONS_PER_UID,
    firstRequestTimeoutMs: opts.limits?.firstRequestTimeoutMs ?? DEFAULT_FIRST_REQUEST_TIMEOUT_MS,
  };
  const socketPath = path.resolve(opts.socketPath);
  const mode = opts.mode ?? DEFAULT_SOCKET_MODE;
  await prepareSocketPath(socketPath, opts.dirMode ?? DEFAULT_SOCKET_DIR_MODE);

  const injector: ConnectionSink = opts.server instanceof grpc.Server ? opts.server.createConnectionInjector(grpc.ServerCredentials.createInsecure()) : opts.server;
  const conns = new Map<string, Connection>();
  const perUid = new Map<number, number>();
  const refusals = new RefusalLog(log, clock, opts.onRefused);
  let fdExhaustedAtMs = 0;
  const tokenPrefix = `unix-peercred:${randomBytes(8).toString('hex')}:`;
  let seq = 0;
  // Connections accepted before the chmod below passed the kernel's permission check against the
  // umask-derived mode, not the configured one: they are refused.
  let ready = false;

  const outOfFds = (uid?: number) => {
    fdExhaustedAtMs = clock.nowMs();
    refusals.note('emfile', uid);
  };

  // Every limit is checked before the caller is pinned: a refused connection costs no /proc
  // descriptor, and is closed before grpc-js ever sees it.
  const netServer = net.createServer((socket) => {
    if (!ready) {
      socket.destroy();
      return;
    }
    let creds: PeerCredentials;
    try {
      creds = readPeerCredentials(socket);
    } catch (err) {
      log.warn({ err }, 'workload connection refused: caller cannot be identified');
      socket.destroy();
      return;
    }
    const reason: RefusalReason | undefined = conns.size >= limits.maxConnections ? 'total_limit'
      : (perUid.get(creds.uid) ?? 0) >= limits.maxConnectionsPerUid ? 'per_uid_limit' : undefined;
    if (reason) {
      refusals.note(reason, creds.uid);
      socket.destroy();
      return;
    }
    let caller: CallerTracker;
    try {
      caller = CallerTracker.track(creds, { procRoot: opts.procRoot });
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'workload-api-fd-exhausted') outOfFds(creds.uid);
      else log.warn({ err }, 'workload connection refused: caller cannot be identified');
      socket.destroy();
      return;
    }
    const token = `${tokenPrefix}${++seq}:pid=${caller.pid}`;
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true, enumerable: false });
    const conn: Connection = { caller, deadline: undefined };
    // A connection that never asks anything only holds descriptors: it gets a deadline for its first request.
    conn.deadline = clock.setTimeout(() => {
      conn.deadline = undefined;
      refusals.note('first_request_timeout', caller.uid);
      socket.destroy();
    }, limits.firstRequestTimeoutMs);
    conns.set(token, conn);
    perUid.set(caller.uid, (perUid.get(caller.uid) ?? 0) + 1);
    socket.once('close', () => {
      if (conn.deadline) clock.clearTimeout(conn.deadline);
      conns.delete(token);
      const left = (perUid.get(caller.uid) ?? 1) - 1;
      if (left > 0) perUid.set(caller.uid, left);
      else perUid.delete(caller.uid);
      caller.close();
    });
    opts.onConnection?.(caller, socket);
    injector.injectConnection(socket);
  });

  const requestArrived = (call: PeerNamedCall) => {
    const conn = conns.get(call.getPeer());
    if (conn?.deadline) {
      clock.clearTimeout(conn.deadline);
      conn.deadline = undefined;
    }
  };

  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    netServer.listen(socketPath, () => {
      netServer.off('error', reject);
      resolve();
    });
  });
  let ino: number;
  try {
    fs.chmodSync(socketPath, mode);
    ino = fs.statSync(socketPath).ino;
  } catch (err) {
    netServer.close();
    throw new SvidscopeError('io-error', `peercred: cannot set mode of ${socketPath}`, { cause: err });
  }
  ready = true;
  netServer.on('error', (err: NodeJS.ErrnoException) => {
    // libuv mostly absorbs EMFILE at accept (it closes the pending connections itself), but if
    // it reports one, it is the same condition as failing to pin: no descriptors left.
    if (err.code === 'EMFILE' || err.code === 'ENFILE') outOfFds();
    else log.error({ err }, 'workload socket error');
  });
  log.info({ socketPath, mode: mode.toString(8) }, 'workload api socket listening');

  return {
    socketPath,
    callerOf(call) {
      const conn = conns.get(call.getPeer());
      if (!conn) throw new SvidscopeError('unavailable', 'workload attestation failed: caller connection unknown');
      requestArrived(call);
      return conn.caller;
    },
    requestArrived,
    refused: (reason, uid) => refusals.note(reason, uid),
    get connections() {
      return conns.size;
    },
    health() {
      if (conns.size >= limits.maxConnections) return { ok: false, detail: `at workload_api_max_connections (${conns.size} connections open)` };
      const since = clock.nowMs() - fdExhaustedAtMs;
      if (fdExhaustedAtMs > 0 && since < FD_EXHAUSTED_HOLD_MS) return { ok: false, detail: `out of file descriptors (EMFILE/ENFILE) ${Math.round(since / 1000)} s ago` };
      return { ok: true, detail: 'ok' };
    },
    async close() {
      const closed = new Promise<void>((resolve) => netServer.close(() => resolve()));
      injector.destroy();
      for (const c of conns.values()) {
        if (c.deadline) clock.clearTimeout(c.deadline);
        c.caller.close();
      }
      refusals.close();
      // Only remove the file if it is still the socket we created (a successor may own the path).
      try {
        if (fs.statSync(socketPath).ino === ino) fs.unlinkSync(socketPath);
      } catch {
        // already gone
      }
      await closed;
    },
  };
}

interface Connection {
  readonly caller: CallerTracker;
  /** Pending until the first request arrives. */
  deadline: TimerHandle | undefined;
}

/**
 * Creates the parent directory and clears a stale socket left by a crashed agent. A socket file
 * is only removed when connecting to it is refused (nobody listens); a live socket or any other
 * kind of file is left alone and reported.
 */
async function prepareSocketPath(socketPath: string, dirMode: number): Promise<void> {
  const dir = path.dirname(socketPath);
  try {
    // mkdir applies the umask; chmod makes the documented mode exact, but only on a dir we made.
    if (fs.mkdirSync(dir, { recursive: true, mode: dirMode }) !== undefined) fs.chmodSync(dir, dirMode);
  } catch (err) {
    throw new SvidscopeError('io-error', `peercred: cannot create socket directory ${dir}`, { cause: err });
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SvidscopeError('io-error', `peercred: cannot inspect ${socketPath}`, { cause: err });
  }
  if (!st.isSocket()) {
    throw new SvidscopeError('io-error', `peercred: ${socketPath} exists and is not a socket; refusing to remove it`);
  }
  const live = await probeSocket(socketPath);
  if (live !== undefined) {
    throw new SvidscopeError('io-error', `peercred: ${socketPath} ${live}; refusing to replace it`);
  }
  try {
    fs.unlinkSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SvidscopeError('io-error', `peercred: cannot remove stale socket ${socketPath}`, { cause: err });
    }
  }
}

/**
 * Undefined when the socket is stale: only ECONNREFUSED (the kernel's word that nobody listens)
 * or ENOENT (already gone) count. Otherwise why the socket must be left alone.
 */
function probeSocket(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    const done = (reason: string | undefined) => {
      s.destroy();
      resolve(reason);
    };
    s.setTimeout(LIVENESS_PROBE_MS, () => done('does not answer a connection attempt in time'));
    s.once('connect', () => done('is in use by a running process'));
    s.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? undefined : `cannot be probed (${err.code ?? err.message})`),
    );
  });
}
