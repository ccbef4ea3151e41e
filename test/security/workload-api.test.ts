// Issue 14 items 4 and 6 against a real agent (and issue 13's stream limit per connection): its Workload API flooded with idle connections by
// another uid (per-uid limit, total limit, descriptor exhaustion), and a process that connects,
// hands the connection to a child and execs the binary a `unix:path` entry selects.
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAdmin } from '../../src/cli/admin/client.js';
import type { AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { createWorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { bootstrapAgent } from '../support/agent-bootstrap.js';
import { scrape, total } from '../support/metrics.js';
import { portableScript } from '../support/portable-script.js';
import { freePort, httpOk, spawnCli, stopAll, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { ensureUser, runNodeAs } from '../support/users.js';

const isRoot = process.getuid?.() === 0;
const TD = 'example.org';
const PER_UID = 50;
const TOTAL = 100;
const FIRST_REQUEST_S = 4;
const dir = tempDir('wapi-limits');
chmodSync(dir, 0o755); // the test users run scripts from here and reach the socket
const socketPath = path.join(dir, 'public', 'api.sock');
const selected = path.join(dir, 'bin', 'selected-node');
const procs: ReturnType<typeof spawnCli>[] = [];
let agent: ReturnType<typeof spawnCli>;
let admin: AdminClient;
let agentHealth: number;
let scripts: { flood: string; execClient: string; execAttack: string; fetch: string };
const users = isRoot ? { a: ensureUser('svidscope-test-a'), b: ensureUser('svidscope-test-b') } : undefined;

// Opens <count> connections and never sends a byte. Prints {"phase":"early",...} 500 ms after the
// last connect completed and {"phase":"end",...} once every connection is closed (or after <maxMs>).
const FLOOD = `
const net = require('net');
const [sock, count, maxMs] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
let settled = 0, closed = 0, connected = 0;
const report = (phase) => console.log(JSON.stringify({ phase, connected, closed }));
const done = () => { report('end'); process.exit(0); };
for (let i = 0; i < count; i++) {
  const c = net.connect(sock);
  c.resume(); // read, so that the agent closing the connection is seen
  let counted = false;
  const settle = () => { if (!counted) { counted = true; if (++settled === count) setTimeout(() => report('early'), 500); } };
  c.on('connect', () => { connected++; settle(); });
  c.on('error', settle);
  c.on('close', () => { settle(); if (++closed === count) done(); });
}
setTimeout(done, maxMs);
`;

// The child of the exec attack: it inherited the parent's connection as descriptor argv[2], waits
// until the parent (argv[3]) runs the selected binary (argv[4]; '-': no waiting), then sends a
// FetchX509SVID on it.
const EXEC_CLIENT = `
const fs = require('fs'), net = require('net'), http2 = require('http2');
const [fd, parent, selected] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
const until = Date.now() + 10000;
(function wait() {
  let exe = '';
  try { exe = fs.readlinkSync('/proc/' + parent + '/exe'); } catch {}
  if (selected !== '-' && exe !== selected) return Date.now() > until ? out({ error: 'parent did not exec ' + selected + ' (' + exe + ')' }) : setTimeout(wait, 20);
  const socket = new net.Socket({ fd, readable: true, writable: true });
  const session = http2.connect('http://localhost', { createConnection: () => socket });
  session.on('error', (e) => out({ error: e.message }));
  const req = session.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
  const status = (h) => h['grpc-status'] === undefined ? undefined : { status: Number(h['grpc-status']), message: decodeURIComponent(h['grpc-message'] || ''), code: h['svidscope-error-code'] };
  req.on('response', (h) => { const s = status(h); if (s) out(s); });
  req.on('trailers', (h) => out(status(h) || { error: 'trailers without status' }));
  req.on('data', (d) => { if (d.length > 5) out({ status: 0, svidBytes: d.length }); });
  req.on('error', (e) => out({ error: e.message }));
  req.end(Buffer.from([0, 0, 0, 0, 0]));
})();
`;

// The attacker: connects, lets the agent pin it, forks a child that keeps the connection, and
// execs the selected binary. perl, because it can connect, fork and exec in one process.
const EXEC_ATTACK = `
use strict; use Socket; use Fcntl;
my ($sock_path, $selected, $node, $client, $exec) = @ARGV;
socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
connect($s, pack_sockaddr_un($sock_path)) or die "connect: $!";
select(undef, undef, undef, 0.3);
my $parent = $$;
my $pid = fork(); die "fork: $!" unless defined $pid;
if ($pid == 0) {
  fcntl($s, F_SETFD, 0) or die "fcntl: $!";
  exec($node, $client, fileno($s), $parent, $exec eq 'exec' ? $selected : '-') or die "exec: $!";
}
close($s);
if ($exec eq 'exec') { exec($selected, '-e', 'setTimeout(() => {}, 15000)') or die "exec: $!"; }
sleep 15;
`;

function writeScript(name: string, text: string): string {
  const file = path.join(dir, 'scripts', name);
  writeFileSync(file, text, { mode: 0o644 });
  return file;
}

/** Runs the flood as `user`; resolves its two report lines as they come. */
function flood(user: { uid: number; gid: number }, count: number, maxMs: number) {
  const child = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, scripts.flood, socketPath, String(count), String(maxMs)], { cwd: dir });
  type Report = { phase: string; connected: number; closed: number };
  const lines: Report[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)) as Report);
      buf = buf.slice(i + 1);
      waiters.splice(0).forEach((w) => w());
    }
  });
  const phase = (p: string) => new Promise<Report>((resolve) => {
    const check = () => {
      const hit = lines.find((l) => l.phase === p);
      if (hit) resolve(hit);
      else waiters.push(check);
    };
    check();
  });
  return { child, early: phase('early'), end: phase('end') };
}

async function metrics() {
  return (await scrape(`http://127.0.0.1:${agentHealth}/metrics`)).samples;
}
const refusals = async (reason: string) => total(await metrics(), 'svidscope_agent_workload_api_refusals_total', { reason });
async function ready(): Promise<{ status: number; body: { checks: Record<string, string> } }> {
  const r = await fetch(`http://127.0.0.1:${agentHealth}/ready`, { signal: AbortSignal.timeout(2000) });
  return { status: r.status, body: (await r.json()) as { checks: Record<string, string> } };
}
async function rootFetch(): Promise<string[]> {
  const c = createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 5_000 });
  try {
    return (await c.fetchX509Context()).svids.map((s) => s.id.toString());
  } finally {
    c.close();
  }
}
const logLines = (code: string) => agent.logs().split('\n').filter((l) => l.includes(`"code":"${code}"`));

beforeAll(async () => {
  if (!isRoot) return;
  mkdirSync(path.join(dir, 'scripts'), { mode: 0o755 });
  mkdirSync(path.dirname(selected), { mode: 0o755 });
  // The selected binary: a copy of node at its own path (its own inode), so `unix:path` tells it apart.
  copyFileSync(process.execPath, selected);
  chmodSync(selected, 0o755);
  const fetch = await portableScript(path.join(import.meta.dirname, '..', 'agent', 'fixtures', 'fetch-x509.mjs'), path.join(dir, 'scripts'));
  scripts = { flood: writeScript('flood.cjs', FLOOD), execClient: writeScript('exec-client.cjs', EXEC_CLIENT), execAttack: writeScript('exec-attack.pl', EXEC_ATTACK), fetch: fetch.script };

  const [serverPort, serverHealth] = [await freePort(), await freePort()];
  agentHealth = await freePort();
  const server = spawnCli(['server', 'run', '--trust-domain', TD, '--data-dir', path.join(dir, 'server'), '--bind', `127.0.0.1:${serverPort}`, '--health-bind', `127.0.0.1:${serverHealth}`]);
  procs.push(server);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${serverHealth}/ready`), 30_000, server.logs);
  admin = connectAdmin(path.join(dir, 'server', 'admin.sock'));
  const { token, agentId } = await bootstrapAgent(admin, {
    dir, trustDomain: TD, serverPort, healthPort: agentHealth, socketPath,
    extra: ['discover_workload_path: true', 'workload_size_limit: -1', `workload_api_max_connections: ${TOTAL}`,
      `workload_api_max_connections_per_uid: ${PER_UID}`, `workload_api_first_request_timeout: ${FIRST_REQUEST_S}s`],
  });
  const entry = (id: string, selectors: string[]) => admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}${id}`, parent_id: agentId, selectors: selectors.map((value) => ({ type: 'unix', value })) } });
  await entry('/root', ['uid:0']);
  await entry('/selected', [`uid:${users!.a.uid}`, `path:${selected}`]);
  agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml'), '--join-token', token]);
  procs.push(agent);
  await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${agentHealth}/ready`), 30_000, agent.logs);
  await waitFor('a first SVID for root', () => rootFetch().then((ids) => ids.includes(`spiffe://${TD}/root`)), 20_000, agent.logs);
}, 90_000);

afterAll(async () => {
  admin?.close();
  await stopAll(procs);
  removeDir(dir);
});

describe.runIf(isRoot)('item 4: descriptor exhaustion of the Workload API by one uid', () => {
  it('refuses a uid\'s connections beyond the per-uid limit at accept, serves other uids meanwhile, and closes idle ones at the first-request deadline', async () => {
    const f = flood(users!.a, PER_UID + 30, 20_000);
    const early = await f.early;
    // The 30 over the limit are closed at once; the 50 within it are held (they have not asked yet).
    expect(early).toMatchObject({ connected: PER_UID + 30, closed: 30 });
    expect(await refusals('per_uid_limit')).toBe(30);
    // Another uid is not affected, and readiness stays ok: the agent as a whole has room.
    expect(await rootFetch()).toContain(`spiffe://${TD}/root`);
    expect((await ready()).status).toBe(200);
    expect(total(await metrics(), 'svidscope_agent_workload_api_connections')).toBeGreaterThanOrEqual(PER_UID);
    // The rest is closed by the agent at the deadline, not by the flood (which would wait 20 s).
    const end = await f.end;
    expect(end.closed).toBe(PER_UID + 30);
    expect(await refusals('first_request_timeout')).toBe(PER_UID);
    // One log line per kind and interval, not one per connection; each names its catalogue code.
    const limitLines = logLines('workload-api-connection-limit');
    expect(limitLines.length).toBeGreaterThanOrEqual(2);
    expect(limitLines.length).toBeLessThanOrEqual(4);
    expect(limitLines.some((l) => l.includes('"reason":"per_uid_limit"'))).toBe(true);
    expect(limitLines.some((l) => l.includes('"reason":"first_request_timeout"'))).toBe(true);
  }, 40_000);

  it('reports not ready at the total limit, refuses new connections with total_limit, and recovers when they close', async () => {
    const fa = flood(users!.a, PER_UID, 20_000);
    const fb = flood(users!.b, PER_UID, 20_000);
    await Promise.all([fa.early, fb.early]);
    const r = await ready();
    expect(r.status).toBe(503);
    expect(r.body.checks.workload_api).toMatch(/at workload_api_max_connections/);
    const before = await refusals('total_limit');
    await expect(rootFetch()).rejects.toThrow();
    expect(await refusals('total_limit')).toBeGreaterThan(before);
    await Promise.all([fa.end, fb.end]);
    await waitFor('ready again', async () => (await ready()).status === 200, 10_000, agent.logs);
    expect(await rootFetch()).toContain(`spiffe://${TD}/root`);
  }, 40_000);

  it('reports EMFILE as its own error and metric, not as callers exiting, is not ready while out of descriptors, and recovers', async () => {
    const pid = agent.child.pid!;
    const original = (await execa('prlimit', ['--pid', String(pid), '--nofile', '--raw', '--noheadings', '--output=SOFT,HARD'])).stdout.trim().split(/\s+/);
    const open = readdirSync(`/proc/${pid}/fd`).length;
    // Room for about ten connections (two descriptors each) beyond what the agent holds now. Only
    // the soft limit: lowering the hard one could not be undone without CAP_SYS_RESOURCE.
    await execa('prlimit', ['--pid', String(pid), `--nofile=${open + 20}:${original[1]}`]);
    try {
      const f = flood(users!.a, 40, 20_000);
      await f.early;
      expect(await refusals('emfile')).toBeGreaterThan(0);
      const r = await ready();
      expect(r.status).toBe(503);
      expect(r.body.checks.workload_api).toMatch(/out of file descriptors/);
      const lines = logLines('workload-api-fd-exhausted');
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(3);
      expect(agent.logs()).not.toContain('caller exited before it could be pinned');
      await f.end;
      await waitFor('ready again', async () => (await ready()).status === 200, 15_000, agent.logs);
    } finally {
      await execa('prlimit', ['--pid', String(pid), `--nofile=${original[0]}:${original[1]}`]);
    }
    expect(await rootFetch()).toContain(`spiffe://${TD}/root`);
  }, 60_000);
});

describe.runIf(isRoot)('item 6: exec after connect does not inherit the selected binary\'s identity', () => {
  const attack = (mode: 'exec' | 'stay') => new Promise<{ status?: number; code?: string; message?: string; error?: string }>((resolve, reject) => {
    const child: ChildProcess = spawn('setpriv', [`--reuid=${users!.a.uid}`, `--regid=${users!.a.gid}`, '--clear-groups', 'perl', scripts.execAttack, socketPath, selected, process.execPath, scripts.execClient, mode], { cwd: dir });
    let out = '';
    let err = '';
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`attack gave no answer: ${out} ${err}`))), 20_000);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(JSON.parse(out.slice(0, out.indexOf('\n'))) as { status?: number });
    });
  });

  it('the selected binary, started normally, gets its SVID', async () => {
    const r = await runNodeAs(users!.a, scripts.fetch, [socketPath], dir);
    expect(r.code).toBe(0);
    const viaSelected = await execa('setpriv', [`--reuid=${users!.a.uid}`, `--regid=${users!.a.gid}`, '--clear-groups', selected, scripts.fetch, socketPath], { cwd: dir, reject: false });
    expect(JSON.parse(viaSelected.stdout)).toEqual({ spiffeIds: [`spiffe://${TD}/selected`] });
    // node at its usual path is not selected: same uid, other binary.
    expect(JSON.parse(r.stdout)).toMatchObject({ error: 'PERMISSION_DENIED' });
  }, 30_000);

  it('a child holding the connection of a parent that exec\'d the selected binary is refused with workload-exec-after-connect', async () => {
    const before = await refusals('exec_after_connect');
    const got = await attack('exec');
    expect(got).toMatchObject({ status: 7, code: 'workload-exec-after-connect' });
    expect(got.message).toMatch(/exec after connect/);
    expect(await refusals('exec_after_connect')).toBe(before + 1);
    expect(logLines('workload-exec-after-connect').length).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it('without the exec the same child is attested as the parent (perl): no identity, and no exec refusal', async () => {
    const before = await refusals('exec_after_connect');
    const got = await attack('stay');
    expect(got).toMatchObject({ status: 7 });
    expect(got.code).toBe('workload-no-identity'); // the trailer names the plain refusal, not the exec one
    expect(got.message).toBe('no identity issued');
    expect(await refusals('exec_after_connect')).toBe(before);
  }, 30_000);
});

describe.runIf(isRoot)('one connection opening streams without end', () => {
  it('gets 100 calls served and the rest refused with RESOURCE_EXHAUSTED naming the limit, counted; other connections are served', async () => {
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
    session.on('error', () => undefined);
    const outcome = (): Promise<'served' | string> => new Promise((resolve) => {
      const req = session.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
      req.on('error', () => resolve('stream error'));
      req.once('data', () => resolve('served'));
      req.on('response', (h) => h['grpc-status'] !== undefined && resolve(`${String(h['grpc-status'])}: ${String(h['grpc-message'])}`));
      req.end(Buffer.alloc(5)); // one empty X509SVIDRequest
    });
    try {
      const before = total(await metrics(), 'svidscope_agent_limit_refusals_total', { limit: 'workload_api_max_streams_per_connection' });
      const results = await Promise.all(Array.from({ length: 130 }, outcome));
      expect(results.filter((r) => r === 'served')).toHaveLength(100);
      expect(results.filter((r) => r !== 'served')).toEqual(Array(30).fill('8: too many calls open on this connection (at most 100)'));
      expect(total(await metrics(), 'svidscope_agent_limit_refusals_total', { limit: 'workload_api_max_streams_per_connection' })).toBe(before + 30);
      expect(await rootFetch()).toContain(`spiffe://${TD}/root`);
    } finally {
      session.destroy();
    }
  }, 30_000);
});
