/**
 * Kernel-reported credentials of the process on the other end of a Unix socket (SO_PEERCRED).
 *
 * This is the only trustworthy source of a workload's identity on the Workload API socket: the
 * SPIFFE Workload Endpoint forbids asking the client who it is, so the agent asks the kernel. The
 * server's admin socket uses it too, to name the caller of each step in its audit lines.
 * Node has no binding for SO_PEERCRED, so `getsockopt(2)` is called through koffi (FFI).
 */
import { createRequire } from 'node:module';
import type net from 'node:net';
import { SvidscopeError } from './errors/catalog.js';

/** What the kernel recorded for the peer when it called connect(2): pid, effective uid and effective gid. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

// <asm-generic/socket.h> values; identical on every Linux architecture Node supports except
// mips/sparc/parisc/alpha, none of which have koffi prebuilds.
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
// struct ucred { pid_t pid; uid_t uid; gid_t gid; } = three 32-bit fields.
const UCRED_SIZE = 12;

type Koffi = typeof import('koffi');
interface Libc {
  readonly getsockopt: (fd: number, level: number, name: number, out: Record<string, number>, len: number[]) => number;
  readonly errno: () => number;
}

// The one module-level handle the style guide allows: loading libc and declaring the prototype
// costs a dlopen, so it is done on first use (never at import, so non-Linux hosts can import this
// module) and then shared.
let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  let koffi: Koffi;
  try {
    // koffi ships a native addon; requiring it lazily keeps import side-effect free.
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (err) {
    throw new SvidscopeError('internal', 'peercred: cannot load the koffi ffi module', { cause: err });
  }
  const lib = koffi.load('libc.so.6');
  const ucred = koffi.struct('svidscope_ucred', { pid: 'int32_t', uid: 'uint32_t', gid: 'uint32_t' });
  const fn = lib.func('getsockopt', 'int', ['int', 'int', 'int', koffi.out(koffi.pointer(ucred)), koffi.inout(koffi.pointer('uint32_t'))]);
  libc = {
    getsockopt: (fd, level, name, out, len) => fn(fd, level, name, out, len) as number,
    errno: () => koffi.errno(),
  };
  return libc;
}

/** The OS file descriptor behind a connected net.Socket (Pipe or TCP handle); -1 when it has none. */
export function socketFd(socket: net.Socket): number {
  // `_handle.fd` is libuv's descriptor; Node exposes no public accessor for it.
  const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
  return typeof handle?.fd === 'number' ? handle.fd : -1;
}

/**
 * Reads SO_PEERCRED from an accepted Unix socket. The values are those the kernel captured at
 * connect(2) time; nothing the client sends can influence them.
 */
export function readPeerCredentials(socket: net.Socket): PeerCredentials {
  if (process.platform !== 'linux') {
    throw new SvidscopeError('internal', `peercred: SO_PEERCRED is only supported on linux, not ${process.platform}`);
  }
  const fd = socketFd(socket);
  if (fd < 0) {
    throw new SvidscopeError('io-error', 'peercred: socket has no file descriptor (closed or not a kernel socket)');
  }
  const { getsockopt, errno } = loadLibc();
  const out: Record<string, number> = {};
  const len = [UCRED_SIZE];
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, out, len) !== 0) {
    // Read errno before anything else can run a libc call and overwrite it.
    const code = errno();
    throw new SvidscopeError('io-error', `peercred: getsockopt(SO_PEERCRED) failed with errno ${code}`);
  }
  if (len[0] !== UCRED_SIZE || typeof out.pid !== 'number') {
    throw new SvidscopeError('io-error', `peercred: getsockopt(SO_PEERCRED) returned ${len[0]} bytes, expected ${UCRED_SIZE}`);
  }
  return { pid: out.pid, uid: out.uid, gid: out.gid };
}
