import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../../common/log.js';
import type { Federation, NewRelationship, RelationshipStatus } from '../federation/index.js';
import { unary } from './grpc.js';

export interface FederationServiceDeps {
  federation: Federation;
  logger: Logger;
  observe?: (method: string, code: grpc.status, seconds: number) => void;
}

/** Wire shape of admin.proto `FederationRelationship` (keepCase). */
export interface FederationRelationshipMsg {
  trust_domain: string;
  bundle_endpoint_url: string;
  bundle_endpoint_profile: string;
  endpoint_spiffe_id: string;
  web_ca_bundle: string;
  source: string;
}

/** Wire shape of admin.proto `Federation` (int64/uint64 as strings). */
export interface FederationMsg {
  relationship: FederationRelationshipMsg;
  has_bundle: boolean;
  bundle_sequence: string;
  bundle_updated_at: string;
  authority_expires_at: string;
  refresh_hint: string;
  last_attempt_at: string;
  last_success_at: string;
  last_error: string;
  last_error_reason: string;
  last_error_at: string;
  consecutive_failures: number;
  next_refresh_at: string;
}

const seconds = (ms: number | undefined) => String(ms === undefined ? 0 : Math.floor(ms / 1000));

export function federationMessage(s: RelationshipStatus): FederationMsg {
  const r = s.relationship;
  return {
    relationship: {
      trust_domain: r.trustDomain, bundle_endpoint_url: r.endpointUrl, bundle_endpoint_profile: r.profile,
      endpoint_spiffe_id: r.endpointSpiffeId ?? '', web_ca_bundle: r.webRootsPem ?? '', source: r.source,
    },
    has_bundle: s.bundleSequence !== undefined,
    bundle_sequence: (s.bundleSequence ?? 0n).toString(),
    bundle_updated_at: seconds(s.bundleUpdatedAtMs),
    authority_expires_at: seconds(s.authorityExpiryMs),
    refresh_hint: String(s.refreshHintSeconds ?? 0),
    last_attempt_at: seconds(s.lastAttemptMs),
    last_success_at: seconds(s.lastSuccessMs),
    last_error: s.lastError?.message ?? '',
    last_error_reason: s.lastError?.reason ?? '',
    last_error_at: seconds(s.lastError?.atMs),
    consecutive_failures: s.consecutiveFailures,
    next_refresh_at: seconds(s.nextRefreshMs),
  };
}

/**
 * The federation methods of the Admin service (admin.proto: CreateFederation, GetFederation,
 * ListFederations, DeleteFederation, RefreshFederation), to merge into the Admin implementation:
 * `{ ...createAdminService(deps), ...createFederationHandlers({ federation, logger }) }`.
 * Refusals come back as SvidscopeErrors, mapped once by `unary` (config-invalid → INVALID_ARGUMENT,
 * not-found, already-exists, unavailable for a failed refresh).
 */
export function createFederationHandlers(deps: FederationServiceDeps): grpc.UntypedServiceImplementation {
  const { federation, logger } = deps;
  const wrap = <Req, Res>(method: string, fn: (req: Req) => Promise<Res>) => unary<Req, Res>(logger, method, fn, deps.observe);
  return {
    CreateFederation: wrap('CreateFederation', async (req: { relationship?: Partial<FederationRelationshipMsg>; bundle?: Buffer }) => {
      const m = req.relationship ?? {};
      const rel: NewRelationship = {
        trustDomain: m.trust_domain ?? '',
        endpointUrl: m.bundle_endpoint_url ?? '',
        profile: (m.bundle_endpoint_profile || 'https_spiffe') as NewRelationship['profile'],
        endpointSpiffeId: m.endpoint_spiffe_id || undefined,
        webRootsPem: m.web_ca_bundle || undefined,
      };
      return federationMessage(await federation.create(rel, { bundle: req.bundle?.length ? Buffer.from(req.bundle) : undefined }));
    }),
    GetFederation: wrap('GetFederation', async (req: { trust_domain: string }) => federationMessage(federation.relationship(req.trust_domain))),
    ListFederations: wrap('ListFederations', async () => ({ federations: federation.relationships().map(federationMessage) })),
    DeleteFederation: wrap('DeleteFederation', async (req: { trust_domain: string; keep_bundle: boolean }) => {
      await federation.delete(req.trust_domain, { keepBundle: req.keep_bundle });
      return {};
    }),
    RefreshFederation: wrap('RefreshFederation', async (req: { trust_domain: string }) => federationMessage(await federation.refreshNow(req.trust_domain))),
  };
}
