import type { KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import type { SpiffeId } from '../id/index.js';
import { isAllowedAlgorithm, jwtSvidError, quote, type JwtSvidAlgorithm } from './parse.js';

/** A JWT signing key: its id (the `kid` published in the bundle), the private key and optionally the algorithm. */
export interface JwtSigningKey {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  /** Defaults from the key: ES256/ES384/ES512 by curve, RS256 for RSA, PS256 for RSA-PSS. RSA keys may pick any RS or PS algorithm. */
  readonly alg?: JwtSvidAlgorithm;
}

export interface MintJwtSvidParams {
  readonly id: SpiffeId;
  /** Empty values are dropped (as SPIRE does); at least one must remain. */
  readonly audience: readonly string[];
  /** Lifetime in whole seconds, > 0. */
  readonly ttlSeconds: number;
  readonly now: Date;
  readonly key: JwtSigningKey;
  /** Further claims (`iss`, `jti`…); cannot set `sub`, `aud`, `exp`, `iat`. */
  readonly extraClaims?: Readonly<Record<string, unknown>>;
}

const RESERVED_CLAIMS = ['sub', 'aud', 'exp', 'iat'];
const EC_ALG_BY_CURVE: Readonly<Record<string, JwtSvidAlgorithm>> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

/** Picks (or checks) the algorithm for a private key; `unsupported-key` for anything outside the JWT-SVID allow-list. */
export function algorithmForKey(privateKey: KeyObject, requested?: string): JwtSvidAlgorithm {
  if (privateKey?.type !== 'private') throw jwtSvidError('unsupported-key', 'signing key must be a private key');
  if (requested !== undefined && !isAllowedAlgorithm(requested)) {
    throw jwtSvidError('unsupported-key', `signature algorithm ${quote(requested)} is not allowed for JWT-SVIDs`);
  }
  const kind = privateKey.asymmetricKeyType;
  const details = privateKey.asymmetricKeyDetails ?? {};
  if (kind === 'ec') {
    const alg = EC_ALG_BY_CURVE[details.namedCurve ?? ''];
    if (alg === undefined) throw jwtSvidError('unsupported-key', `EC curve ${quote(details.namedCurve)} is not supported for JWT-SVIDs`);
    if (requested !== undefined && requested !== alg) {
      throw jwtSvidError('unsupported-key', `algorithm ${requested} does not match the key's curve (${alg})`);
    }
    return alg;
  }
  if (kind === 'rsa' || kind === 'rsa-pss') {
    if ((details.modulusLength ?? 0) < 2048) throw jwtSvidError('unsupported-key', 'RSA keys must be at least 2048 bits');
    const alg = requested ?? (kind === 'rsa' ? 'RS256' : 'PS256');
    if (!alg.startsWith('RS') && !alg.startsWith('PS')) throw jwtSvidError('unsupported-key', `algorithm ${alg} does not fit an RSA key`);
    if (kind === 'rsa-pss' && !alg.startsWith('PS')) throw jwtSvidError('unsupported-key', `algorithm ${alg} does not fit an RSA-PSS key`);
    return alg as JwtSvidAlgorithm;
  }
  throw jwtSvidError('unsupported-key', `key type ${quote(kind)} is not supported for JWT-SVIDs`);
}

/**
 * Mints a JWT-SVID as SPIRE does: header `{alg, kid, typ: "JWT"}`, claims `sub`, `aud` (always a
 * list), `exp` = `iat` + ttl, `iat` = `now` (whole seconds), plus `extraClaims`.
 */
export async function mintJwtSvid(params: MintJwtSvidParams): Promise<string> {
  const { id, ttlSeconds, now, key, extraClaims } = params;
  const audience = (params.audience ?? []).filter((a) => typeof a === 'string' && a !== '');
  if (audience.length === 0) throw jwtSvidError('empty-expected-audience', 'audience cannot be empty');
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw jwtSvidError('ttl-invalid', `ttl must be a whole number of seconds greater than zero (got ${quote(ttlSeconds)})`);
  }
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw jwtSvidError('config-invalid', 'mint time must be a valid Date');
  if (typeof key?.keyId !== 'string' || key.keyId.trim() === '') throw jwtSvidError('missing-kid', 'signing key id cannot be empty');
  const alg = algorithmForKey(key.privateKey, key.alg);
  const reserved = Object.keys(extraClaims ?? {}).filter((c) => RESERVED_CLAIMS.includes(c));
  if (reserved.length > 0) throw jwtSvidError('config-invalid', `extra claims cannot set ${reserved.join(', ')}`);

  const iat = Math.floor(now.getTime() / 1000);
  return new SignJWT({ ...extraClaims })
    .setProtectedHeader({ alg, kid: key.keyId, typ: 'JWT' })
    .setSubject(id.toString())
    .setAudience([...audience])
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSeconds)
    .sign(key.privateKey);
}
