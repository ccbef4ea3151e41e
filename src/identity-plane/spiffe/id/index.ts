export { SpiffeId, parseSpiffeId, mustSpiffeId, spiffeIdFromPath, spiffeIdFromSegments, assertGeneratable, MAX_SPIFFE_ID_BYTES } from './spiffe-id.js';
export { TrustDomain, parseTrustDomain, mustTrustDomain, MAX_TRUST_DOMAIN_BYTES } from './trust-domain.js';
export { validatePath, validatePathSegment, joinPathSegments } from './path.js';
