import { compactVerify } from 'jose';
import type { JwtBundleSource } from '../bundle/index.js';
import {
  checkValidationOptions,
  decodeJwtSvid,
  jwtSvidError,
  quote,
  validateClaims,
  type JwtSvid,
  type JwtSvidValidationOptions,
} from './parse.js';

/** Options of `verifyJwtSvid`: the verifier's audiences, the time to verify at and the clock-skew leeway (no implicit now). */
export type VerifyJwtSvidOptions = JwtSvidValidationOptions;

/** Fixed: a signature failure says nothing about why; the jose error is kept in `cause`. */
const SIGNATURE_MESSAGE = 'token signature verification failed';

/**
 * Parses and validates a JWT-SVID (go-spiffe `jwtsvid.ParseAndValidate`, svidscope policy of the
 * conformance README). Order of checks, each failure with its own code:
 *
 * 1. expected audience non-empty (`empty-expected-audience`; a caller error, checked first);
 * 2. compact JWS structure (`malformed`), `alg` allow-list (`unsupported-alg`), `typ` JWT/JOSE if present (`bad-typ`);
 * 3. claims JSON (`malformed`); `sub`, `exp`, `aud` present (`missing-sub`, `missing-exp`, `missing-aud`); `sub` a SPIFFE ID (`invalid-sub`);
 * 4. `kid` present and non-blank (`missing-kid`);
 * 5. a JWT bundle for the trust domain of `sub` (`no-bundle`), an authority with that `kid` (`unknown-kid`), signature (`signature-invalid`);
 * 6. at least one expected audience in `aud` (`audience-mismatch`); `nbf` (`not-yet-valid`), `exp` (`expired`), `iat` (`issued-in-future`) against `now` ± leeway.
 */
export async function verifyJwtSvid(token: string, bundles: JwtBundleSource, opts: VerifyJwtSvidOptions): Promise<JwtSvid> {
  checkValidationOptions(opts);
  const { svid, rawKid } = decodeJwtSvid(token);

  // go-spiffe and SPIRE require a key id although the standard makes it optional.
  if (typeof rawKid !== 'string' || rawKid.trim() === '') throw jwtSvidError('missing-kid', 'token header missing key id');

  const td = svid.id.trustDomain;
  const bundle = bundles.getJwtBundleForTrustDomain(td);
  if (bundle === undefined) throw jwtSvidError('no-bundle', `no bundle found for trust domain ${quote(td.name)}`);
  const authority = bundle.jwtAuthorities.get(rawKid);
  if (authority === undefined) {
    throw jwtSvidError('unknown-kid', `no JWT authority ${quote(rawKid)} found for trust domain ${quote(td.name)}`);
  }

  try {
    // Only the header's own (allow-listed) algorithm; jose rejects a key that does not fit it.
    await compactVerify(token, authority.publicKey, { algorithms: [svid.header.alg] });
  } catch (err) {
    throw jwtSvidError('signature-invalid', SIGNATURE_MESSAGE, err);
  }

  validateClaims(svid, opts);
  return svid;
}
