/**
 * Fleet simulator: one real `svidscope server run` process and a fleet of simulated agents in
 * worker processes (`bench/fleet/worker.ts`) that attest with join tokens, hold agent SVIDs, sync
 * over mTLS gRPC on persistent connections and keep X509-SVIDs for their entries, rotating them at
 * half-life. The coordinator (this file) creates the join tokens and the entries through the admin
 * API (BatchCreateEntries), then measures a window of `--duration` seconds with entry churn and one
 * forced CA rotation.
 *
 *   npm run bench -- fleet [--agents 100] [--entries-per-agent 10] [--sync-interval 5] [--push-sync-interval 30] [--churn 2]
 *       [--duration 30] [--datastore sqlite|postgres] [--workers N] [--svid-ttl 40]
 *       [--rotate-ca-at <s into the window; -1 = none>] [--setup-timeout 600]
 *       [--servers 2 --datastore postgres --kill-one-at <s into the window>]
 *       [--push on|off] [--incremental on|off] [--from-source] [--server-node-options=<node flags>]
 *       [--simulator-node-options=<node flags>] [--simulator-nice <0..19>] [--server-output <file>]
 *
 * PostgreSQL: set SVIDSCOPE_TEST_POSTGRES_URL (or --postgres-url); the run uses a schema of its own
 * and drops it at the end. With several servers (one PostgreSQL), agent i starts on server i mod n
 * and, when its server is unreachable, moves to the next one (the agent's own ServerClient over
 * the address list, within the failing call); `--kill-one-at` SIGKILLs the last server and reports
 * how long its agents took to sync again elsewhere, how many did so within one sync interval, and
 * whether any agent lost an SVID (one expired before its replacement came, or none at the end).
 *
 * By default each simulated agent keeps a WatchChanges stream and syncs at once when the server
 * pushes a change, and syncs incrementally (its (id, revision) pairs against the delta);
 * `--push off --incremental off` is the polling, full-list protocol (the "before" figures).
 *
 * Propagation is measured from the moment the admin write is sent until the affected agent's sync
 * answer holds the change (every entry here has exactly one agent: its parent). Sync latency is the
 * SyncAuthorizedEntries round trip as an agent sees it. Server CPU and memory come from /proc,
 * datastore operations from the server's /metrics.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import pg from 'pg';
import { stringify } from 'yaml';
import { connectAdmin, type AdminClient } from '../src/identity-plane/server-api/admin-client.js';
import { MAX_ENTRY_BATCH, type BatchCreateEntriesResultMsg, type EntryMsg } from '../src/identity-plane/server-api/messages.js';
import { parseSpiffeBundle, x509BundleToPem } from '../src/identity-plane/spiffe/bundle/index.js';
import { freePort, httpOk, spawnCli, waitFor } from '../test/support/process.js';
import { bundleSimulator } from './fleet/bundle.js';
import { cpuSeconds, datastoreOps, gcTotals, heapUsedMiB, memoryMiB, percentile, round, scrapeMetrics, type GcTotals } from './fleet/measure.js';
import { wallMs, type FromWorker, type ToWorker, type WorkerStats } from './fleet/protocol.js';
import type { BenchContext, BenchFigures } from './run.js';
import { mustTrustDomain } from '../src/identity-plane/spiffe/id/index.js';

const TD = 'example.org';

export interface FleetOptions {
  agents: number;
  entriesPerAgent: number;
  syncIntervalSeconds: number;
  churnPerSecond: number;
  durationSeconds: number;
  datastore: 'sqlite' | 'postgres';
  postgresUrl?: string;
  workers: number;
  svidTtlSeconds: number;
  /** Seconds into the window; negative = no rotation. */
  rotateCaAtSeconds: number;
  setupTimeoutSeconds: number;
  servers: number;
  /** Seconds into the window; negative = no kill. */
  killOneAtSeconds: number;
  push: boolean;
  /** Run the server from the TypeScript source through tsx instead of the compiled build. */
  fromSource: boolean;
  /** Node and V8 flags for the server processes only (e.g. `--max-semi-space-size=4`, `--cpu-prof`), split on spaces; '' = none. */
  serverNodeOptions: string;
  /** Node and V8 flags for the simulator processes only (e.g. `--trace-gc`, `--single-threaded-gc`), split on spaces; '' = none. */
  simulatorNodeOptions: string;
  /**
   * Scheduling niceness of the simulator processes (0 = as the server). The simulated agents stand
   * for other machines; above 0 the server's threads run first when both want the two cores.
   */
  simulatorNice: number;
  /**
   * Where to write every sync of the window as [ms since the window began, round trip ms], and each
   * simulator process's event-loop lags of 20 ms or more, and the first server's longest event-loop
   * delay per second (to see a tail's shape and whose it is).
   */
  syncsOut?: string;
  /**
   * A file that takes each server process's stdout and stderr as they come (appended, one header
   * line per server), e.g. for the V8 traces of `--server-node-options="--trace-gc-nvp"`.
   */
  serverOutput?: string;
  /** The agents' push_sync_interval: how often they poll while their change stream is up. */
  pushSyncIntervalSeconds: number;
  incremental: boolean;
}

export function parseFleetOptions(args: readonly string[]): FleetOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      agents: { type: 'string', default: '100' },
      'entries-per-agent': { type: 'string', default: '10' },
      'sync-interval': { type: 'string', default: '5' },
      'push-sync-interval': { type: 'string', default: '30' },
      churn: { type: 'string', default: '2' },
      duration: { type: 'string', default: '30' },
      datastore: { type: 'string', default: 'sqlite' },
      'postgres-url': { type: 'string' },
      workers: { type: 'string' },
      'svid-ttl': { type: 'string', default: '40' },
      'rotate-ca-at': { type: 'string' },
      'setup-timeout': { type: 'string', default: '600' },
      servers: { type: 'string', default: '1' },
      'kill-one-at': { type: 'string', default: '-1' },
      push: { type: 'string', default: 'on' },
      incremental: { type: 'string', default: 'on' },
      'from-source': { type: 'boolean', default: false },
      'server-node-options': { type: 'string', default: '' },
      'simulator-node-options': { type: 'string', default: SIMULATOR_NODE_OPTIONS },
      'simulator-nice': { type: 'string', default: String(SIMULATOR_NICE) },
      'syncs-out': { type: 'string' },
      'server-output': { type: 'string' },
    },
    strict: true,
  });
  const num = (name: string, v: string | undefined, min: number, max: number) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < min || n > max) throw new Error(`--${name} must be a number in ${min}..${max}, got ${JSON.stringify(v)}`);
    return n;
  };
  const agents = Math.floor(num('agents', values.agents, 1, 50_000));
  const durationSeconds = num('duration', values.duration, 1, 3600);
  if (values.datastore !== 'sqlite' && values.datastore !== 'postgres') throw new Error(`--datastore must be sqlite or postgres, got ${JSON.stringify(values.datastore)}`);
  const postgresUrl = values['postgres-url'] ?? process.env.SVIDSCOPE_TEST_POSTGRES_URL;
  if (values.datastore === 'postgres' && !postgresUrl) throw new Error('--datastore postgres needs --postgres-url or SVIDSCOPE_TEST_POSTGRES_URL');
  const servers = Math.floor(num('servers', values.servers, 1, 4));
  if (servers > 1 && values.datastore !== 'postgres') throw new Error('--servers above 1 share one datastore: add --datastore postgres');
  const killOneAtSeconds = num('kill-one-at', values['kill-one-at'], -1, 3600);
  if (killOneAtSeconds >= 0 && servers < 2) throw new Error('--kill-one-at needs --servers 2 or more (the agents need a server to move to)');
  const onOff = (name: string, v: string | undefined) => {
    if (v !== 'on' && v !== 'off') throw new Error(`--${name} must be on or off, got ${JSON.stringify(v)}`);
    return v === 'on';
  };
  return {
    push: onOff('push', values.push),
    fromSource: values['from-source'] ?? false,
    serverNodeOptions: values['server-node-options'] ?? '',
    simulatorNodeOptions: values['simulator-node-options'] ?? '',
    simulatorNice: Math.floor(num('simulator-nice', values['simulator-nice'], 0, 19)),
    syncsOut: values['syncs-out'],
    serverOutput: values['server-output'],
    incremental: onOff('incremental', values.incremental),
    agents,
    entriesPerAgent: Math.floor(num('entries-per-agent', values['entries-per-agent'], 0, 1000)),
    syncIntervalSeconds: num('sync-interval', values['sync-interval'], 0.1, 600),
    pushSyncIntervalSeconds: num('push-sync-interval', values['push-sync-interval'], 0.1, 3600),
    churnPerSecond: num('churn', values.churn, 0, 1000),
    durationSeconds,
    datastore: values.datastore,
    postgresUrl,
    // A process per 2,500 agents, 2 to 4, above 200 agents: a smaller heap per simulator process
    // makes its own collections (timed into the syncs they overlap) shorter. A small fleet needs one.
    workers: Math.floor(num('workers', values.workers ?? String(agents > 200 ? Math.min(4, Math.max(2, Math.ceil(agents / 2500))) : 1), 1, 16)),
    svidTtlSeconds: Math.floor(num('svid-ttl', values['svid-ttl'], 2, 86_400)),
    rotateCaAtSeconds: num('rotate-ca-at', values['rotate-ca-at'] ?? String(durationSeconds / 2), -1, 3600),
    setupTimeoutSeconds: num('setup-timeout', values['setup-timeout'], 1, 7200),
    servers,
    killOneAtSeconds,
  };
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  }));
}

interface Worker {
  child: ChildProcess;
  /** Resolves with each message of a type, in order. */
  next(type: FromWorker['type'], timeoutMs: number): Promise<FromWorker>;
  send(m: ToWorker): void;
}

/**
 * The simulator processes' defaults. The simulated agents stand for 10,000 other machines; here
 * they share the server's two cores, and what they cost must not be charged to the server:
 * - niceness 10: when both want a core the server runs first (the simulator still gets every cycle
 *   the server leaves). At 10,000 agents the server's event loop was late by 80 ms or more in 12–14
 *   seconds of a 90 s window at niceness 0, in 2 at 10 (sync p99 87–162 against 72 ms);
 * - V8's single-threaded GC: a simulator process's major collection paused it 256–355 ms with
 *   V8's helper threads (which compete with the server for the same cores), 62–320 ms without
 *   them (11 of 14 under 140 ms); a sync answered during that pause is timed with it.
 * Both are in the report (`simulatorNice`, `simulatorNodeOptions`); `--simulator-nice 0
 * --simulator-node-options=''` measures without them.
 */
const SIMULATOR_NICE = 10;
const SIMULATOR_NODE_OPTIONS = '--single-threaded-gc';

/** Linux niceness is per thread: every thread of the process (V8's GC helpers included), not only its main one. */
function reniceProcess(pid: number, nice: number): void {
  for (const tid of readdirSync(`/proc/${pid}/task`)) setPriority(Number(tid), nice);
}

/** Node flags given as one option value ("--a --b=1"), as argv words. */
const splitFlags = (flags: string): string[] => flags.split(' ').filter((f) => f !== '');

function startWorker(script: string, nodeFlags: string): Worker {
  const child = fork(script, [], { execArgv: splitFlags(nodeFlags), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const queued: FromWorker[] = [];
  const waiters: { type: string; resolve: (m: FromWorker) => void }[] = [];
  child.on('message', (m: FromWorker) => {
    const w = waiters.findIndex((x) => x.type === m.type);
    if (w >= 0) waiters.splice(w, 1)[0].resolve(m);
    else queued.push(m);
  });
  return {
    child,
    send: (m) => child.send(m),
    next: (type, timeoutMs) => {
      const q = queued.findIndex((m) => m.type === type);
      if (q >= 0) return Promise.resolve(queued.splice(q, 1)[0]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          child.off('exit', onExit);
          reject(new Error(`worker ${child.pid}: no "${type}" within ${timeoutMs / 1000} s`));
        }, timeoutMs);
        const onExit = () => {
          clearTimeout(timer);
          reject(new Error(`worker ${child.pid} exited before "${type}"`));
        };
        child.once('exit', onExit);
        waiters.push({ type, resolve: (m) => { clearTimeout(timer); child.off('exit', onExit); resolve(m); } });
      });
    },
  };
}

interface ServerProcess {
  child: ReturnType<typeof spawnCli>['child'];
  pid: number;
  address: string;
  adminSocket: string;
  opsUrl: string;
  killed: boolean;
  cpu0: number;
  cpu1: number;
  /** undefined: /metrics did not answer. */
  ops0: Map<string, number> | undefined;
  ops1: Map<string, number> | undefined;
  gc0: GcTotals | undefined;
  gc1: GcTotals | undefined;
  peakMiB: number;
  /** V8 heap in use at the last measure(), from the same scrape; NaN when /metrics did not answer. */
  heapMiB: number;
  /** Reads CPU, peak RSS and datastore operations now (at the window's end, or just before a kill). */
  measure(): Promise<void>;
}

async function startServerProcess(dir: string, schema: string | undefined, postgresUrl: string | undefined, fromSource: boolean, nodeOptions: string, outputFile: string | undefined): Promise<ServerProcess> {
  const [port, healthPort] = [await freePort(), await freePort()];
  const config = {
    trust_domain: TD, data_dir: dir, bind: `127.0.0.1:${port}`, health_bind: `127.0.0.1:${healthPort}`, log_level: 'warn',
    ...(schema ? { datastore: { kind: 'postgres', connection_string: postgresUrl, schema } } : {}),
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'server.yaml'), stringify(config));
  // As operators run it: the compiled CLI on dist/ (built at the bench's start). From source the
  // server also carries tsx and every module's source map (≈ 25 MiB of heap at 2,000 agents), and
  // each signing worker loads tsx again: memory figures from source overstate what users see.
  const proc = spawnCli(['server', 'run', '--config', path.join(dir, 'server.yaml')], {}, { compiled: !fromSource, nodeArgs: splitFlags(nodeOptions) });
  if (outputFile) {
    const out = createWriteStream(outputFile, { flags: 'a' });
    out.write(`--- server ${path.basename(dir)}, pid ${proc.child.pid}, started ${new Date().toISOString()}\n`);
    proc.child.all?.pipe(out);
  }
  const opsUrl = `http://127.0.0.1:${healthPort}`;
  await waitFor('server ready', () => httpOk(`${opsUrl}/ready`), 60_000, proc.logs);
  const sv: ServerProcess = {
    child: proc.child, pid: proc.child.pid!, address: `127.0.0.1:${port}`, adminSocket: path.join(dir, 'admin.sock'), opsUrl, killed: false,
    cpu0: 0, cpu1: 0, ops0: undefined, ops1: undefined, gc0: undefined, gc1: undefined, peakMiB: 0, heapMiB: NaN,
    measure: async () => {
      sv.cpu1 = cpuSeconds(sv.pid);
      sv.peakMiB = memoryMiB(sv.pid).peak;
      const metrics = await scrapeMetrics(opsUrl);
      sv.ops1 = datastoreOps(metrics);
      sv.gc1 = gcTotals(metrics);
      sv.heapMiB = heapUsedMiB(metrics);
    },
  };
  return sv;
}

interface ChurnWrite { kind: 'create' | 'update' | 'delete'; key: string; sentAt: number }

export default async function fleet(ctx: BenchContext): Promise<BenchFigures> {
  const o = parseFleetOptions(ctx.args ?? []);
  const log = ctx.log;
  const root = mkdtempSync(path.join(tmpdir(), 'svidscope-bench-fleet-'));
  // One bundle per run: two benches at once must not share the file.
  const simulatorScript = path.join(import.meta.dirname, 'out', `fleet-simulator-${process.pid}.mjs`);
  const schema = o.datastore === 'postgres' ? `svidscope_fleet_${randomBytes(5).toString('hex')}` : undefined;
  const servers: ServerProcess[] = [];
  const workers: Worker[] = [];
  let admin: AdminClient | undefined;
  const f: BenchFigures = {
    agents: o.agents, entriesPerAgent: o.entriesPerAgent, entries: o.agents * o.entriesPerAgent, syncIntervalS: o.syncIntervalSeconds,
    churnPerS: o.churnPerSecond, durationS: o.durationSeconds, datastore: o.datastore, workers: o.workers, svidTtlS: o.svidTtlSeconds,
    push: o.push, incremental: o.incremental, simulatorNice: o.simulatorNice,
    serverNodeOptions: o.serverNodeOptions, simulatorNodeOptions: o.simulatorNodeOptions,
  };
  log(`fleet: ${o.agents} agents × ${o.entriesPerAgent} entries, sync every ${o.syncIntervalSeconds} s, churn ${o.churnPerSecond}/s, ${o.durationSeconds} s window, ${o.datastore}, ${o.servers} server(s), ${o.workers} worker process(es), push ${o.push ? 'on' : 'off'}, incremental sync ${o.incremental ? 'on' : 'off'}`);
  try {
    // One after the other: the first migrates the schema, the others find it ready.
    if (!o.fromSource) {
      const t0 = wallMs();
      const built = await execa('npm', ['run', 'build'], { cwd: path.join(import.meta.dirname, '..'), reject: false, all: true });
      if (built.exitCode !== 0) throw new Error(`npm run build failed (the bench runs the compiled server; --from-source runs the source):\n${built.all}`);
      log(`built the server in ${((wallMs() - t0) / 1000).toFixed(1)} s; it runs from dist/`);
    }
    for (let i = 0; i < o.servers; i++) servers.push(await startServerProcess(path.join(root, `server-${i}`), schema, o.postgresUrl, o.fromSource, o.serverNodeOptions, o.serverOutput));
    const live = () => servers.filter((s) => !s.killed);
    const sum = (fn: (s: ServerProcess) => number) => live().reduce((acc, s) => acc + fn(s), 0);
    // Memory growth per entry is read on the first server (the one that survives a kill).
    const baseRss = memoryMiB(servers[0].pid).rss;
    const setupCpu0 = sum((s) => cpuSeconds(s.pid));
    admin = connectAdmin(servers[0].adminSocket);
    const adminRef = admin;
    // Every server's CA must be in the bundle the agents start with: each server presents an SVID of its own CA.
    const bundle = await waitFor('every server\'s CA in the bundle', async () => {
      const b = await adminRef.call<{ document: Buffer; sequence_number: string }>('GetBundle', {});
      return parseSpiffeBundle(mustTrustDomain(TD), b.document).x509Authorities.length >= o.servers ? b : undefined;
    }, 60_000);
    const bundlePem = x509BundleToPem(parseSpiffeBundle(mustTrustDomain(TD), bundle.document));

    // ---- join tokens: one per agent, values chosen here so entries can name the agents up front
    const run = randomBytes(3).toString('hex');
    const tokens = Array.from({ length: o.agents }, (_, i) => `fleet-${run}-${i}`);
    const agentId = (i: number) => `spiffe://${TD}/spire/agent/join_token/${tokens[i]}`;
    let t = wallMs();
    await pool(tokens, 32, async (token) => {
      await adminRef.call('CreateJoinToken', { ttl: 3600, token });
    });
    f.tokensPerS = round(o.agents / ((wallMs() - t) / 1000));
    log(`join tokens: ${o.agents} in ${((wallMs() - t) / 1000).toFixed(1)} s (${f.tokensPerS}/s)`);

    // ---- entries, through BatchCreateEntries
    const entryMsg = (agent: number, name: string, hint = '') => ({
      spiffe_id: `spiffe://${TD}/fleet/a${agent}/${name}`, parent_id: agentId(agent), selectors: [{ type: 'unix', value: `uid:${name}` }],
      x509_svid_ttl: o.svidTtlSeconds, hint,
    });
    const entries = new Map<string, { agent: number; msg: ReturnType<typeof entryMsg> }>();
    const wanted = Array.from({ length: o.agents * o.entriesPerAgent }, (_, k) => ({ agent: Math.floor(k / o.entriesPerAgent), msg: entryMsg(Math.floor(k / o.entriesPerAgent), `w${k % o.entriesPerAgent}`) }));
    t = wallMs();
    let refused = 0;
    for (let i = 0; i < wanted.length; i += MAX_ENTRY_BATCH) {
      const chunk = wanted.slice(i, i + MAX_ENTRY_BATCH);
      const res = await admin.call<{ results: BatchCreateEntriesResultMsg[] }>('BatchCreateEntries', { entries: chunk.map((w) => w.msg) });
      res.results.forEach((r, j) => (r.entry ? entries.set(r.entry.id, chunk[j]) : refused++));
    }
    const entrySeconds = (wallMs() - t) / 1000;
    f.entryCreatePerS = round(wanted.length / Math.max(entrySeconds, 1e-3));
    f.entryCreateRefused = refused;
    log(`entries: ${entries.size} created in ${entrySeconds.toFixed(1)} s (${f.entryCreatePerS}/s, BatchCreateEntries ×${Math.ceil(wanted.length / MAX_ENTRY_BATCH)}), ${refused} refused`);

    // ---- the fleet: attest, first sync, first SVIDs
    await bundleSimulator(path.join(import.meta.dirname, 'fleet', 'worker.ts'), simulatorScript);
    t = wallMs();
    for (let w = 0; w < o.workers; w++) workers.push(startWorker(simulatorScript, o.simulatorNodeOptions));
    if (o.simulatorNice > 0) for (const w of workers) reniceProcess(w.child.pid!, o.simulatorNice);
    workers.forEach((worker, w) => worker.send({
      type: 'init', addresses: servers.map((sv) => sv.address), trustDomain: TD, bundlePem, bundleSequence: bundle.sequence_number,
      syncIntervalMs: o.syncIntervalSeconds * 1000, pushSyncIntervalMs: o.pushSyncIntervalSeconds * 1000, rotationFraction: 0.5, attestConcurrency: 16, push: o.push, incremental: o.incremental,
      agents: tokens.flatMap((token, index) => (index % o.workers === w ? [{ index, token }] : [])),
    }));
    const setupMs = o.setupTimeoutSeconds * 1000;
    const attested = await Promise.all(workers.map((w) => w.next('attested', setupMs))) as Extract<FromWorker, { type: 'attested' }>[];
    f.attested = attested.reduce((s, a) => s + a.attested, 0);
    f.attestSeconds = round((wallMs() - t) / 1000);
    log(`attested: ${f.attested}/${o.agents} in ${f.attestSeconds} s${attested.find((a) => a.firstError) ? ` (first failure: ${attested.find((a) => a.firstError)!.firstError})` : ''}`);
    const convergeLeft = Math.max(1000, setupMs - (wallMs() - t));
    const converged = await Promise.allSettled(workers.map((w) => w.next('converged', convergeLeft)));
    f.converged = converged.every((c) => c.status === 'fulfilled');
    f.convergeSeconds = round((wallMs() - t) / 1000);
    f.setupServerCpuSeconds = round(sum((sv) => cpuSeconds(sv.pid)) - setupCpu0);
    log(f.converged
      ? `converged: every agent synced and holds its SVIDs, ${f.convergeSeconds} s after the fleet started (server CPU in setup ${f.setupServerCpuSeconds} s)`
      : `NOT converged within --setup-timeout ${o.setupTimeoutSeconds} s; measuring the window anyway`);

    // ---- the measured window: steady syncs and rotations, churn, one CA rotation
    // The datastore count first: a saturated server may take many seconds to answer /metrics,
    // and the window (CPU, churn, rotation, load counts) must not start before it.
    for (const sv of servers) {
      const metrics = await scrapeMetrics(sv.opsUrl);
      sv.ops0 = datastoreOps(metrics);
      sv.gc0 = gcTotals(metrics);
    }
    for (const w of workers) w.send({ type: 'window' });
    const windowStart = wallMs();
    for (const sv of servers) sv.cpu0 = cpuSeconds(sv.pid);
    // The high-water mark so far: the setup's (10,000 handshakes, the first mint of every SVID).
    const setupPeakRss = Math.max(...servers.map((sv) => memoryMiB(sv.pid).peak));
    const workerCpu0 = workers.map((w) => cpuSeconds(w.child.pid!));
    let peakRss = 0;
    const rssTimer = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, ...live().map((sv) => memoryMiB(sv.pid).rss));
      } catch {
        // a server exited; the error shows below
      }
    }, 1000);
    // With --syncs-out: the first server's longest event-loop delay each second (prom-client resets it per scrape).
    const serverLag: number[][] = [];
    const lagTimer = o.syncsOut ? setInterval(() => {
      const at = Math.round(wallMs() - windowStart);
      void scrapeMetrics(servers[0].opsUrl).then((m) => {
        const max = Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(m ?? '')?.[1] ?? NaN);
        if (Number.isFinite(max)) serverLag.push([at, Math.round(max * 1000)]);
      });
    }, 1000) : undefined;
    const writes: ChurnWrite[] = [];
    const adminErrors: Record<string, number> = {};
    let rotation: { at: number; sequence: string } | undefined;
    const untouched = [...entries.keys()];
    let created = 0;
    const churn = async () => {
      if (o.churnPerSecond <= 0) return;
      const gap = 1000 / o.churnPerSecond;
      for (let n = 0; wallMs() - windowStart < o.durationSeconds * 1000; n++) {
        const due = windowStart + n * gap;
        if (due > wallMs()) await new Promise((r) => setTimeout(r, due - wallMs()));
        const kind = (['create', 'update', 'delete'] as const)[n % 3];
        const sentAt = wallMs();
        try {
          if (kind === 'create' || untouched.length === 0) {
            const agent = Math.floor(Math.random() * o.agents);
            const msg = entryMsg(agent, `c${created++}`);
            const e = await adminRef.call<EntryMsg>('CreateEntry', { entry: msg });
            entries.set(e.id, { agent, msg });
            writes.push({ kind: 'create', key: `seen:${e.id}:${e.revision_number}`, sentAt });
            continue;
          }
          // An entry changed at most once per run, so each write has one outcome to wait for.
          const id = untouched.splice(Math.floor(Math.random() * untouched.length), 1)[0];
          if (kind === 'update') {
            const e = await adminRef.call<EntryMsg>('UpdateEntry', { entry: { ...entries.get(id)!.msg, id, hint: `churn-${n}` } });
            writes.push({ kind, key: `seen:${id}:${e.revision_number}`, sentAt });
          } else {
            await adminRef.call('DeleteEntry', { id });
            entries.delete(id);
            writes.push({ kind, key: `gone:${id}`, sentAt });
          }
        } catch (err) {
          adminErrors[`admin_${kind}`] = (adminErrors[`admin_${kind}`] ?? 0) + 1;
          if (adminErrors[`admin_${kind}`] === 1) log(`churn ${kind} failed: ${(err as Error).message}`);
        }
      }
    };
    const rotate = async () => {
      if (o.rotateCaAtSeconds < 0 || o.rotateCaAtSeconds >= o.durationSeconds) return;
      await new Promise((r) => setTimeout(r, o.rotateCaAtSeconds * 1000));
      const at = wallMs();
      await adminRef.call('RotateCa', { kind: 'x509' });
      const b = await adminRef.call<{ sequence_number: string }>('GetBundle', {});
      rotation = { at, sequence: b.sequence_number };
      log(`CA rotated at ${((at - windowStart) / 1000).toFixed(1)} s: bundle sequence ${b.sequence_number}`);
    };
    let killedAt: number | undefined;
    const killOne = async () => {
      if (o.killOneAtSeconds < 0 || o.killOneAtSeconds >= o.durationSeconds) return;
      await new Promise((r) => setTimeout(r, o.killOneAtSeconds * 1000));
      const victim = servers[servers.length - 1];
      await victim.measure(); // its last CPU and datastore figures, before they are gone
      victim.child.kill('SIGKILL');
      victim.killed = true;
      killedAt = wallMs();
      log(`killed server ${servers.length - 1} (pid ${victim.pid}, SIGKILL) at ${((killedAt - windowStart) / 1000).toFixed(1)} s`);
    };
    await Promise.all([churn(), killOne(), rotate().catch((err: unknown) => {
      adminErrors.admin_rotate = 1;
      log(`CA rotation failed: ${(err as Error).message}`);
    }), new Promise((r) => setTimeout(r, o.durationSeconds * 1000))]);
    for (const w of workers) w.send({ type: 'window-end' });
    clearInterval(lagTimer);
    const windowSeconds = (wallMs() - windowStart) / 1000;
    for (const sv of live()) await sv.measure();
    const cpu = servers.reduce((acc, sv) => acc + sv.cpu1 - sv.cpu0, 0);
    const workerCpu = workers.reduce((acc, w, i) => acc + cpuSeconds(w.child.pid!) - workerCpu0[i], 0);
    const ops1 = new Map<string, number>();
    const metricsAnswered = servers.every((sv) => sv.ops0 && sv.ops1);
    for (const sv of servers) for (const [op, n] of sv.ops1 ?? []) ops1.set(op, (ops1.get(op) ?? 0) + n - (sv.ops0?.get(op) ?? 0));
    clearInterval(rssTimer);
    const mem = { rss: memoryMiB(servers[0].pid).rss, peak: Math.max(...servers.map((sv) => sv.peakMiB)), heap: servers[0].heapMiB };
    // Writes from the last moments still travel: give them two sync intervals (at least 3 s, for a
    // loaded machine) before the tally, and with several servers the others' entry reload
    // (cache_reload_interval, 5 s by default).
    const drainMs = Math.min(Math.max(2 * o.syncIntervalSeconds * 1000, 3000) + (o.servers > 1 ? 5000 : 0), 60_000);
    log(`window over after ${windowSeconds.toFixed(1)} s; waiting ${drainMs / 1000} s for the last changes to reach the agents`);
    await new Promise((r) => setTimeout(r, drainMs));
    for (const w of workers) w.send({ type: 'stop' });
    const reports = (await Promise.all(workers.map((w) => w.next('report', 120_000)))).map((m) => (m as Extract<FromWorker, { type: 'report' }>).stats);
    if (o.syncsOut) {
      const syncs = reports.flatMap((r) => r.syncAt.map((at, i) => [Math.round(at - windowStart), Math.round(r.syncMs[i] * 10) / 10])).sort((a, b) => a[0] - b[0]);
      // And each simulator process's event-loop lag over the window, to tell its stalls from the server's.
      const loopLag = reports.map((r) => r.loopLagAt.map((at, i) => [Math.round(at - windowStart), Math.round(r.loopLagMs[i])]).filter(([, ms]) => ms >= 20));
      writeFileSync(o.syncsOut, JSON.stringify({ windowStartEpochMs: windowStart, rotationAtMs: rotation ? rotation.at - windowStart : null, syncs, loopLag, serverLag }));
    }

    // ---- figures
    const all = <K extends keyof WorkerStats>(k: K) => reports.flatMap((r) => r[k] as unknown as number[]);
    const events: Record<string, number> = Object.assign({}, ...reports.map((r) => r.entryEvents));
    const sync = all('syncMs');
    const issueCalls = all('issueCallMs');
    const propagation = writes.flatMap((w) => (events[w.key] !== undefined ? [Math.max(0, events[w.key] - w.sentAt)] : []));
    const errors: Record<string, number> = { ...adminErrors };
    for (const r of reports) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
    const totalErrors = Object.entries(errors).filter(([k]) => k !== 'issue_denied').reduce((s, [, v]) => s + v, 0);
    const inWindow: Record<string, number> = { ...adminErrors };
    for (const r of reports) for (const [k, v] of Object.entries(r.windowErrors)) inWindow[k] = (inWindow[k] ?? 0) + v;
    const windowErrors = Object.entries(inWindow).filter(([k]) => k !== 'issue_denied').reduce((s, [, v]) => s + v, 0);
    const opsDelta = [...ops1].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const issued = reports.reduce((s, r) => s + r.issued, 0);
    Object.assign(f, {
      windowS: round(windowSeconds),
      syncs: sync.length, syncsPerS: round(sync.length / windowSeconds), syncP50Ms: round(percentile(sync, 50), 2), syncP99Ms: round(percentile(sync, 99), 2),
      churnWrites: writes.length, propagated: propagation.length, notPropagated: writes.length - propagation.length,
      propagationP50Ms: round(percentile(propagation, 50)), propagationP99Ms: round(percentile(propagation, 99)),
      issuedPerS: round(issued / windowSeconds), issued, issueCalls: issueCalls.length,
      issueCallP50Ms: round(percentile(issueCalls, 50), 2), issueCallP99Ms: round(percentile(issueCalls, 99), 2),
      serverCpuSecondsPerSecond: round(cpu / windowSeconds, 3), serverCpuMsPerAgentPerS: round((cpu / windowSeconds / o.agents) * 1000, 3),
      serverRssBaselineMiB: round(baseRss), serverRssEndMiB: round(mem.rss), serverPeakRssMiB: round(Math.max(mem.peak, peakRss)),
      serverPeakRssSetupMiB: round(setupPeakRss), serverPeakRssWindowMiB: round(peakRss),
      serverHeapUsedMiB: round(mem.heap),
      serverRssKiBPerEntry: round(((mem.rss - baseRss) * 1024) / Math.max(1, o.agents * o.entriesPerAgent), 2),
      workerCpuSecondsPerSecond: round(workerCpu / windowSeconds, 3),
      datastoreOpsPerS: metricsAnswered ? round(opsDelta.reduce((s, [, n]) => s + n, 0) / windowSeconds) : -1,
      datastoreTopOps: metricsAnswered ? opsDelta.slice(0, 4).map(([op, n]) => `${op}:${round(n / windowSeconds)}/s`).join(' ') : 'server /metrics did not answer within 30 s',
      entriesExpected: entries.size, entriesHeld: reports.reduce((s, r) => s + r.entriesHeld, 0), svidsHeld: reports.reduce((s, r) => s + r.svidsHeld, 0),
      notifications: reports.reduce((s, r) => s + r.notifications, 0), watchesOpenAtEnd: reports.reduce((s, r) => s + r.watchesOpen, 0),
      syncKinds: Object.entries(reports.reduce<Record<string, number>>((acc, r) => {
        for (const [k, v] of Object.entries(r.syncKinds)) acc[k] = (acc[k] ?? 0) + v;
        return acc;
      }, {})).map(([k, v]) => `${k}:${v}`).join(' ') || 'none',
      svidsLapsed: reports.reduce((s, r) => s + r.svidsLapsed, 0), agentsLostSvids: reports.reduce((s, r) => s + r.agentsLostSvids, 0),
      errors: totalErrors, errorsByKind: Object.entries(errors).map(([k, v]) => `${k}:${v}`).join(' ') || 'none',
      windowErrors, windowErrorsByKind: Object.entries(inWindow).map(([k, v]) => `${k}:${v}`).join(' ') || 'none',
    });
    // Whose pauses the tail is: the first server's garbage collection over the window (its own
    // metrics), and each simulator process's. A sync in flight across a pause of the process that
    // timed it includes that pause, which no server can remove.
    const [gc0, gc1] = [servers[0].gc0, servers[0].gc1];
    if (gc0 && gc1) Object.assign(f, { serverMajorGcs: gc1.majors - gc0.majors, serverMajorGcsOver100Ms: gc1.majorsOver100Ms - gc0.majorsOver100Ms,
      serverGcPauseMsPerS: round(((gc1.pauseSeconds - gc0.pauseSeconds) * 1000) / windowSeconds, 1) });
    const simulatorPauses = reports.flatMap((r) => r.gcPauses.map(([, ms]) => ms));
    const clearOfOwnGc = reports.flatMap((r) => r.syncMs.filter((ms, i) => !r.gcPauses.some(([at, pause]) => at < r.syncAt[i] + ms && at + pause > r.syncAt[i])));
    Object.assign(f, { simulatorGcPausesOver50Ms: simulatorPauses.filter((ms) => ms >= 50).length, simulatorGcPauseMaxMs: round(Math.max(0, ...simulatorPauses)),
      syncsClearOfSimulatorGc: clearOfOwnGc.length, syncP99MsClearOfSimulatorGc: round(percentile(clearOfOwnGc, 99), 2) });
    if (killedAt !== undefined) {
      const moved = reports.flatMap((r) => r.failedOver).filter((at) => at >= killedAt!).map((at) => at - killedAt!);
      // Served by a survivor within its sync interval: its first sync after the kill (which is when
      // it notices) already answered by another server.
      // An agent notices at its next call, up to one interval after the kill; then the call that
      // found the server gone is answered by the next one (the agent's address list): served within
      // its sync interval = every agent moved, no call failed after the kill, and each sync that
      // moved shorter than the interval (an agent can also move in an issuance or bundle call).
      const movedInSync = all('failoverSyncMs');
      const failedAfterKill = all('callFailuresAt').filter((at) => at >= killedAt!).length;
      Object.assign(f, { killedServerAgents: Math.floor(o.agents / o.servers), // agents i with i mod n = n - 1
        agentsFailedOver: moved.length, agentsServedInTheSyncThatMoved: movedInSync.length, callsFailedAfterKill: failedAfterKill,
        failoverP50Ms: round(percentile(moved, 50)), failoverP99Ms: round(percentile(moved, 99)), failoverMaxMs: round(Math.max(0, ...moved)),
        failoverSyncP50Ms: round(percentile(movedInSync, 50)), failoverSyncP99Ms: round(percentile(movedInSync, 99)), failoverSyncMaxMs: round(Math.max(0, ...movedInSync)),
        failoverWithinSyncInterval: moved.length === Math.floor(o.agents / o.servers) && failedAfterKill === 0
          && movedInSync.every((ms) => ms <= o.syncIntervalSeconds * 1000) });
    }
    if (rotation) {
      const seen = reports.flatMap((r) => r.bundleSeen[rotation!.sequence] ?? []).map((at) => Math.max(0, at - rotation!.at));
      Object.assign(f, { caRotationAgentsUpdated: seen.length, caRotationP50Ms: round(percentile(seen, 50)), caRotationP99Ms: round(percentile(seen, 99)) });
      // Syncs while the fleet takes up the new bundle (the rotation until its last agent) apart from the rest:
      // the rotation makes every agent sync and fetch bundles within the spread the server asks for.
      const rotationEnd = rotation.at + Math.max(0, ...seen);
      const during: number[] = [];
      const outside: number[] = [];
      for (const r of reports) r.syncAt.forEach((at, i) => (at >= rotation!.at && at <= rotationEnd ? during : outside).push(r.syncMs[i]));
      const lagDuring: number[] = [];
      const lagOutside: number[] = [];
      for (const r of reports) r.loopLagAt.forEach((at, i) => (at >= rotation!.at && at <= rotationEnd ? lagDuring : lagOutside).push(r.loopLagMs[i]));
      Object.assign(f, { syncsDuringRotation: during.length, syncP99MsDuringRotation: round(percentile(during, 99)), syncP99MsOutsideRotation: round(percentile(outside, 99)),
        simulatorLoopLagP99MsDuringRotation: round(percentile(lagDuring, 99)), simulatorLoopLagP99MsOutsideRotation: round(percentile(lagOutside, 99)) });
    }
    log(`sync: ${f.syncs} in the window (${f.syncsPerS}/s; ${f.syncKinds}), p50 ${f.syncP50Ms} ms, p99 ${f.syncP99Ms} ms`);
    if (o.push) log(`push: ${f.notifications} notifications received, ${f.watchesOpenAtEnd}/${f.attested} streams open at the end`);
    log(`propagation (admin write → agent has it): ${f.propagated}/${f.churnWrites}, p50 ${f.propagationP50Ms} ms, p99 ${f.propagationP99Ms} ms`);
    log(`issuance: ${f.issued} X509-SVIDs (${f.issuedPerS}/s), BatchNewX509SVID p50 ${f.issueCallP50Ms} ms, p99 ${f.issueCallP99Ms} ms`);
    if (killedAt !== undefined) {
      log(`server kill → its agents syncing on another server: ${f.agentsFailedOver}/${f.killedServerAgents}, p50 ${f.failoverP50Ms} ms, p99 ${f.failoverP99Ms} ms, max ${f.failoverMaxMs} ms after the kill`);
      log(`  served in the very sync that found the server gone: ${f.agentsServedInTheSyncThatMoved}/${f.agentsFailedOver} (that sync p50 ${f.failoverSyncP50Ms} ms, p99 ${f.failoverSyncP99Ms} ms); calls failed after the kill: ${f.callsFailedAfterKill}; every agent served within its sync interval: ${f.failoverWithinSyncInterval}`);
    }
    if (rotation) log(`CA rotation → agents with the new bundle: ${f.caRotationAgentsUpdated}/${f.attested}, p50 ${f.caRotationP50Ms} ms, p99 ${f.caRotationP99Ms} ms; sync p99 while it spread ${f.syncP99MsDuringRotation} ms (${f.syncsDuringRotation} syncs), outside it ${f.syncP99MsOutsideRotation} ms; the simulator's own event-loop lag p99 ${f.simulatorLoopLagP99MsDuringRotation} / ${f.simulatorLoopLagP99MsOutsideRotation} ms`);
    log(`garbage collection: the server ${f.serverMajorGcs ?? '?'} major (${f.serverMajorGcsOver100Ms ?? '?'} of 100 ms or more), ${f.serverGcPauseMsPerS ?? '?'} ms/s paused; the simulator ${f.simulatorGcPausesOver50Ms} pauses of 50 ms or more, longest ${f.simulatorGcPauseMaxMs} ms; sync p99 of the ${f.syncsClearOfSimulatorGc} syncs clear of a simulator pause ${f.syncP99MsClearOfSimulatorGc} ms`);
    log(`server${o.servers > 1 ? 's: CPU summed, RSS of the first' : ''}: ${f.serverCpuSecondsPerSecond} CPU s/s, RSS ${f.serverRssBaselineMiB} → ${f.serverRssEndMiB} MiB (peak ${f.serverPeakRssMiB}: ${f.serverPeakRssSetupMiB} by the window's start, ${f.serverPeakRssWindowMiB} sampled each second in it; V8 heap in use ${f.serverHeapUsedMiB}), datastore ${f.datastoreOpsPerS} ops/s (${f.datastoreTopOps})`);
    log(`agents' view: ${f.entriesHeld} entries held of ${f.entriesExpected}, ${f.svidsHeld} with an SVID; SVIDs that expired before their replacement: ${f.svidsLapsed}; agents that lost an SVID: ${f.agentsLostSvids}; errors ${f.errors} (${f.errorsByKind}), of them in the window ${f.windowErrors} (${f.windowErrorsByKind})`);
    return f;
  } finally {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGTERM');
    admin?.close();
    for (const sv of servers) sv.child.kill('SIGTERM');
    await Promise.all(servers.map((sv) => sv.child));
    if (schema) {
      const client = new pg.Client({ connectionString: o.postgresUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
    }
    rmSync(root, { recursive: true, force: true });
    rmSync(simulatorScript, { force: true });
  }
}
