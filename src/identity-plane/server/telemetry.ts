import type { X509Certificate } from 'node:crypto';
import type { Tracer } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import { withSpan } from '../../common/telemetry/tracing.js';
import { serverFamilies as F, grpcStatusName } from '../../common/telemetry/names.js';
import { counter, gauge, histogram, registerProcessMetrics } from '../../common/telemetry/registry.js';
import type { AdminServiceEvents } from './api/admin-service.js';
import type { NodeServiceEvents } from './api/node-service.js';
import type { ChangeNotifier, ChangeNotifierEvents } from './api/change-notifier.js';
import type { BundlePublisher } from './bundle/publisher.js';
import type { CaManager } from './ca/manager.js';
import type { Datastore } from './datastore/types.js';
import type { AgentCache } from './registration/agent-cache.js';
import type { EntryCache } from './registration/entry-cache.js';
import { ADMISSION_LIMITS } from './api/admission.js';
import { ATTESTATION_FAILURE_LABELS } from './api/attestation.js';
import type { SigningPool } from './ca/signing-pool.js';

export const VERSION = '0.1.0';

/** The `state` values of svidscope_server_authorities: the phases, then the compromise marks that override them. */
const AUTHORITY_STATES = ['prepared', 'active', 'old', 'tainted', 'revoked'] as const;
/** Upstream authorities have no prepared phase: this server holds no key for them. */
const UPSTREAM_STATES = ['active', 'old', 'tainted', 'revoked'] as const;

export interface ServerTelemetry {
  /** Per-request outcome of a gRPC service (`node` or `admin`). */
  observe(service: 'node' | 'admin'): (method: string, code: number, seconds: number) => void;
  nodeEvents: NodeServiceEvents;
  adminEvents: AdminServiceEvents;
  /** Push streams: notifications sent, streams closed, limits hit. */
  watchEvents: ChangeNotifierEvents;
  /** Wraps a datastore so every operation's latency and result are observed. */
  instrumentDatastore(ds: Datastore): Datastore;
  /** A signing worker exited and was replaced. */
  signingWorkerRestarted(): void;
}


/**
 * The server's metric families (names in common/telemetry/names.ts). State that already lives in
 * the server (key phases, bundle, entry count, agents) is read at scrape time instead of being
 * mirrored into gauges on every change.
 */
export function createServerTelemetry(registry: Registry, tracer: Tracer | undefined, state: { ca: () => CaManager | undefined; bundles: () => BundlePublisher | undefined; entries: () => EntryCache | undefined; agents: () => AgentCache | undefined; datastore: () => Datastore | undefined; changes?: () => ChangeNotifier | undefined; signingPool?: () => SigningPool | undefined }): ServerTelemetry {
  registerProcessMetrics(registry);
  gauge(registry, F.buildInfo).set({ version: VERSION, component: 'server' }, 1);
  const requests = counter(registry, F.apiRequests);
  const duration = histogram(registry, F.apiDuration);
  const issuance = histogram(registry, F.issuance);
  for (const svid_type of ['x509', 'jwt']) for (const result of ['success', 'failure']) issuance.zero({ svid_type, result });
  const issued = counter(registry, F.issued);
  const failures = counter(registry, F.signingFailures);
  // The server's own faults from 0 (the X509 issuance SLO's numerator): a first burst of them
  // between two scrapes is then an increase. So are the batches it sheds (overloaded, or their
  // deadline passed while queued). Refusals of bad requests (csr-invalid, …) have too many
  // possible codes to list; they appear at their first occurrence.
  for (const svid_type of ['x509', 'jwt']) for (const reason of ['internal', 'signing-worker-failed']) failures.inc({ svid_type, reason }, 0);
  for (const reason of ['server-overloaded', 'deadline-expired']) failures.inc({ svid_type: 'x509', reason }, 0);
  const csrs = counter(registry, F.csrs);
  const attestations = counter(registry, F.attestations);
  // From 0, so a burst of failures between two scrapes is an increase Prometheus sees (attestation.ts).
  for (const { method, reason } of ATTESTATION_FAILURE_LABELS) attestations.inc({ method, result: 'failure', reason }, 0);
  const agentRefusals = counter(registry, F.agentAuthRefusals);
  const limitRefusals = counter(registry, F.limitRefusals);
  // The admission limits exist from the start, so saturation alerts and panels read 0, not "no data".
  for (const limit of Object.values(ADMISSION_LIMITS)) limitRefusals.inc({ limit }, 0);
  const dsDuration = histogram(registry, F.datastoreDuration);
  const agentEntries = histogram(registry, F.agentAuthorizedEntries);
  const entrySyncs = counter(registry, F.entrySyncs);
  for (const kind of ['unchanged', 'incremental', 'full']) entrySyncs.inc({ kind }, 0);
  limitRefusals.inc({ limit: 'watch_max_streams' }, 0);
  const notifications = counter(registry, F.changeNotifications);
  for (const reason of ['entries', 'bundle']) notifications.inc({ reason }, 0);
  const streamsClosed = counter(registry, F.watchStreamsClosed);
  for (const reason of ['slow_consumer', 'banned', 'not_attested', 'stale_serial']) streamsClosed.inc({ reason }, 0);
  gauge(registry, F.watchStreams, function () {
    this.set(state.changes?.()?.streamCount ?? 0);
  });
  gauge(registry, F.authorizationIndex, function () {
    const sizes = state.entries()?.indexSizes();
    if (!sizes) return;
    for (const [index, n] of Object.entries(sizes)) this.set({ index }, n);
  });

  gauge(registry, F.keyPhase, function () {
    this.reset();
    for (const s of state.ca()?.status() ?? []) this.inc({ kind: s.kind, phase: s.phase });
  });
  const lifecycle = counter(registry, F.authorityLifecycle);
  for (const kind of ['x509', 'jwt']) for (const step of ['prepare', 'activate', 'taint', 'revoke']) lifecycle.inc({ kind, step, result: 'ok' }, 0);
  for (const step of ['taint', 'revoke']) lifecycle.inc({ kind: 'x509_upstream', step, result: 'ok' }, 0);
  // Every state is exposed (0 when empty), so "no tainted key any more" is a sample, not an absent series.
  gauge(registry, F.authorities, function () {
    const counts = new Map<string, number>();
    for (const kind of ['x509', 'jwt']) for (const st of AUTHORITY_STATES) counts.set(`${kind}/${st}`, 0);
    for (const st of UPSTREAM_STATES) counts.set(`x509_upstream/${st}`, 0);
    for (const s of state.ca()?.status() ?? []) {
      const key = `${s.kind}/${s.revoked ? 'revoked' : s.tainted ? 'tainted' : s.phase}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    // Upstream authorities: in use (something signs under it), old (only in the bundle), tainted, revoked.
    let inBundle: X509Certificate[] = [];
    try {
      inBundle = state.bundles()?.current.x509Authorities.map((a) => a.cert) ?? [];
    } catch {
      // not synced yet: only the configured and the journalled upstream authorities are known
    }
    for (const u of state.ca()?.upstreamStatus(inBundle) ?? []) {
      const key = `x509_upstream/${u.revoked ? 'revoked' : u.tainted ? 'tainted' : u.inUse ? 'active' : 'old'}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    for (const [key, n] of counts) {
      const [kind, st] = key.split('/');
      this.set({ kind, state: st }, n);
    }
  });
  gauge(registry, F.keyExpiry, function () {
    this.reset();
    const earliest = new Map<string, { kind: string; phase: string; notAfter: number }>();
    for (const s of state.ca()?.status() ?? []) {
      const key = `${s.kind}/${s.phase}`;
      const seen = earliest.get(key);
      if (!seen || s.notAfter < seen.notAfter) earliest.set(key, { kind: s.kind, phase: s.phase, notAfter: s.notAfter });
    }
    for (const e of earliest.values()) this.set({ kind: e.kind, phase: e.phase }, e.notAfter / 1000);
  });
  gauge(registry, F.activationDue, function () {
    this.reset();
    const ca = state.ca();
    for (const kind of ['x509', 'jwt'] as const) {
      const due = ca?.activationDue(kind);
      if (due !== undefined) this.set({ kind }, due / 1000);
    }
  });
  gauge(registry, F.upstreamExpiry, function () {
    const notAfter = state.ca()?.upstreamNotAfter;
    if (notAfter !== undefined) this.set(notAfter / 1000);
  });
  gauge(registry, F.bundleSequence, function () {
    const b = state.bundles();
    if (b) this.set(Number(b.current.sequenceNumber ?? 0n));
  });
  gauge(registry, F.bundleUpdated, function () {
    const b = state.bundles();
    if (b) this.set(b.currentUpdatedAt.getTime() / 1000);
  });
  gauge(registry, F.bundleAuthorities, function () {
    const b = state.bundles()?.current;
    if (!b) return;
    this.set({ kind: 'x509' }, b.x509Authorities.length);
    this.set({ kind: 'jwt' }, b.jwtAuthorities.size);
  });
  gauge(registry, F.entries, function () {
    const e = state.entries();
    if (e) this.set(e.size);
  });
  // From the agent cache, not a datastore scan per scrape (thousands of agents at fleet scale).
  gauge(registry, F.agents, function () {
    const agents = state.agents();
    if (!agents) return;
    const { active, banned } = agents.counts();
    this.set({ state: 'active' }, active);
    this.set({ state: 'banned' }, banned);
  });

  gauge(registry, F.signingWorkers, function () {
    const pool = state.signingPool?.()?.stats();
    this.set({ state: 'busy' }, pool?.busy ?? 0);
    this.set({ state: 'idle' }, pool ? pool.workers - pool.busy : 0);
  });
  gauge(registry, F.signingQueuedBatches, function () {
    this.set(state.signingPool?.()?.stats().queuedChunks ?? 0);
  });
  const workerRestarts = counter(registry, F.signingWorkerRestarts);
  workerRestarts.inc(0);

  return {
    signingWorkerRestarted: () => workerRestarts.inc(),
    observe: (service) => (method, code, seconds) => {
      requests.inc({ service, method, code: grpcStatusName(code) });
      duration.observe({ service, method }, seconds);
    },
    nodeEvents: {
      signed: (svidType, seconds) => {
        issued.inc({ svid_type: svidType });
        issuance.observe({ svid_type: svidType, result: 'success' }, seconds);
      },
      refused: (svidType, reason, seconds) => {
        failures.inc({ svid_type: svidType, reason });
        issuance.observe({ svid_type: svidType, result: 'failure' }, seconds);
      },
      csr: (result) => csrs.inc({ result }),
      attestation: (method, result, reason) => attestations.inc({ method, result, reason }),
      agentRefused: (reason) => agentRefusals.inc({ reason }),
      limitHit: (limit) => limitRefusals.inc({ limit }),
      entrySync: (kind, entries) => {
        entrySyncs.inc({ kind });
        agentEntries.observe({}, entries);
      },
    },
    watchEvents: {
      notified: (reason, streams) => notifications.inc({ reason }, streams),
      dropped: (reason) => streamsClosed.inc({ reason }),
      limitHit: (limit) => limitRefusals.inc({ limit }),
    },
    adminEvents: {
      authorityStep: (kind, step, result) => lifecycle.inc({ kind, step, result }),
    },
    instrumentDatastore: (ds) =>
      new Proxy(ds, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (typeof value !== 'function' || prop === 'close') return value;
          const operation = String(prop);
          return (...args: unknown[]) =>
            withSpan(tracer, `svidscope.datastore/${operation}`, { 'db.system': target.backend, 'db.operation': operation }, async () => {
              const end = dsDuration.startTimer({ operation });
              try {
                const out = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
                end({ result: 'success' });
                return out;
              } catch (err) {
                end({ result: 'failure' });
                throw err;
              }
            });
        },
      }),
  };
}
