import type { Registry } from 'prom-client';
import type { Clock } from '../../common/clock.js';
import { agentFamilies as F, grpcStatusName, WORKLOAD_API_SERVER_ERROR_CODES } from '../../common/telemetry/names.js';
import { counter, gauge, histogram, registerProcessMetrics } from '../../common/telemetry/registry.js';
import { WORKLOAD_API_METHODS, type WorkloadHandlerEvents } from './endpoints/workload-handler.js';
import type { WorkloadCache } from './manager/cache.js';
import { WORKLOAD_API_LIMITS } from './endpoints/h2-grpc-server.js';
import { JWT_AUDIENCE_LIMIT_KEYS } from '../spiffe/jwtsvid/index.js';
import type { AgentManager, AuthorityHolding, ManagerEvents } from './manager/manager.js';
import type { RefusalReason, WorkloadSocketLimits } from './peercred/limits.js';

/** Every refusal reason, exposed at zero so a rate() over it works before the first refusal. */
const REFUSAL_REASONS: readonly RefusalReason[] = ['per_uid_limit', 'total_limit', 'first_request_timeout', 'emfile', 'exec_after_connect'];

/** What the Workload API socket reports: refusals, and its limits once it knows them. */
export interface WorkloadSocketEvents {
  refused(reason: RefusalReason): void;
  limits(limits: WorkloadSocketLimits): void;
}

export const VERSION = '0.1.0';

/** Distinct authority_key_id values per kind before the rest are folded into "other" (a handful live at a time). */
export const MAX_AUTHORITY_SERIES = 16;

/** The agent's metric families (names in common/telemetry/names.ts), fed by the manager and handler hooks. */
export function createAgentTelemetry(registry: Registry, clock: Clock, state: { manager: () => AgentManager | undefined; cache: () => WorkloadCache | undefined; workloadConnections?: () => number | undefined }): { managerEvents: ManagerEvents; workloadEvents: WorkloadHandlerEvents; socketEvents: WorkloadSocketEvents; serverFailover: () => void; cacheEvents: { evicted(count: number): void; maxSize(size: number): void } } {
  registerProcessMetrics(registry);
  gauge(registry, F.buildInfo).set({ version: VERSION, component: 'agent' }, 1);
  const syncDuration = histogram(registry, F.syncDuration);
  const syncFailures = counter(registry, F.syncFailures);
  const lastSync = gauge(registry, F.lastSync);
  // 0 until the first successful sync ("never"): an agent that starts during an outage must still
  // show up in SvidscopeAgentNotSyncing, which an absent series never would.
  lastSync.set(0);
  const requests = counter(registry, F.workloadRequests);
  // Each method's OK and agent-failure series from 0, so that a first burst of failures between
  // two scrapes is an increase to the Workload API SLO and its alerts, not a series that appears
  // already holding the burst (which increase() cannot see).
  for (const method of WORKLOAD_API_METHODS) for (const code of ['OK', ...WORKLOAD_API_SERVER_ERROR_CODES]) requests.inc({ method, code }, 0);
  const duration = histogram(registry, F.workloadDuration);
  const open = gauge(registry, F.openStreams);
  const rotations = counter(registry, F.rotations);
  const rotationFailures = counter(registry, F.rotationFailures);
  const ttlLeft = histogram(registry, F.ttlRemainingAtRotation);
  const lag = histogram(registry, F.bundleLag);
  for (const bundle of ['own', 'federated']) lag.zero({ bundle });
  const sequence = gauge(registry, F.bundleSequence);
  const federatedSequence = gauge(registry, F.federatedBundleSequence);
  for (const method of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles']) open.set({ method }, 0);
  syncFailures.inc(0);
  const limitRefusals = counter(registry, F.limitRefusals);
  // Every limit's series from 0, so a burst of refusals between two scrapes is an increase.
  for (const limit of [...Object.values(JWT_AUDIENCE_LIMIT_KEYS), ...WORKLOAD_API_LIMITS]) limitRefusals.inc({ limit }, 0);
  const socketRefusals = counter(registry, F.workloadRefusals);
  for (const reason of REFUSAL_REASONS) socketRefusals.inc({ reason }, 0);
  const connectionLimit = gauge(registry, F.workloadConnectionLimit);
  gauge(registry, F.workloadConnections, function () {
    this.set(state.workloadConnections?.() ?? 0);
  });
  const svidEvictions = counter(registry, F.svidCacheEvictions);
  svidEvictions.inc(0);
  const svidCacheMax = gauge(registry, F.svidCacheMaxSize);
  const jwtEvictions = counter(registry, F.jwtCacheEvictions);
  jwtEvictions.inc(0);
  const failovers = counter(registry, F.serverFailovers);
  const entrySyncs = counter(registry, F.entrySyncs);
  for (const kind of ['unchanged', 'incremental', 'full']) entrySyncs.inc({ kind }, 0);
  const pushNotifications = counter(registry, F.pushNotifications);
  for (const kind of ['entries', 'bundle', 'initial']) pushNotifications.inc({ kind }, 0);
  gauge(registry, F.pushConnected, function () {
    this.set(state.manager()?.pushConnected ? 1 : 0);
  });
  failovers.inc(0);
  gauge(registry, F.jwtCacheBytes, function () {
    this.set(state.manager()?.jwtCacheBytes ?? 0);
  });

  const taintClear = histogram(registry, F.taintClear);
  taintClear.zero({});
  gauge(registry, F.taintedSvids, function () {
    const held = state.manager()?.taintedSvids() ?? { x509: 0, jwt: 0 };
    this.set({ kind: 'x509' }, held.x509);
    this.set({ kind: 'jwt' }, held.jwt);
  });
  // Both gauges are rebuilt at every scrape from what is held, so a key no longer held leaves no series behind.
  gauge(registry, F.svidsByAuthority, function () {
    this.reset();
    for (const h of boundedHoldings(state.manager()?.svidsByAuthority() ?? [])) this.set({ kind: h.kind, authority_key_id: h.authorityKeyId }, h.count);
  });
  gauge(registry, F.oldestSvidByAuthorityAge, function () {
    this.reset();
    const now = clock.nowMs();
    for (const h of boundedHoldings(state.manager()?.svidsByAuthority() ?? [])) {
      this.set({ kind: h.kind, authority_key_id: h.authorityKeyId }, Math.max(0, now - h.oldestIssuedAtMs) / 1000);
    }
  });

  gauge(registry, F.svidsCached, function () {
    this.set(state.cache()?.svidCount ?? 0);
  });
  gauge(registry, F.entriesAuthorized, function () {
    this.set(state.cache()?.entryCount ?? 0);
  });
  gauge(registry, F.svidExpiry, function () {
    const cache = state.cache();
    if (!cache) return;
    let earliest = Infinity;
    for (const e of cache.allEntries()) {
      const s = cache.svidFor(e.id);
      if (s && s.notAfter < earliest) earliest = s.notAfter;
    }
    if (earliest !== Infinity) this.set(earliest / 1000);
  });
  gauge(registry, F.agentSvidExpiry, function () {
    const s = state.manager()?.status;
    if (s?.agentSvidNotAfter) this.set(s.agentSvidNotAfter / 1000);
  });
  gauge(registry, F.attested, function () {
    const s = state.manager()?.status;
    this.set(s?.attested && s.agentSvidNotAfter > clock.nowMs() ? 1 : 0);
  });

  return {
    managerEvents: {
      sync: (result, seconds) => {
        syncDuration.observe({ result }, seconds);
        if (result === 'ok') lastSync.set(clock.nowMs() / 1000);
        else syncFailures.inc();
      },
      rotation: (reason, fraction) => {
        rotations.inc({ reason });
        if (reason !== 'new') ttlLeft.observe({}, fraction);
      },
      rotationFailure: (reason) => rotationFailures.inc({ reason }),
      jwtCacheEvicted: () => jwtEvictions.inc(),
      taintCleared: (seconds) => taintClear.observe({}, seconds),
      entrySync: (kind) => entrySyncs.inc({ kind }),
      pushNotification: (kind) => pushNotifications.inc({ kind }),
      bundleUpdated: (kind, td, seq, serverUpdatedAtMs) => {
        if (kind === 'own') sequence.set(Number(seq));
        else federatedSequence.set({ trust_domain: td }, Number(seq));
        if (serverUpdatedAtMs > 0) lag.observe({ bundle: kind }, Math.max(0, clock.nowMs() - serverUpdatedAtMs) / 1000);
      },
    },
    socketEvents: {
      refused: (reason) => socketRefusals.inc({ reason }),
      limits: (l) => {
        connectionLimit.set({ limit: 'total' }, l.maxConnections);
        connectionLimit.set({ limit: 'per_uid' }, l.maxConnectionsPerUid);
      },
    },
    workloadEvents: {
      limitHit: (limit) => limitRefusals.inc({ limit }),
      request: (method, code, seconds) => {
        requests.inc({ method, code: grpcStatusName(code) });
        duration.observe({ method }, seconds);
      },
      streamOpened: (method) => open.inc({ method }),
      streamClosed: (method) => open.dec({ method }),
    },
    serverFailover: () => failovers.inc(),
    cacheEvents: {
      evicted: (count) => svidEvictions.inc(count),
      maxSize: (size) => svidCacheMax.set(size),
    },
  };
}

/** Holdings with their label values bounded: '' → unknown, past MAX_AUTHORITY_SERIES per kind → other (most SVIDs kept). */
export function boundedHoldings(list: readonly AuthorityHolding[]): AuthorityHolding[] {
  const out = new Map<string, AuthorityHolding>();
  for (const kind of ['x509', 'jwt'] as const) {
    const ofKind = list.filter((h) => h.kind === kind).sort((a, b) => b.count - a.count);
    ofKind.forEach((h, i) => {
      const authorityKeyId = i >= MAX_AUTHORITY_SERIES ? 'other' : h.authorityKeyId || 'unknown';
      const key = `${kind}/${authorityKeyId}`;
      const seen = out.get(key);
      if (seen) {
        seen.count += h.count;
        seen.oldestIssuedAtMs = Math.min(seen.oldestIssuedAtMs, h.oldestIssuedAtMs);
      } else {
        out.set(key, { ...h, authorityKeyId });
      }
    });
  }
  return [...out.values()];
}
