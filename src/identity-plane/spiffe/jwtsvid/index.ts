export {
  ALLOWED_ALGORITHMS,
  isAllowedAlgorithm,
  parseJwtSvidInsecure,
  type JwtSvid,
  type JwtSvidAlgorithm,
  type JwtSvidClaims,
  type JwtSvidHeader,
  type JwtSvidValidationOptions,
} from './parse.js';
export { verifyJwtSvid, type VerifyJwtSvidOptions } from './verify.js';
export { mintJwtSvid, algorithmForKey, type JwtSigningKey, type MintJwtSvidParams } from './mint.js';
export { checkJwtAudienceLimits, DEFAULT_JWT_AUDIENCE_LIMITS, JWT_AUDIENCE_LIMIT_KEYS, type JwtAudienceLimits } from './limits.js';
