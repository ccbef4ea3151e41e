import type { KeyObject } from 'node:crypto';
import { errorFactory, isSvidscopeError, SvidscopeError } from '../../../common/errors/catalog.js';
import type { TrustDomain } from '../id/index.js';
import { parseJsonObject } from './json-doc.js';
import { jwkToPublicKey, publicKeyToJwk } from './jwk.js';
import type { JwtAuthority, JwtBundle } from './types.js';

const fail = errorFactory('jwtbundle');

/** Re-prefixes an error raised by a helper (jwk, x509) with the bundle area, keeping its code. */
export function rewrap(area: string, context: string, err: unknown): unknown {
  if (!isSvidscopeError(err)) return err;
  const inner = err.message.startsWith(`${area}: `) ? err.message.slice(area.length + 2) : err.message;
  return new SvidscopeError(err.code, `${area}: ${context}: ${inner}`, { cause: err });
}

export function jwtAuthority(keyId: unknown, publicKey: KeyObject): JwtAuthority {
  if (typeof keyId !== 'string' || keyId === '') throw fail('jwt-authority-missing-kid', 'keyID cannot be empty');
  return { keyId, publicKey };
}

/** Builds a JWT bundle; with duplicate key ids the last authority wins, as go-spiffe does. */
export function createJwtBundle(trustDomain: TrustDomain, authorities: Iterable<JwtAuthority> = []): JwtBundle {
  const map = new Map<string, JwtAuthority>();
  for (const a of authorities) map.set(jwtAuthority(a.keyId, a.publicKey).keyId, a);
  return { trustDomain, jwtAuthorities: map };
}

/**
 * Parses a plain JWKS (what the Workload API's FetchJWTBundles returns) as a JWT bundle. `use` is
 * ignored, every key needs a `kid`, and a key of a type JWT-SVID cannot use makes the document invalid.
 */
export function parseJwtBundle(trustDomain: TrustDomain, jsonBytes: Uint8Array | string): JwtBundle {
  const doc = parseJsonObject(jsonBytes, 'jwtbundle');
  const keys = doc.value.keys;
  if (keys !== undefined && keys !== null && !Array.isArray(keys)) throw fail('malformed-json', 'unable to parse JWKS: keys must be an array');
  const authorities: JwtAuthority[] = [];
  (keys ?? []).forEach((jwk: unknown, i: number) => {
    try {
      const publicKey = jwkToPublicKey(jwk);
      authorities.push(jwtAuthority((jwk as { kid?: unknown }).kid, publicKey));
    } catch (err) {
      throw rewrap('jwtbundle', `error adding authority ${i} of JWKS`, err);
    }
  });
  return createJwtBundle(trustDomain, authorities);
}

/** Serialises a JWT bundle as a standard JWKS (kid on every key, no `use`, no spiffe_* members). */
export function jwtBundleToJson(bundle: JwtBundle): string {
  const keys = [...bundle.jwtAuthorities.values()].map((a) => ({ ...publicKeyToJwk(a.publicKey), kid: a.keyId }));
  return JSON.stringify({ keys });
}
