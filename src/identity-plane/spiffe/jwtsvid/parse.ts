import { errorFactory } from '../../../common/errors/catalog.js';
import { parseSpiffeId, type SpiffeId } from '../id/index.js';

/** Errors of this package name the JWT-SVID rule that was broken (go-spiffe `jwtsvid:` style). */
export const jwtSvidError = errorFactory('jwtsvid');

/** JWT-SVID.md §3: the only algorithms a JWT-SVID may use. Never `none`, HS*, EdDSA. */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
export type JwtSvidAlgorithm = (typeof ALLOWED_ALGORITHMS)[number];

export function isAllowedAlgorithm(alg: unknown): alg is JwtSvidAlgorithm {
  return typeof alg === 'string' && (ALLOWED_ALGORITHMS as readonly string[]).includes(alg);
}

/** The protected header of a JWT-SVID. `kid` is checked (non-blank) only when the signature is verified. */
export interface JwtSvidHeader {
  readonly alg: JwtSvidAlgorithm;
  readonly kid?: string;
  readonly typ?: string;
  readonly [name: string]: unknown;
}

/** The claims set as it was in the token (a single-string `aud` is kept as sent; `audience` is the normalised list). */
export type JwtSvidClaims = Readonly<Record<string, unknown>>;

/** A parsed (and, from `verifyJwtSvid`, verified) JWT-SVID. */
export interface JwtSvid {
  readonly id: SpiffeId;
  /** The `aud` claim as a list (a single string becomes a one-element list). */
  readonly audience: string[];
  readonly expiry: Date;
  readonly claims: JwtSvidClaims;
  readonly header: JwtSvidHeader;
  /** The compact token the SVID was parsed from. */
  readonly token: string;
}

/** What claim validation needs: the verifier's own audiences, the verification time and an explicit clock-skew leeway. */
export interface JwtSvidValidationOptions {
  /** At least one of these must appear in `aud`; must hold at least one non-empty value. */
  readonly audience: readonly string[];
  readonly now: Date;
  /** Allowed clock skew for `exp`, `nbf` and `iat`, in seconds (go-jose's default is 60). */
  readonly leewaySeconds: number;
}

/** @internal a token decoded and checked for structure, header and required claims; nothing verified. */
export interface DecodedJwtSvid {
  readonly svid: JwtSvid;
  readonly rawKid: unknown;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });
const MAX_SHOWN = 64;

/** Quotes an untrusted value for a message: JSON-escaped (no control characters reach logs) and cut short. */
export function quote(value: unknown): string {
  const s = JSON.stringify(typeof value === 'string' && value.length > MAX_SHOWN ? value.slice(0, MAX_SHOWN) + '…' : value) ?? String(value);
  return s;
}

function malformed(what: string, cause?: unknown) {
  return jwtSvidError('malformed', `unable to parse JWT token: ${what}`, cause);
}

function decodeSegment(segment: string, what: string): Buffer {
  // Node's base64url decoder silently skips bad characters; be strict (no padding, no other alphabet).
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) throw malformed(`${what} is not base64url`);
  return Buffer.from(segment, 'base64url');
}

function decodeJsonObject(segment: string, what: string): Record<string, unknown> {
  const bytes = decodeSegment(segment, what);
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (err) {
    throw malformed(`${what} is not UTF-8 JSON`, err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function isNumericDate(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/**
 * Decodes a compact JWS and applies every JWT-SVID rule that needs neither a key nor a clock, in
 * go-spiffe's order: structure → `alg` allow-list → `typ` → claims JSON → presence of `sub`, `exp`,
 * `aud` → `sub` is a SPIFFE ID. Claim types that JSON decoding into registered claims would reject
 * (a numeric `sub`, a string `exp`…) are `malformed`.
 * @internal
 */
export function decodeJwtSvid(token: string): DecodedJwtSvid {
  if (typeof token !== 'string' || token === '') throw malformed('token is empty');
  const parts = token.split('.');
  if (parts.length !== 3) throw malformed('token is not a compact JWS (three dot-separated parts)');
  const [headerPart, payloadPart, signaturePart] = parts;
  decodeSegment(payloadPart, 'payload');
  decodeSegment(signaturePart, 'signature');
  const header = decodeJsonObject(headerPart, 'header');

  // The algorithm is checked before anything else of the token is processed (JWT-SVID.md §3).
  if (!isAllowedAlgorithm(header.alg)) {
    throw jwtSvidError('unsupported-alg', `unsupported token signature algorithm ${quote(header.alg)}`);
  }
  if (Object.hasOwn(header, 'typ') && header.typ !== 'JWT' && header.typ !== 'JOSE') {
    throw jwtSvidError('bad-typ', 'token header type not equal to either JWT or JOSE');
  }
  if (Object.hasOwn(header, 'kid') && typeof header.kid !== 'string') throw malformed('kid header is not a string');

  const claims = decodeJsonObject(payloadPart, 'payload');
  const { sub, exp, aud, nbf, iat } = claims;

  if (sub === undefined || sub === null || sub === '') throw jwtSvidError('missing-sub', 'token missing subject claim');
  if (typeof sub !== 'string') throw malformed('sub claim is not a string');
  if (exp === undefined || exp === null) throw jwtSvidError('missing-exp', 'token missing exp claim');
  if (!isNumericDate(exp)) throw malformed('exp claim is not a number');
  const expiry = new Date(exp * 1000);
  if (Number.isNaN(expiry.getTime())) throw malformed('exp claim is out of range');
  if (aud === undefined || aud === null || aud === '' || (Array.isArray(aud) && aud.length === 0)) {
    throw jwtSvidError('missing-aud', 'token missing aud claim');
  }
  let audience: string[];
  if (typeof aud === 'string') audience = [aud];
  else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audience = [...(aud as string[])];
  else throw malformed('aud claim is neither a string nor a list of strings');
  if (nbf !== undefined && nbf !== null && !isNumericDate(nbf)) throw malformed('nbf claim is not a number');
  if (iat !== undefined && iat !== null && !isNumericDate(iat)) throw malformed('iat claim is not a number');

  let id: SpiffeId;
  try {
    id = parseSpiffeId(sub);
  } catch (err) {
    const detail = err instanceof Error ? err.message.replace(/^spiffeid: /, '') : String(err);
    throw jwtSvidError('invalid-sub', `token has an invalid subject claim: ${detail}`, err);
  }

  const svid: JwtSvid = {
    id,
    audience,
    expiry,
    claims,
    header: header as JwtSvidHeader,
    token,
  };
  return { svid, rawKid: header.kid };
}

/** Checks the options every validation takes; a caller error, so it comes before the token is looked at. */
export function checkValidationOptions(opts: JwtSvidValidationOptions): void {
  if (!opts || !Array.isArray(opts.audience) || !opts.audience.some((a) => typeof a === 'string' && a !== '')) {
    throw jwtSvidError('empty-expected-audience', 'expected audience cannot be empty');
  }
  if (!(opts.now instanceof Date) || Number.isNaN(opts.now.getTime())) {
    throw jwtSvidError('config-invalid', 'validation time must be a valid Date');
  }
  if (typeof opts.leewaySeconds !== 'number' || !Number.isFinite(opts.leewaySeconds) || opts.leewaySeconds < 0) {
    throw jwtSvidError('config-invalid', 'leeway must be a finite number of seconds, zero or more');
  }
}

/**
 * go-jose `Claims.ValidateWithLeeway` order: audience, then `nbf`, `exp`, `iat` against `now` ± leeway.
 * At least one expected audience must be an element of `aud`.
 */
export function validateClaims(svid: JwtSvid, opts: JwtSvidValidationOptions): void {
  const expected = opts.audience.filter((a) => typeof a === 'string' && a !== '');
  if (!expected.some((a) => svid.audience.includes(a))) {
    throw jwtSvidError('audience-mismatch', `expected audience in ${quote(expected)} (audience=${quote(svid.audience)})`);
  }
  const now = opts.now.getTime();
  const leeway = opts.leewaySeconds * 1000;
  const { nbf, iat } = svid.claims;
  if (isNumericDate(nbf) && now + leeway < nbf * 1000) throw jwtSvidError('not-yet-valid', 'token is not valid yet (nbf)');
  if (now - leeway > svid.expiry.getTime()) throw jwtSvidError('expired', 'token has expired');
  if (isNumericDate(iat) && now + leeway < iat * 1000) throw jwtSvidError('issued-in-future', 'token issued in the future (iat)');
}

/**
 * Parses a JWT-SVID WITHOUT verifying its signature (go-spiffe `ParseInsecure`): for display and
 * for callers that verified the token by other means. Structure, header and required-claim rules
 * apply; `kid` is not required. With `opts`, the audience and time rules apply as well.
 */
export function parseJwtSvidInsecure(token: string, opts?: JwtSvidValidationOptions): JwtSvid {
  if (opts !== undefined) checkValidationOptions(opts);
  const { svid } = decodeJwtSvid(token);
  if (opts !== undefined) validateClaims(svid, opts);
  return svid;
}
