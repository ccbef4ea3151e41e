/**
 * A load generator for the Workload API that costs its process almost nothing per caller: it
 * speaks HTTP/2 as fixed frames written to plain Unix sockets (in the manner of h2load), so that N
 * simultaneous callers are timed by what the agent does, not by a client library sharing the same
 * two cores. The gRPC client library costs ≈ 0.57 ms of CPU per stream (bare-client.ts), which is
 * 570 ms for 1,000 callers before the agent does anything; this one ≈ 0.07 ms.
 *
 * `streams <socket> <n> <connections>`: connects, waits for every connection's SETTINGS, writes
 * `start` on stderr, then writes each connection's FetchX509SVID requests in one write (an empty
 * X509SVIDRequest with the security header, half-closed) and times each stream from that write to
 * its first DATA frame. Prints `{ latencies, errors, cpuMs }` like the bare client. A stream that
 * ends or is reset before any DATA counts as an error (its status is not decoded: the bench only
 * needs to know it got no SVID). No HPACK decoding, no flow control beyond one large window.
 *
 * Bench-only: it trusts the server it talks to and has no limits of its own.
 */
import net from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FrameType = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
const Flag = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;
const FRAME_HEADER = 9;

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(FRAME_HEADER);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** An HPACK string literal, not Huffman-coded (every value here is under 127 bytes). */
const literal = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);

/**
 * The request headers as one HPACK block that needs no dynamic table: indexed `:method: POST`
 * (static 3) and `:scheme: http` (6), literals without indexing for `:path` (name 4),
 * `:authority` (name 1), `content-type` (name 31) and the new names `te` and the Workload API's
 * security header.
 */
const REQUEST_HEADERS = Buffer.concat([
  Buffer.from([0x83, 0x86]),
  Buffer.from([0x04]), literal('/SpiffeWorkloadAPI/FetchX509SVID'),
  Buffer.from([0x01]), literal('localhost'),
  Buffer.from([0x0f, 0x10]), literal('application/grpc'),
  Buffer.from([0x00]), literal('te'), literal('trailers'),
  Buffer.from([0x00]), literal('workload.spiffe.io'), literal('true'),
]);
/** One gRPC message: uncompressed, zero bytes long (an empty X509SVIDRequest). */
const EMPTY_REQUEST = Buffer.from([0, 0, 0, 0, 0]);
/** Our SETTINGS: SETTINGS_INITIAL_WINDOW_SIZE (4) of 1 MiB, so no stream waits for a WINDOW_UPDATE. */
const SETTINGS = frame(FrameType.SETTINGS, 0, 0, Buffer.from([0, 4, 0, 0x10, 0, 0]));
/** And the connection's window opened by 1 GiB, for the same reason. */
const CONNECTION_WINDOW = frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0x40, 0, 0, 0]));

function requests(count: number): Buffer {
  const parts: Buffer[] = [];
  for (let k = 0; k < count; k++) {
    const id = 2 * k + 1;
    parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, REQUEST_HEADERS), frame(FrameType.DATA, Flag.END_STREAM, id, EMPTY_REQUEST));
  }
  return Buffer.concat(parts);
}

interface Connection {
  socket: net.Socket;
  streams: number;
  sentAt: bigint;
}

async function streams(socketPath: string, n: number, connections: number): Promise<void> {
  const latencies: number[] = [];
  let errors = 0;
  let left = n;
  let allAnswered!: () => void;
  const answered = new Promise<void>((resolve) => (allAnswered = resolve));
  const settle = () => {
    if (--left === 0) allAnswered();
  };
  const open = (count: number) => new Promise<Connection>((resolve, reject) => {
    const socket = new net.Socket();
    const conn: Connection = { socket, streams: count, sentAt: 0n };
    const settled = new Set<number>();
    let pending: Buffer = Buffer.alloc(0);
    let ready = false;
    let attempts = 0;
    socket.on('connect', () => socket.write(Buffer.concat([PREFACE, SETTINGS, CONNECTION_WINDOW])));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A full listen backlog refuses a Unix socket connect with EAGAIN: try again, as clients do.
      if (!ready && err.code === 'EAGAIN' && ++attempts < 100) setTimeout(() => socket.connect(socketPath), 10);
      else if (ready) process.stderr.write(`connection error: ${err.message}\n`);
      else reject(err);
    });
    socket.on('close', () => {
      // Streams still unanswered when the agent closes the connection got no SVID.
      for (let id = 1; id < 2 * count; id += 2) if (conn.sentAt && !settled.has(id)) {
        settled.add(id);
        errors++;
        settle();
      }
    });
    socket.on('data', (chunk: Buffer) => {
      const now = process.hrtime.bigint();
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let at = 0;
      while (pending.length - at >= FRAME_HEADER) {
        const length = pending.readUIntBE(at, 3);
        if (pending.length - at < FRAME_HEADER + length) break;
        const [type, flags] = [pending[at + 3], pending[at + 4]];
        const id = pending.readUInt32BE(at + 5) & 0x7fffffff;
        if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) {
          socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
          if (!ready) {
            ready = true;
            resolve(conn);
          }
        } else if (type === FrameType.PING && !(flags & Flag.ACK)) {
          socket.write(frame(FrameType.PING, Flag.ACK, 0, pending.subarray(at + FRAME_HEADER, at + FRAME_HEADER + 8)));
        } else if (id !== 0 && !settled.has(id)) {
          if (type === FrameType.DATA) {
            settled.add(id);
            latencies.push(Number(now - conn.sentAt) / 1e6);
            settle();
          } else if (type === FrameType.RST_STREAM || (type === FrameType.HEADERS && flags & Flag.END_STREAM)) {
            settled.add(id);
            errors++;
            settle();
          }
        }
        at += FRAME_HEADER + length;
      }
      pending = pending.subarray(at);
    });
    socket.connect(socketPath);
  });
  const counts = Array.from({ length: connections }, (_, i) => Math.floor(n / connections) + (i < n % connections ? 1 : 0));
  const conns = await Promise.all(counts.map(open));
  const batches = conns.map((c) => requests(c.streams));
  process.stderr.write('start\n');
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < conns.length; i++) {
    conns[i].sentAt = process.hrtime.bigint();
    conns[i].socket.write(batches[i]);
  }
  await answered;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ latencies, errors, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`, () => process.exit(0));
}

const [command, socketPath, ...rest] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
if (command === 'streams') void streams(socketPath, Number(rest[0]), Number(rest[1]));
else {
  process.stderr.write('usage: frame-client streams <socket> <n> <connections>\n');
  process.exit(2);
}
