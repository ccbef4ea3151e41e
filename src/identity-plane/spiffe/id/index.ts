export { SpiffeId, parseSpiffeId, mustSpiffeId, spiffeIdFromPath, spiffeIdFromSegments, assertGeneratable, parseSpiffeIdBounded, MAX_SPIFFE_ID_BYTES } from './spiffe-id.js';
export { TrustDomain, parseTrustDomain, mustTrustDomain, parseTrustDomainBounded, MAX_TRUST_DOMAIN_BYTES } from './trust-domain.js';
export { validatePath, validatePathSegment, joinPathSegments } from './path.js';
