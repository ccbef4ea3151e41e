import type * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { TrustDomain } from '../../spiffe/id/index.js';
import type { JwtAudienceLimits } from '../../spiffe/jwtsvid/index.js';
import type { CaManager } from '../ca/manager.js';
import type { BundlePublisher } from '../bundle/publisher.js';
import type { Datastore, RegistrationEntry } from '../datastore/types.js';
import type { AgentCache } from '../registration/agent-cache.js';
import type { BundleCache } from '../bundle/bundle-cache.js';
import type { EntryCache } from '../registration/entry-cache.js';
import { unary } from './grpc.js';
import { Admission, DEFAULT_SIGNING_QUEUE_MAX_CSRS, SIGNING_SLICE } from './admission.js';
import { SigningPool } from '../ca/signing-pool.js';
import type { EntryMsg } from '../../server-api/messages.js';
import type { ChangeNotifier } from './change-notifier.js';
import { createAgentAuth, type AgentRefusalReason, type AuthenticatedAgent } from './agent-auth.js';
import { createAgentIdentityHandlers } from './attestation.js';
import { createBundleView } from './bundle-view.js';
import { createEntrySyncHandlers } from './entry-sync-handler.js';
import { createJwtSvidHandler, createX509SvidHandler } from './svid-issuance.js';

export { MAX_BATCH } from './svid-issuance.js';

export interface NodeServiceDeps {
  trustDomain: TrustDomain;
  datastore: Datastore;
  /** Stored bundles in memory for GetBundles; without it each call lists them from the datastore. */
  bundleCache?: BundleCache;
  ca: CaManager;
  bundles: BundlePublisher;
  entries: EntryCache;
  /** Agent records as of the change feed; authentication reads these, not the datastore. */
  agents: AgentCache;
  clock: Clock;
  logger: Logger;
  ttl: { defaultX509SvidSeconds: number; defaultJwtSvidSeconds: number; agentSeconds: number };
  /** How long the serial a renewal replaced stays accepted (a lost renewal answer can be retried). */
  agentRenewalGraceSeconds: number;
  /** Limits on the audiences of one NewJWTSVID request. */
  jwtAudience: JwtAudienceLimits;
  /** Bound on CSRs admitted for signing and not signed yet (`signing_queue_max_csrs`). */
  signingQueueMaxCsrs?: number;
  /** Where BatchNewX509SVID's CSRs are checked and signed; without it, on the main thread. */
  signingPool?: SigningPool;
  /** Called after each request with its outcome (telemetry). */
  observe?: (method: string, code: grpc.status, seconds: number) => void;
  events?: NodeServiceEvents;
  tracer?: Tracer;
  /** The WatchChanges streams (push); without it the method answers UNIMPLEMENTED and agents poll. */
  changes?: ChangeNotifier;
}

/** Telemetry hooks of the signing paths; the service knows nothing of metrics libraries. */
export interface NodeServiceEvents {
  signed?(svidType: 'x509' | 'jwt' | 'agent_x509', seconds: number): void;
  refused?(svidType: 'x509' | 'jwt' | 'agent_x509', reason: string, seconds: number): void;
  csr?(result: 'valid' | 'invalid'): void;
  attestation?(method: string, result: 'success' | 'failure', reason: string): void;
  /** An agent call refused at authentication; reason is one of not_attested, banned, stale_serial. */
  agentRefused?(reason: AgentRefusalReason): void;
  /** A request refused by a configured limit (bounded: the limit's config key). */
  limitHit?(limit: string): void;
  /** One entry sync answered: unchanged, a delta (incremental) or the full list, with the agent's authorized entry count. */
  entrySync?(kind: 'unchanged' | 'incremental' | 'full', entries: number): void;
}

/**
 * The agent-facing API. Every method but AttestAgent requires the caller's agent X.509-SVID
 * (verified by TLS against the bundle); the agent record must exist (not evicted) and not be banned
 * (`agent-auth.ts`). The methods live by job: `attestation.ts` (AttestAgent, RenewAgent),
 * `entry-sync-handler.ts` (SyncAuthorizedEntries, WatchChanges), `svid-issuance.ts`
 * (BatchNewX509SVID, NewJWTSVID) and `bundle-view.ts` (GetBundles and the sync's bundle state).
 */
export function createNodeService(deps: NodeServiceDeps): grpc.UntypedServiceImplementation {
  const { ca, entries, clock, logger } = deps;
  const wrap = <Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    unary(logger, method, fn, deps.observe, deps.tracer);

  const events = deps.events ?? {};
  const auth = createAgentAuth({ ...deps, events });
  const admission = new Admission({ signingQueueMaxCsrs: deps.signingQueueMaxCsrs ?? DEFAULT_SIGNING_QUEUE_MAX_CSRS, limitHit: (l) => events.limitHit?.(l) });
  const signingPool = deps.signingPool ?? new SigningPool({ size: 0, chunk: SIGNING_SLICE, signer: () => ca.x509Signer, minter: () => ca.x509Minter, logger });
  // The entry view is refreshed by the server's periodic tick and by local admin writes, not per
  // request: a database round trip per signature would make the datastore the bottleneck.
  const authorized = async (agent: AuthenticatedAgent): Promise<RegistrationEntry[]> => {
    return entries.authorizedFor(agent.spiffeId, agent.selectors, clock.nowMs());
  };

  const shared = { ...deps, events, auth, admission, authorized };
  const bundleView = createBundleView(shared);
  deps.changes?.useBundleState(() => bundleView.state());
  const identity = createAgentIdentityHandlers({ ...shared, bundleView });
  const sync = createEntrySyncHandlers({ ...shared, bundleView });

  return {
    AttestAgent: wrap('AttestAgent', identity.attestAgent),
    RenewAgent: wrap('RenewAgent', identity.renewAgent),
    SyncAuthorizedEntries: wrap('SyncAuthorizedEntries', sync.syncAuthorizedEntries),
    WatchChanges: sync.watchChanges,
    BatchNewX509SVID: wrap('BatchNewX509SVID', createX509SvidHandler({ ...shared, signingPool })),
    NewJWTSVID: wrap('NewJWTSVID', createJwtSvidHandler(shared)),
    GetBundles: wrap('GetBundles', bundleView.getBundles),
  };
}

export type { EntryMsg };
