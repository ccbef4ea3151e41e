export type { X509Authority, JwtAuthority, X509Bundle, JwtBundle, SpiffeBundle, X509BundleSource, JwtBundleSource } from './types.js';
export { jwkToPublicKey, publicKeyToJwk, samePublicKey, type JwkOptions } from './jwk.js';
export { parseJwtBundle, createJwtBundle, jwtAuthority, jwtBundleToJson } from './jwt-bundle.js';
export { parseX509Bundle, parseX509BundleRaw, createX509Bundle, x509Authority, x509BundleToPem, x509BundleToDer } from './x509-bundle.js';
export { parseSpiffeBundle, createSpiffeBundle, spiffeBundleToJson, type SpiffeBundleInit } from './spiffe-bundle.js';
export { BundleSet, toSpiffeBundle } from './set.js';
