// Kernel-based caller identification end to end: real grpc-js server, clients under other uids (setpriv), real /proc.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ensureUser } from '../support/users.js';
import { build as buildScript } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attestUnix, EXEC_AFTER_CONNECT_MESSAGE, PID_REUSED_MESSAGE, type Selector } from '../../src/identity-plane/agent/attestor-workload/unix.js';
import { CallerTracker, parseStarttime } from '../../src/identity-plane/agent/peercred/caller.js';
import { listenWorkloadSocket, type WorkloadSocket } from '../../src/identity-plane/agent/peercred/listener.js';
import { isSvidscopeError } from '../../src/common/errors/catalog.js';

interface Whoami { pid: number; uid: number; gid: number; selectors: Selector[] }

const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer) => JSON.parse(b.toString()) };
const method = (name: string, responseStream: boolean) => ({
  path: `/svidscope.test.Peer/${name}`, requestStream: false, responseStream, originalName: name.toLowerCase(),
  requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize,
});
// Watch is server streaming, like FetchX509SVID: its handler gets a ServerWritableStream.
const service: grpc.ServiceDefinition = { whoami: method('Whoami', false), watch: method('Watch', true) };

// The out-of-process client: plain JS, grpc-js by absolute path, so it needs nothing but read access.
// Run as other uids, so it must not need the project tree: bundled with its dependencies first.
const clientScript = `
import * as grpc from '@grpc/grpc-js';
const json = { serialize: (v) => Buffer.from(JSON.stringify(v)), deserialize: (b) => JSON.parse(b.toString()) };
const Client = grpc.makeGenericClientConstructor({ whoami: { path: '/svidscope.test.Peer/Whoami', requestStream: false, responseStream: false,
  requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize } });
const c = new Client('unix://' + process.argv[2], grpc.credentials.createInsecure());
c.whoami({}, (err, res) => { if (err) { console.error(err.message); process.exit(1); } console.log(JSON.stringify(res)); c.close(); });
`;

let tmp: string;
let socketPath: string;
let server: grpc.Server;
let sock: WorkloadSocket;
// Every listener serving `server`: a handler asks each which connection the call came in on.
const listeners = new Set<WorkloadSocket>();

async function listen(opts: Omit<Parameters<typeof listenWorkloadSocket>[0], 'server'>): Promise<WorkloadSocket> {
  const s = await listenWorkloadSocket({ ...opts, server });
  listeners.add(s);
  return s;
}

// Other listeners throw for calls that are not theirs; the main one's error is the one reported.
const callerOf = (c: { getPeer(): string }) =>
  [...listeners].map((s) => { try { return s.callerOf(c); } catch { return undefined; } }).find(Boolean) ?? sock.callerOf(c);

interface PeerClient extends grpc.Client {
  whoami(r: object, cb: (e: Error | null, r: Whoami) => void): void;
  watch(r: object): grpc.ClientReadableStream<Whoami>;
}
// A local subchannel pool: every client gets its own connection instead of a shared one.
const client = (target: string) =>
  new (grpc.makeGenericClientConstructor(service, 'Peer'))(`unix://${target}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as PeerClient;

function call(target: string): Promise<Whoami> {
  const c = client(target);
  return new Promise((resolve, reject) => c.whoami({}, (err, res) => (c.close(), err ? reject(err) : resolve(res))));
}

function runAs(user: { uid: number; gid: number }): Promise<{ pid: number; out: Whoami }> {
  const script = path.join(tmp, 'client.cjs');
  const child = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, script, socketPath], { cwd: tmp });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve({ pid: child.pid!, out: JSON.parse(stdout) }) : reject(new Error(`client failed (${code}): ${stderr}`)))),
  );
}

const values = (selectors: Selector[], kind: string) => selectors.filter((s) => s.value.startsWith(`${kind}:`)).map((s) => s.value.slice(kind.length + 1));

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'svidscope-peercred-'));
  fs.chmodSync(tmp, 0o755); // the test users must reach the socket and the client script
  await buildScript({ stdin: { contents: clientScript, resolveDir: path.resolve(import.meta.dirname), loader: 'js' }, bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: path.join(tmp, 'client.cjs'), logLevel: 'error' });
  fs.chmodSync(path.join(tmp, 'client.cjs'), 0o644);
  socketPath = path.join(tmp, 'public', 'api.sock');
  server = new grpc.Server();
  server.addService(service, {
    whoami: async (c: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<Whoami>) => {
      try {
        const caller = callerOf(c);
        const selectors = await attestUnix(caller, { discoverWorkloadPath: true, workloadSizeLimit: 0, timeoutMs: 20_000 });
        cb(null, { pid: caller.pid, uid: caller.uid, gid: caller.gid, selectors });
      } catch (err) {
        cb({ code: isSvidscopeError(err) ? err.grpcStatus : grpc.status.INTERNAL, details: (err as Error).message });
      }
    },
    watch: (c: grpc.ServerWritableStream<unknown, unknown>) => {
      const caller = callerOf(c);
      c.write({ pid: caller.pid, uid: caller.uid, gid: caller.gid, selectors: [] });
      c.end();
    },
  });
  sock = await listen({ socketPath });
});

afterAll(async () => {
  await sock?.close();
  server?.forceShutdown();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('caller identification over the workload socket', () => {
  it('reports this process own pid, uid and gid from the kernel', async () => {
    const me = await call(socketPath);
    expect(me).toMatchObject({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    expect(values(me.selectors, 'uid')).toEqual([String(process.getuid!())]);
    expect(values(me.selectors, 'user')).toEqual([os.userInfo().username]);
  });

  it('attests clients running under two other uids, each with its own selectors', async () => {
    const a = ensureUser('svidscope-test-a');
    const b = ensureUser('svidscope-test-b');
    const [ra, rb] = await Promise.all([runAs(a), runAs(b)]);
    const node = fs.realpathSync(process.execPath);
    const digest = createHash('sha256').update(fs.readFileSync(node)).digest('hex');
    for (const [user, name, r] of [[a, 'svidscope-test-a', ra], [b, 'svidscope-test-b', rb]] as const) {
      expect(r.out).toMatchObject({ pid: r.pid, uid: user.uid, gid: user.gid });
      expect(values(r.out.selectors, 'uid')).toEqual([String(user.uid)]);
      expect(values(r.out.selectors, 'user')).toEqual([name]);
      expect(values(r.out.selectors, 'gid')).toEqual([String(user.gid)]);
      expect(values(r.out.selectors, 'group')).toEqual([name]);
      expect(values(r.out.selectors, 'supplementary_gid')).toEqual([]); // --clear-groups
      expect(values(r.out.selectors, 'path')).toEqual([node]);
      expect(values(r.out.selectors, 'sha256')).toEqual([digest]);
    }
  });

  it('identifies the caller of a server-streaming call the same way', async () => {
    const c = client(socketPath);
    const got: Whoami[] = [];
    for await (const m of c.watch({})) got.push(m as Whoami);
    c.close();
    expect(got).toEqual([{ pid: process.pid, uid: process.getuid!(), gid: process.getgid!(), selectors: [] }]);
  });

  it('refuses a call that did not arrive through the listener', () => {
    expect(() => sock.callerOf({ getPeer: () => 'unknown' })).toThrow('workload attestation failed: caller connection unknown');
  });
});

describe('socket file lifecycle', () => {
  it('creates the directory 0755 and the socket with the documented default mode 0777', () => {
    expect(fs.statSync(path.dirname(socketPath)).mode & 0o777).toBe(0o755);
    expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o777);
  });

  it('applies a configured mode and removes the socket file on close', async () => {
    const p = path.join(tmp, 'restricted', 'api.sock');
    const s = await listen({ socketPath: p, mode: 0o770 });
    expect(fs.statSync(p).mode & 0o777).toBe(0o770);
    await s.close();
    expect(fs.existsSync(p)).toBe(false);
  });

  it('replaces a stale socket left by a crashed agent', async () => {
    const p = path.join(tmp, 'stale', 'api.sock');
    fs.mkdirSync(path.dirname(p));
    const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(p)}, () => console.log('up'))`]);
    await new Promise((resolve) => crashed.stdout.once('data', resolve));
    crashed.kill('SIGKILL'); // no cleanup runs: the socket file stays behind
    await new Promise((resolve) => crashed.once('exit', resolve));
    expect(fs.lstatSync(p).isSocket()).toBe(true);
    const s = await listen({ socketPath: p });
    expect((await call(p)).pid).toBe(process.pid);
    await s.close();
  });

  it('does not steal a socket another process is listening on', async () => {
    const p = path.join(tmp, 'live', 'api.sock');
    fs.mkdirSync(path.dirname(p));
    const other = net.createServer((c) => c.on('error', () => {}).end('still mine'));
    await new Promise<void>((resolve) => other.listen(p, resolve));
    await expect(listenWorkloadSocket({ socketPath: p, server })).rejects.toThrow(`peercred: ${p} is in use by a running process; refusing to replace it`);
    const reply = await new Promise<string>((resolve) => net.connect(p).on('data', (d) => resolve(d.toString())));
    expect(reply).toBe('still mine');
    await new Promise((resolve) => other.close(resolve));
  });

  it('refuses to remove a file that is not a socket', async () => {
    const p = path.join(tmp, 'notasocket');
    fs.writeFileSync(p, 'data');
    await expect(listenWorkloadSocket({ socketPath: p, server })).rejects.toThrow(`peercred: ${p} exists and is not a socket; refusing to remove it`);
    expect(fs.readFileSync(p, 'utf8')).toBe('data');
  });
});

describe('pid-reuse guard', () => {
  const root = { uid: process.getuid!(), gid: process.getgid!() };

  it('is alive while the pinned process runs and not after it exits; attestation then fails', async () => {
    // A binary whose comm holds spaces and parentheses exercises the stat parser on a real process.
    const odd = path.join(tmp, 'sl) e (ep');
    fs.copyFileSync('/bin/sleep', odd);
    fs.chmodSync(odd, 0o755);
    const child = spawn(odd, ['30']);
    await new Promise((resolve) => child.once('spawn', resolve));
    const caller = CallerTracker.track({ pid: child.pid!, ...root });
    expect(caller.starttime).toMatch(/^\d+$/);
    expect(await caller.isAlive()).toBe(true);
    const selectors = await attestUnix(caller, { discoverWorkloadPath: true, workloadSizeLimit: -1 });
    expect(values(selectors, 'path')).toEqual([odd]);
    expect(values(selectors, 'sha256')).toEqual([]); // negative limit: never hash

    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve)); // reaped: /proc/<pid> is gone
    expect(await caller.isAlive()).toBe(false);
    const err = await attestUnix(caller, { discoverWorkloadPath: false, workloadSizeLimit: 0 }).catch((e: unknown) => e);
    expect(isSvidscopeError(err) && err.code).toBe('unavailable');
    expect((err as Error).message).toBe(PID_REUSED_MESSAGE);
    caller.close();
    expect(await caller.isAlive()).toBe(false);
  });

  it('sees an exec of the pinned process, which keeps its pid, start time and owner; attestation then refuses it', async () => {
    // sh waits for a line on stdin, then replaces itself with sleep: same process, another program.
    const child = spawn('/bin/sh', ['-c', 'read line; exec /bin/sleep 30'], { stdio: ['pipe', 'ignore', 'ignore'] });
    await new Promise((resolve) => child.once('spawn', resolve));
    const caller = CallerTracker.track({ pid: child.pid!, ...root });
    try {
      expect(await caller.execChanged()).toBe(false);
      await attestUnix(caller, { discoverWorkloadPath: true, workloadSizeLimit: -1 });
      child.stdin!.write('go\n');
      const sleep = fs.realpathSync('/bin/sleep');
      for (let i = 0; i < 100 && fs.readlinkSync(`/proc/${child.pid}/exe`) !== sleep; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await caller.isAlive()).toBe(true);
      expect(await caller.execChanged()).toBe(true);
      const err = await attestUnix(caller, { discoverWorkloadPath: true, workloadSizeLimit: -1 }).catch((e: unknown) => e);
      expect(isSvidscopeError(err) && err.code).toBe('workload-exec-after-connect');
      expect(isSvidscopeError(err) && err.grpcStatus).toBe(grpc.status.PERMISSION_DENIED);
      expect((err as Error).message).toBe(EXEC_AFTER_CONNECT_MESSAGE);
    } finally {
      caller.close();
      child.kill('SIGKILL');
    }
  });

  it('is not alive when /proc ownership differs from the peer credentials', async () => {
    const caller = CallerTracker.track({ pid: process.pid, uid: 4242, gid: root.gid });
    expect(await caller.isAlive()).toBe(false);
    caller.close();
  });

  it('rejects pid 0 (peer in a pid namespace the kernel cannot map)', () => {
    expect(() => CallerTracker.track({ pid: 0, ...root })).toThrow('workload attestation failed: caller pid 0 cannot be tracked');
  });

  it('parses starttime after the last parenthesis and rejects short stat lines', () => {
    const rest = Array.from({ length: 50 }, (_, i) => String(i + 3)); // fields 3..52
    rest[0] = 'S';
    expect(parseStarttime(`77 (a) b) (c d) ${rest.join(' ')}\n`)).toBe('22');
    expect(() => parseStarttime('77 (x) S 1 2 3')).toThrow('peercred: malformed /proc stat: 6 fields, want at least 38');
  });
});
