import path from 'node:path';
import { ConfigReader } from '../../../common/config/load.js';
import { isSvidscopeError, SvidscopeError } from '../../../common/errors/catalog.js';
import { checkHostPort } from '../../../common/net.js';
import { parseSpiffeIdBounded, parseTrustDomainBounded } from '../../spiffe/id/index.js';

/** The two profiles of the SPIFFE Federation standard (§5). */
export type FederationProfile = 'https_web' | 'https_spiffe';
export const FEDERATION_PROFILES: readonly FederationProfile[] = ['https_web', 'https_spiffe'];

/** This server's bundle endpoint: serves its own trust bundle to federated peers. */
export interface BundleEndpointConfig {
  /** host:port to listen on (port 0 picks a free one). */
  bind: string;
  profile: FederationProfile;
  /** https_web: the serving certificate chain and key (PEM), re-read when they change on disk. */
  certFile?: string;
  keyFile?: string;
  /** https_spiffe: the SPIFFE ID of the endpoint's X509-SVID (default `spiffe://<td>/spire/server`). */
  spiffeId?: string;
  /** https_spiffe: lifetime of the endpoint's X509-SVID; it is renewed at half-life. */
  svidTtlSeconds: number;
  /** `spiffe_refresh_hint` served to peers; defaults to the hint of the published bundle (`bundle_refresh_hint`). */
  refreshHintSeconds?: number;
}

/** One federation relationship: whose bundle to fetch, from where, and how to authenticate the endpoint. */
export interface RelationshipConfig {
  trustDomain: string;
  endpointUrl: string;
  profile: FederationProfile;
  /** https_spiffe: the SPIFFE ID the endpoint must present. */
  endpointSpiffeId?: string;
  /** A bundle of `trustDomain` to start from (SPIFFE JSON or PEM); needed for self-serving https_spiffe. */
  bundleFile?: string;
  /** https_web: PEM roots to validate the endpoint with instead of the system Web PKI roots. */
  caFile?: string;
}

export interface FederationConfig {
  bundleEndpoint?: BundleEndpointConfig;
  relationships: RelationshipConfig[];
  /** Bounds of the poll interval: the peer's refresh hint is clamped into [min, max]; backoff starts at min. */
  minRefreshSeconds: number;
  maxRefreshSeconds: number;
  /** Poll interval used when the peer's bundle carries no refresh hint (the standard suggests 5 min). */
  defaultRefreshSeconds: number;
  /** Timeout of one bundle fetch (connect + TLS + response). */
  fetchTimeoutSeconds: number;
}

export const DEFAULT_FEDERATION_CONFIG: FederationConfig = {
  relationships: [],
  minRefreshSeconds: 5,
  maxRefreshSeconds: 3600,
  defaultRefreshSeconds: 300,
  fetchTimeoutSeconds: 10,
};

/**
 * Reads the `federation` section of the server config:
 *
 * ```yaml
 * federation:
 *   bundle_endpoint: { bind: 0.0.0.0:8443, profile: https_spiffe, refresh_hint: 5m }
 *   refresh_min: 5s
 *   refresh_max: 1h
 *   relationships:
 *     - { trust_domain: b.test, endpoint_url: https://b:8443, profile: https_spiffe,
 *         endpoint_spiffe_id: spiffe://b.test/spire/server, bundle_file: b.json }
 * ```
 */
export function readFederationConfig(r: ConfigReader): FederationConfig {
  const be = r.section('bundle_endpoint');
  const bind = be.optionalString('bind');
  let bundleEndpoint: BundleEndpointConfig | undefined;
  if (bind !== undefined) {
    checkHostPort(bind, 'federation.bundle_endpoint.bind');
    const profile = be.oneOf('profile', FEDERATION_PROFILES, 'https_spiffe');
    const certFile = be.optionalString('cert_file');
    const keyFile = be.optionalString('key_file');
    const spiffeId = be.optionalString('spiffe_id');
    if (profile === 'https_web' && (!certFile || !keyFile)) be.fail('cert_file', 'https_web needs cert_file and key_file');
    if (spiffeId !== undefined) checkSpiffeId(be, 'spiffe_id', spiffeId);
    const hint = be.raw('refresh_hint').value;
    bundleEndpoint = {
      bind, profile, spiffeId,
      certFile: certFile ? path.resolve(certFile) : undefined,
      keyFile: keyFile ? path.resolve(keyFile) : undefined,
      svidTtlSeconds: be.duration('svid_ttl', '1h'),
      refreshHintSeconds: hint === undefined || hint === null ? undefined : be.duration('refresh_hint', '5m'),
    };
    if (bundleEndpoint.svidTtlSeconds <= 0) be.fail('svid_ttl', 'must be positive');
  } else {
    for (const key of ['profile', 'cert_file', 'key_file', 'spiffe_id', 'svid_ttl', 'refresh_hint']) be.raw(key);
  }
  be.rejectUnknown();

  const minRefreshSeconds = r.duration('refresh_min', '5s');
  const maxRefreshSeconds = r.duration('refresh_max', '1h');
  const defaultRefreshSeconds = r.duration('refresh_default', '5m');
  const fetchTimeoutSeconds = r.duration('fetch_timeout', '10s');
  if (minRefreshSeconds <= 0) r.fail('refresh_min', 'must be positive');
  if (maxRefreshSeconds < minRefreshSeconds) r.fail('refresh_max', 'must be at least refresh_min');
  if (fetchTimeoutSeconds <= 0) r.fail('fetch_timeout', 'must be positive');

  const relationships = r.items('relationships').map(readRelationship);
  const seen = new Set<string>();
  for (const rel of relationships) {
    if (seen.has(rel.trustDomain)) r.fail('relationships', `trust domain ${rel.trustDomain} appears twice`);
    seen.add(rel.trustDomain);
  }
  r.rejectUnknown();
  return { bundleEndpoint, relationships, minRefreshSeconds, maxRefreshSeconds, defaultRefreshSeconds, fetchTimeoutSeconds };
}

/** One list item; its reader's prefix makes errors name `federation.relationships[<i>].<key>`. */
function readRelationship(rr: ConfigReader): RelationshipConfig {
  const tdText = rr.requiredString('trust_domain');
  try {
    parseTrustDomainBounded(tdText);
  } catch (err) {
    rr.fail('trust_domain', (err as Error).message);
  }
  const endpointUrl = rr.requiredString('endpoint_url');
  const urlProblem = checkEndpointUrl(endpointUrl);
  if (urlProblem) rr.fail('endpoint_url', urlProblem);
  const profile = rr.oneOf('profile', FEDERATION_PROFILES, 'https_spiffe');
  const endpointSpiffeId = rr.optionalString('endpoint_spiffe_id');
  if (profile === 'https_spiffe') {
    if (!endpointSpiffeId) rr.fail('endpoint_spiffe_id', 'is required with profile https_spiffe');
    checkSpiffeId(rr, 'endpoint_spiffe_id', endpointSpiffeId);
  } else if (endpointSpiffeId) rr.fail('endpoint_spiffe_id', 'only applies to profile https_spiffe');
  const bundleFile = rr.optionalString('bundle_file');
  const caFile = rr.optionalString('ca_file');
  if (caFile && profile !== 'https_web') rr.fail('ca_file', 'only applies to profile https_web');
  rr.rejectUnknown();
  return {
    trustDomain: tdText, endpointUrl, profile, endpointSpiffeId,
    bundleFile: bundleFile ? path.resolve(bundleFile) : undefined,
    caFile: caFile ? path.resolve(caFile) : undefined,
  };
}

function checkSpiffeId(r: ConfigReader, key: string, value: string): void {
  try {
    parseSpiffeIdBounded(value);
  } catch (err) {
    r.fail(key, (err as Error).message);
  }
}

/** Both profiles: an `https` URL without userinfo (SPIFFE Federation §5.1, §5.2). Returns the problem, if any. */
export function checkEndpointUrl(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `"${value}" is not a URL`;
  }
  if (url.protocol !== 'https:') return 'the bundle endpoint URL must use https';
  if (url.username || url.password) return 'the bundle endpoint URL must not carry userinfo';
  return undefined;
}

/** Validates a relationship given through the admin API; throws `config-invalid` naming the field. */
export function validateRelationship(rel: RelationshipConfig, ownTrustDomain: string): void {
  const bad = (field: string, reason: string): never => {
    throw new SvidscopeError('config-invalid', `federation: ${field}: ${reason}`);
  };
  // An ID over the standard's size limits keeps its own code; other problems are config-invalid.
  const parsed = (field: string, parse: () => unknown): void => {
    try {
      parse();
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'id-too-long') throw new SvidscopeError('id-too-long', `federation: ${field}: ${err.message}`);
      bad(field, (err as Error).message);
    }
  };
  parsed('trust_domain', () => parseTrustDomainBounded(rel.trustDomain));
  if (rel.trustDomain === ownTrustDomain) bad('trust_domain', 'cannot federate with the server\'s own trust domain');
  const urlProblem = checkEndpointUrl(rel.endpointUrl);
  if (urlProblem) bad('bundle_endpoint_url', urlProblem);
  if (!FEDERATION_PROFILES.includes(rel.profile)) bad('bundle_endpoint_profile', `must be one of ${FEDERATION_PROFILES.join(', ')}`);
  if (rel.profile === 'https_spiffe') {
    if (!rel.endpointSpiffeId) bad('endpoint_spiffe_id', 'required with profile https_spiffe');
    parsed('endpoint_spiffe_id', () => parseSpiffeIdBounded(rel.endpointSpiffeId!));
  } else if (rel.endpointSpiffeId) bad('endpoint_spiffe_id', 'only applies to profile https_spiffe');
}
