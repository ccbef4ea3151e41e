/**
 * A process of simulated agents for the fleet benchmark. Each simulated agent speaks the real
 * protocol through the agent's own `ServerClient`: it attests with its join token and a real CSR,
 * holds the agent X509-SVID it gets, keeps one mTLS connection to the server, and every sync
 * interval does what the agent's manager does (SyncAuthorizedEntries, GetBundles when the answer's
 * bundle state moved, then BatchNewX509SVID for new, changed and half-expired entries). What it skips is the agent's local
 * side (Workload API, disk, caches by selector): the server cannot tell the difference.
 *
 * To keep key generation off the measurement, each agent has one P-256 key pair, used for its
 * agent SVID and, through one CSR made at start, for all its workload SVIDs; the server still
 * parses and verifies every CSR. With `push` each agent also keeps the WatchChanges stream open
 * and runs its cycle at once on a notification (bursts coalesce into one more cycle), as the
 * agent's manager does; with `incremental` it sends its (id, revision) pairs and applies deltas.
 */
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { nullLogger } from '../../src/common/log.js';
import { ServerClient } from '../../src/identity-plane/server-api/node-client.js';
import { BundleFetchTracker } from '../../src/identity-plane/server-api/bundle-state.js';
import { bundleSpreadMs } from '../../src/identity-plane/agent/manager/change-watch.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { GC_PAUSE_RECORDED_MS, wallMs, type FromWorker, type ToWorker, type WorkerInit, type WorkerStats } from './protocol.js';

/** The server's cap on CSRs per BatchNewX509SVID call (node-service MAX_BATCH). */
const CSR_BATCH = 500;
/** The agent manager's cap on its backoff after failed syncs. */
const MAX_BACKOFF_MS = 60_000;

interface SimAgent {
  client: ServerClient;
  /** Index into init.addresses of the server it talks to. */
  server: number;
  identity: { chainPem: string; keyPem: string };
  trustPem: string;
  /** Set when it moved to another server, until its first sync there. */
  movedAt?: number;
  csr: Buffer;
  knownRevision: string;
  /** entry id → revision_number, as of the last sync answer. */
  entries: Map<string, string>;
  /** entry id → the SVID's renewal time, expiry and the entry revision it was minted for. */
  svids: Map<string, { renewAt: number; expiresAt: number; entryRevision: string }>;
  /** One of its SVIDs expired before a new one came (the agent lost it for a while). */
  lapsed?: boolean;
  bundleSequence: string;
  bundleFetch: BundleFetchTracker;
  synced: boolean;
  timer?: NodeJS.Timeout;
  /** When the timer fires (wall ms). */
  pollAt: number;
  /** As the agent's manager: a bundle-only notification's state for the next cycle, unless an entry sync was asked for too. */
  pushedBundleState?: Buffer;
  entrySyncAsked: boolean;
  /** A cycle is running; a notification during it asks for one more. */
  running: boolean;
  again: boolean;
  watch?: { cancel(): void };
  watchUp: boolean;
  watchStarted?: boolean;
  watchedBefore?: boolean;
  watchFailures: number;
  /** Cycles failed in a row (backoff). */
  failures: number;
}

const send = (m: FromWorker) => process.send?.(m);

let init: WorkerInit;
const agents: SimAgent[] = [];
let stopped = false;
let inWindow = false;
/** Counting load (syncs, issuance): from `window` to `window-end`. */
let counting = false;
let converged = false;
/** Every agent of this worker has attested (or failed to): convergence is judged only from then on. */
let attestationDone = false;
/** Attested agents that have not yet synced and held an SVID for every entry (until the fleet converged). */
const unconverged = new Set<SimAgent>();
const pemBySequence = new Map<string, string>();

const stats: WorkerStats = { agents: 0, attested: 0, syncMs: [], syncAt: [], issueCallMs: [], issued: 0, entriesHeld: 0, svidsHeld: 0, svidsLapsed: 0, agentsLostSvids: 0, callFailuresAt: [], failoverSyncMs: [], entryEvents: {}, bundleSeen: {}, errors: {}, windowErrors: {}, failedOver: [], notifications: 0, watchesOpen: 0, syncKinds: {}, loopLagMs: [], loopLagAt: [], gcPauses: [] };

/** Samples this process's event-loop lag while counting (see WorkerStats.loopLagMs). */
const LAG_PROBE_MS = 50;
let lagExpected = performance.now() + LAG_PROBE_MS;
setInterval(() => {
  const now = performance.now();
  if (counting) {
    stats.loopLagMs.push(Math.max(0, now - lagExpected));
    stats.loopLagAt.push(wallMs());
  }
  lagExpected = now + LAG_PROBE_MS;
}, LAG_PROBE_MS).unref();
/** This process's GC pauses while counting (see WorkerStats.gcPauses). */
new PerformanceObserver((list) => {
  if (!counting) return;
  for (const e of list.getEntries()) if (e.duration >= GC_PAUSE_RECORDED_MS) stats.gcPauses.push([performance.timeOrigin + e.startTime, e.duration]);
}).observe({ entryTypes: ['gc'] });
const count = (kind: string) => {
  stats.errors[kind] = (stats.errors[kind] ?? 0) + 1;
  if (inWindow) stats.windowErrors[kind] = (stats.windowErrors[kind] ?? 0) + 1;
  // When calls failed (not item refusals), so the coordinator can tell failures after a server kill.
  // A change stream that ends is not a failed call: when its server dies the agent's next call moves
  // to the next server, and the stream reconnects to whichever server answers.
  if (kind !== 'issue_denied' && kind !== 'issue_item' && !kind.startsWith('watch_')) stats.callFailuresAt.push(wallMs());
};

/**
 * The agent's own server first, then the others in order (its server_address list): when its server
 * is unreachable, the agent's ServerClient moves to the next one within the same call, with the
 * identity it holds; `moved` is told when it does.
 */
function connect(server: number, trustPem: string, moved?: () => void): ServerClient {
  const addresses = init.addresses.map((_, i) => init.addresses[(server + i) % init.addresses.length]);
  const client = new ServerClient({ addresses, trustDomain: parseTrustDomain(init.trustDomain), logger: nullLogger(), onFailover: moved });
  client.setTrust(trustPem);
  return client;
}

async function attestAll(): Promise<void> {
  let next = 0;
  let failed = 0;
  let firstError: string | undefined;
  const one = async (index: number, token: string) => {
    const key = generateKeyPair('ec-p256');
    const csr = createCsr(key.privateKey, key.publicKey);
    const server = index % init.addresses.length;
    let self: SimAgent | undefined;
    const client = connect(server, init.bundlePem, () => {
      if (self) self.movedAt ??= wallMs();
    });
    try {
      const res = await client.attest(token, csr);
      const identity = { chainPem: res.svid.cert_chain.map((d) => encodePem('CERTIFICATE', d)).join(''), keyPem: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
      client.setIdentity(identity.chainPem, identity.keyPem);
      self = { client, server, identity, trustPem: init.bundlePem, csr, knownRevision: '0', entries: new Map(), svids: new Map(), bundleSequence: init.bundleSequence, bundleFetch: new BundleFetchTracker(), synced: false,
        running: false, again: false, watchUp: false, watchFailures: 0, failures: 0, pollAt: 0, entrySyncAsked: false };
      agents.push(self);
      unconverged.add(self);
      // As an agent does: its first sync follows its attestation (within an interval here, as
      // agents started at different times would), not the end of the whole fleet's attestation.
      schedule(self, Math.random() * init.syncIntervalMs);
    } catch (err) {
      client.close();
      failed++;
      firstError ??= (err as Error).message;
    }
  };
  await Promise.all(Array.from({ length: init.attestConcurrency }, async () => {
    while (next < init.agents.length && !stopped) {
      const { index, token } = init.agents[next++];
      await one(index, token);
    }
  }));
  stats.agents = init.agents.length;
  stats.attested = agents.length;
  send({ type: 'attested', attested: agents.length, failed, firstError });
  attestationDone = true;
  checkConverged();
}

/** Records what changed in an agent's entry view (the propagation probe), then takes the new view. */
function observe(a: SimAgent, view: Map<string, string>, at: number): void {
  if (inWindow) {
    for (const [id, revision] of view) {
      if (a.entries.get(id) !== revision) stats.entryEvents[`seen:${id}:${revision}`] ??= at;
    }
    for (const id of a.entries.keys()) if (!view.has(id)) stats.entryEvents[`gone:${id}`] ??= at;
  }
  a.entries = view;
}

function pemFor(sequence: string, document: Buffer): string {
  let pem = pemBySequence.get(sequence);
  if (!pem) {
    pem = x509BundleToPem(parseSpiffeBundle(parseTrustDomain(init.trustDomain), document));
    pemBySequence.set(sequence, pem);
  }
  return pem;
}

/**
 * One sync cycle; false when a call failed (the agent backs off, as its manager does). With
 * `pushedBundleState` (a bundle notification that carried it) the entry call is skipped and that
 * state decides whether to fetch bundles.
 */
async function cycle(a: SimAgent, pushedBundleState?: Buffer): Promise<boolean> {
  const bundleState = pushedBundleState ?? await syncEntries(a);
  if (bundleState === false) return false;
  return fetchBundlesAndSvids(a, bundleState);
}

/** SyncAuthorizedEntries and what the agent learns from it; the answer's bundle state, or false when the call failed. */
async function syncEntries(a: SimAgent): Promise<Buffer | undefined | false> {
  const t0 = performance.now();
  const startedAt = wallMs();
  let res;
  try {
    res = await a.client.sync(init.incremental
      ? { known_revision: a.knownRevision, incremental: true, known_entries: [...a.entries].map(([id, revision]) => ({ id, revision })) }
      : a.knownRevision);
  } catch (err) {
    const status = (err as { status?: number }).status;
    count(status === 4 ? 'sync_deadline' : status === 14 ? 'sync_unavailable' : 'sync');
    return false;
  }
  if (a.movedAt !== undefined) {
    stats.failedOver.push(wallMs());
    // Moved during this very sync, and answered by the next server in the same call.
    if (a.movedAt >= startedAt) stats.failoverSyncMs.push(wallMs() - startedAt);
    a.movedAt = undefined;
  }
  if (counting) {
    stats.syncMs.push(performance.now() - t0);
    stats.syncAt.push(startedAt);
    const kind = res.unchanged ? 'unchanged' : res.incremental ? 'incremental' : 'full';
    stats.syncKinds[kind] = (stats.syncKinds[kind] ?? 0) + 1;
  }
  if (!res.unchanged) {
    let view: Map<string, string>;
    if (res.incremental) {
      view = new Map(a.entries);
      for (const id of res.deleted_ids ?? []) view.delete(id);
      for (const e of res.entries) view.set(e.id, e.revision_number);
    } else {
      view = new Map(res.entries.map((e) => [e.id, e.revision_number]));
    }
    observe(a, view, wallMs());
    a.knownRevision = res.revision;
  }
  a.synced = true;
  return res.bundle_state;
}

/** GetBundles when the bundle state moved since the last fetch, then BatchNewX509SVID for what is stale. */
async function fetchBundlesAndSvids(a: SimAgent, bundleState: Buffer | undefined): Promise<boolean> {
  if (a.bundleFetch.stale(bundleState, [])) {
  try {
      const bundles = await a.client.getBundles([]);
      const seq = bundles.bundle.sequence_number;
      if (seq !== a.bundleSequence) {
        a.bundleSequence = seq;
        if (inWindow) (stats.bundleSeen[seq] ??= []).push(wallMs());
        // As the agent does: new trust anchors rebuild the connection.
        a.trustPem = pemFor(seq, bundles.bundle.document);
        a.client.setTrust(a.trustPem);
      }
      a.bundleFetch.fetched(bundleState, []);
    } catch {
      count('get_bundles');
    }
  }
  for (const id of a.svids.keys()) if (!a.entries.has(id)) a.svids.delete(id);
  const now = wallMs();
  const stale = [...a.entries].filter(([id, rev]) => {
    const svid = a.svids.get(id);
    return !svid || svid.entryRevision !== rev || now >= svid.renewAt;
  });
  for (let i = 0; i < stale.length; i += CSR_BATCH) {
    const chunk = stale.slice(i, i + CSR_BATCH);
    const t1 = performance.now();
    let out;
    try {
      out = await a.client.batchNewX509Svid(chunk.map(([id]) => ({ entry_id: id, csr: a.csr })));
    } catch (err) {
      // By catalogue code (server-overloaded, deadline-expired, …): the kinds of failure tell overload from faults.
      count(`issue_call_${(err as { code?: string }).code ?? 'unknown'}`);
      return false;
    }
    const issuedAt = wallMs();
    if (counting) stats.issueCallMs.push(performance.now() - t1);
    out.results.forEach((r, j) => {
      const [id, rev] = chunk[j];
      if (r.status_code !== 0 || !r.svid) {
        // An entry deleted between the sync and this call is refused; that is churn, not a fault.
        count(r.status_code === 7 ? 'issue_denied' : 'issue_item');
        return;
      }
      const expiresMs = Number(r.svid.expires_at) * 1000;
      const previous = a.svids.get(id);
      if (inWindow && previous && previous.expiresAt <= issuedAt) lapse(a);
      a.svids.set(id, { renewAt: issuedAt + (expiresMs - issuedAt) * init.rotationFraction, expiresAt: expiresMs, entryRevision: rev });
      if (counting) stats.issued++;
    });
  }
  return true;
}

/** The fleet converged: every agent attested, synced and holds an SVID for each of its entries. */
function checkConverged(): void {
  if (converged || !attestationDone || unconverged.size > 0) return;
  converged = true;
  send({ type: 'converged', at: wallMs() });
}

/** One cycle, and one more for each burst of notifications that came during it; then the next poll. */
async function run(a: SimAgent): Promise<void> {
  a.running = true;
  try {
    do {
      a.again = false;
      const bundleOnly = a.entrySyncAsked ? undefined : a.pushedBundleState;
      a.entrySyncAsked = false;
      a.pushedBundleState = undefined;
      const ok = await cycle(a, bundleOnly).catch(() => {
        count('cycle');
        return false;
      });
      a.failures = ok ? 0 : a.failures + 1;
    } while (a.again && !stopped && a.failures === 0);
  } finally {
    a.running = false;
    // As the agent's manager: the change stream opens after the first sync, whatever its outcome
    // (opening all of a worker's streams the moment attestation ended was a burst of thousands of
    // TLS handshakes in one turn of the server's event loop that no real fleet makes).
    if (init.push && !a.watchStarted) {
      a.watchStarted = true;
      watch(a);
    }
    // Each agent is checked after its own cycle, O(its entries): checking the whole fleet after every
    // cycle cost the simulator O(agents²) while the fleet converged, and slowed what it measured.
    if (!converged) {
      if (a.synced && [...a.entries.keys()].every((id) => a.svids.has(id))) unconverged.delete(a);
      else unconverged.add(a);
      checkConverged();
    }
    // As the agent's manager: after a failed cycle (an overloaded server refusing a batch, a sync
    // past its deadline) the next comes 1.5× later each time, up to a minute, instead of every
    // interval: retrying a saturated server at full rate only adds refused calls to its work.
    schedule(a, a.failures === 0 ? pollDelayMs(a) : Math.min(MAX_BACKOFF_MS, init.syncIntervalMs * 1.5 ** a.failures));
  }
}

/**
 * As the agent's manager: the sync interval, or with the change stream up the push sync interval
 * (±10 %), but no later than the agent's next SVID renewal.
 */
function pollDelayMs(a: SimAgent): number {
  const base = init.syncIntervalMs;
  if (!a.watchUp || init.pushSyncIntervalMs <= base) return base;
  let due = Infinity;
  for (const svid of a.svids.values()) due = Math.min(due, svid.renewAt);
  return Math.max(base, Math.min(init.pushSyncIntervalMs * (0.9 + Math.random() * 0.2), due - wallMs()));
}

function schedule(a: SimAgent, delay: number): void {
  if (stopped) return;
  clearTimeout(a.timer);
  a.pollAt = wallMs() + delay;
  a.timer = setTimeout(() => void run(a), delay);
}

/** A change notification: cycle now, or once more after the running one (a bundle fetch alone for a bundle-only one with its state). */
function trigger(a: SimAgent, bundleState?: Buffer): void {
  if (stopped) return;
  if (bundleState?.length) a.pushedBundleState = bundleState;
  else a.entrySyncAsked = true;
  if (a.running) {
    a.again = true;
    return;
  }
  clearTimeout(a.timer);
  void run(a);
}

/** The agent's change stream; reconnects with backoff and jitter (at once after a rebuilt connection). */
function watch(a: SimAgent): void {
  if (stopped || a.watch) return;
  a.watch = a.client.watch((m) => {
    if (m.initial) {
      a.watchUp = true;
      a.watchFailures = 0;
      // Back after a gap (a rebuilt connection, a server restart): catch up on what was not pushed meanwhile, as the agent does.
      if (a.watchedBefore) trigger(a);
      a.watchedBefore = true;
      return;
    }
    stats.notifications++;
    // As the agent does: an entry change at once, a bundle change (every agent at once) spread as the server asks.
    if (m.entries) trigger(a);
    else setTimeout(() => trigger(a, m.bundle_state), Math.random() * bundleSpreadMs(m));
  }, (err) => {
    a.watch = undefined;
    if (stopped) return;
    if (err ? err.status !== 1 : !a.watchUp) a.watchFailures++; // 1 = CANCELLED: our own reconnect, at once
    const wasUp = a.watchUp;
    a.watchUp = false;
    // As the agent does: without the stream, the poll comes back to the sync interval.
    if (wasUp && !a.running && a.pollAt - wallMs() > init.syncIntervalMs) schedule(a, init.syncIntervalMs);
    if (err && err.status !== 1) count(`watch_${err.code}`);
    const base = Math.min(30_000, 500 * 2 ** a.watchFailures);
    setTimeout(() => watch(a), base * (0.5 + Math.random()));
  });
}

function lapse(a: SimAgent): void {
  stats.svidsLapsed++;
  a.lapsed = true;
}

function finish(): void {
  stopped = true;
  const now = wallMs();
  for (const a of agents) {
    clearTimeout(a.timer);
    if (a.watchUp) stats.watchesOpen++;
    a.watch?.cancel();
    stats.entriesHeld += a.entries.size;
    stats.svidsHeld += [...a.entries.keys()].filter((id) => a.svids.has(id)).length;
    for (const svid of a.svids.values()) if (svid.expiresAt <= now) lapse(a);
    if (a.lapsed || [...a.entries.keys()].some((id) => !a.svids.has(id))) stats.agentsLostSvids++;
  }
  for (const a of agents) a.client.close();
  // Leave only once the report has gone out: it can be megabytes, and exiting would cut it off.
  process.send?.({ type: 'report', stats } satisfies FromWorker, undefined, {}, () => process.exit(0));
}

process.on('message', (m: ToWorker) => {
  if (m.type === 'init') {
    init = m;
    void attestAll();
  } else if (m.type === 'window') {
    inWindow = true;
    counting = true;
  } else if (m.type === 'window-end') {
    counting = false;
  } else if (m.type === 'stop') {
    finish();
  }
});
process.on('disconnect', () => process.exit(0));
