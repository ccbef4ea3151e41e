/**
 * A bare Workload API client, run as a process of its own: the standard proto through the one
 * loader (proto.ts) and nothing else, no parsing of the SVIDs, so what is timed is the agent's work
 * and the client costs little. Start it with `bareClientArgs()` (bare-client-args.ts). Commands:
 *
 * - `first-svid <socket> <timeoutMs>` (the chaos issuance storm): retries FetchX509SVID until the
 *   first message or the deadline, prints one JSON line `{ ok, id?, error?, attempts, at }` and
 *   exits. It exits by itself shortly after the deadline, so a crashed harness cannot leave it
 *   behind for long.
 * - `streams <socket> <n> <channels>` (bench/workload-api.bench.ts): opens N FetchX509SVID
 *   streams over C channels and prints `{ latencies, errors, cpuMs }`: the milliseconds to each
 *   stream's first message, and the client's own CPU from its first call to its last first message. Once its channels are connected and just before the first call, it writes
 *   `start` on stderr, so a server in the harness's process can time its own work from there.
 *
 * Arguments that start with `--` are ignored: callers add them as markers to find the processes.
 */
import * as grpc from '@grpc/grpc-js';
import { SECURITY_HEADER, SECURITY_HEADER_VALUE, workloadApiService, type X509SvidResponseMessage } from './proto.js';

type FetchX509Svid = (req: object, md: grpc.Metadata, opts?: grpc.CallOptions) => grpc.ClientReadableStream<X509SvidResponseMessage>;
type Stub = grpc.Client & { FetchX509SVID: FetchX509Svid };

function connect(socketPath: string, options?: grpc.ChannelOptions): Stub {
  const Service = workloadApiService();
  return new Service(`unix://${socketPath}`, grpc.credentials.createInsecure(), options) as unknown as Stub;
}

function securityMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(SECURITY_HEADER, SECURITY_HEADER_VALUE);
  return md;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Prints one JSON line and exits once it is written (a pipe may not take it at once). */
function finish(result: object): void {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

async function firstSvid(socketPath: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let attempts = 0;
  const out = (o: object) => finish({ ...o, attempts, at: Date.now() });
  setTimeout(() => out({ ok: false, error: 'deadline' }), timeoutMs + 2000);
  const client = connect(socketPath);
  const md = securityMetadata();
  const once = () => new Promise<{ ok: true; id: string } | { ok: false; error: string }>((resolve) => {
    attempts++;
    const call = client.FetchX509SVID({}, md, { deadline: Math.max(Date.now() + 500, deadline) });
    call.once('data', (m: X509SvidResponseMessage) => {
      resolve({ ok: true, id: m.svids[0]?.spiffe_id ?? '' });
      call.cancel();
    });
    call.on('error', (e: grpc.ServiceError) => resolve({ ok: false, error: e.details || e.message }));
    call.on('end', () => resolve({ ok: false, error: 'stream ended' }));
  });
  let lastError = '';
  while (Date.now() < deadline) {
    const r = await once();
    if (r.ok) return out({ ok: true, id: r.id });
    lastError = r.error;
    await sleep(200);
  }
  out({ ok: false, error: lastError });
}

async function streams(socketPath: string, n: number, channels: number): Promise<void> {
  // A channel each, as that many workloads would have, not one shared subchannel.
  const clients = Array.from({ length: channels }, () => connect(socketPath, { 'grpc.use_local_subchannel_pool': 1 }));
  await Promise.all(clients.map((c) => new Promise((resolve) => c.waitForReady(Date.now() + 10_000, resolve))));
  const md = securityMetadata();
  process.stderr.write('start\n');
  const cpu0 = process.cpuUsage();
  const latencies: number[] = [];
  const calls: grpc.ClientReadableStream<X509SvidResponseMessage>[] = [];
  let errors = 0;
  await Promise.all(Array.from({ length: n }, (_, i) => new Promise<void>((resolve) => {
    const start = process.hrtime.bigint();
    const call = clients[i % clients.length].FetchX509SVID({}, md);
    calls.push(call);
    call.once('data', () => {
      latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
      resolve();
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) errors++;
      resolve();
    });
  })));
  const cpu = process.cpuUsage(cpu0);
  for (const c of calls) c.cancel();
  finish({ latencies, errors, cpuMs: (cpu.user + cpu.system) / 1000 });
}

// No top-level await: from source, the script runs bundled as CommonJS (bare-client-args.ts).
const [command, socketPath, ...rest] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
if (command === 'first-svid') void firstSvid(socketPath, Number(rest[0]));
else if (command === 'streams') void streams(socketPath, Number(rest[0]), Number(rest[1]));
else {
  process.stderr.write('usage: bare-client first-svid <socket> <timeoutMs> | streams <socket> <n> <channels>\n');
  process.exit(2);
}
