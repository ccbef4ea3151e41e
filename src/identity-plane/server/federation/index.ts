export { startFederation, type Federation, type FederationDeps, type NewRelationship } from './federation.js';
export { registerFederationMetrics, type FederationStateSource } from './metrics.js';
export type { FederationMetrics, RelationshipStatus, RefreshLimits } from './refresher.js';
export type { Relationship } from './store.js';
export { FederationFetchError, FETCH_FAILURE_REASONS, type FetchFailureReason } from './fetch.js';
export { startBundleEndpoint, type BundleEndpoint, type BundleEndpointDeps, type EndpointCa } from './endpoint.js';
export {
  readFederationConfig,
  validateRelationship,
  DEFAULT_FEDERATION_CONFIG,
  FEDERATION_PROFILES,
  type FederationConfig,
  type BundleEndpointConfig,
  type RelationshipConfig,
  type FederationProfile,
} from './config.js';
