import { X509Certificate } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';
import type { TrustDomain } from '../id/index.js';
import { parseJsonObject, type JsonDoc } from './json-doc.js';
import { jwkToPublicKey, publicKeyToJwk, samePublicKey } from './jwk.js';
import { createJwtBundle, jwtAuthority, rewrap } from './jwt-bundle.js';
import type { JwtAuthority, SpiffeBundle, X509Authority } from './types.js';
import { dedupeAuthorities } from './x509-bundle.js';

const AREA = 'spiffebundle';
const fail = errorFactory(AREA);
const MAX_UINT64 = (1n << 64n) - 1n;
// kty values that can hold an authority; `oct` is deliberately absent: a shared secret must never
// become a trust anchor, and JWT-SVID allows only asymmetric algorithms. Other kty values are ignored.
const ASYMMETRIC_KTY = new Set(['EC', 'RSA', 'OKP']);
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export interface SpiffeBundleInit {
  readonly trustDomain: TrustDomain;
  readonly x509Authorities?: Iterable<X509Certificate | X509Authority>;
  readonly jwtAuthorities?: Iterable<JwtAuthority> | ReadonlyMap<string, JwtAuthority>;
  readonly sequenceNumber?: bigint | number;
  readonly refreshHintSeconds?: number;
}

export function createSpiffeBundle(init: SpiffeBundleInit): SpiffeBundle {
  const jwt = init.jwtAuthorities ?? [];
  const seq = init.sequenceNumber === undefined ? undefined : BigInt(init.sequenceNumber);
  if (seq !== undefined && (seq < 0n || seq > MAX_UINT64)) throw fail('malformed-json', 'sequence number must be a uint64');
  if (init.refreshHintSeconds !== undefined && !Number.isSafeInteger(init.refreshHintSeconds)) {
    throw fail('malformed-json', 'refresh hint must be an integer number of seconds');
  }
  return {
    trustDomain: init.trustDomain,
    x509Authorities: dedupeAuthorities(init.x509Authorities ?? []),
    jwtAuthorities: createJwtBundle(init.trustDomain, isMap(jwt) ? jwt.values() : jwt).jwtAuthorities,
    sequenceNumber: seq,
    refreshHintSeconds: init.refreshHintSeconds,
  };
}

function isMap(x: Iterable<JwtAuthority> | ReadonlyMap<string, JwtAuthority>): x is ReadonlyMap<string, JwtAuthority> {
  return typeof (x as ReadonlyMap<string, JwtAuthority>).get === 'function';
}

/**
 * Parses a SPIFFE bundle document (SPIFFE Trust Domain and Bundle §4). Entries with a missing or
 * unknown `use`, an unknown or symmetric `kty`, or no/empty `x5c` are skipped, as the standard says;
 * a JWK that is broken (no `kty`, bad key material, x5c not matching the key) fails the document.
 */
export function parseSpiffeBundle(trustDomain: TrustDomain, jsonBytes: Uint8Array | string): SpiffeBundle {
  const doc = parseJsonObject(jsonBytes, AREA);
  const keys = doc.value.keys;
  if (keys === undefined || keys === null) throw fail('keys-missing', 'no authorities found: the keys member is required');
  if (!Array.isArray(keys)) throw fail('malformed-json', 'unable to parse JWKS: keys must be an array');
  const x509: X509Certificate[] = [];
  const jwt: JwtAuthority[] = [];
  keys.forEach((entry: unknown, i: number) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw fail('invalid-jwk', `key entry ${i} is not a JSON object`);
    const jwk = entry as Record<string, unknown>;
    if (typeof jwk.kty !== 'string' || jwk.kty === '') throw fail('invalid-jwk', `key entry ${i}: missing json web key type`);
    if (!ASYMMETRIC_KTY.has(jwk.kty)) return;
    try {
      if (jwk.use === 'x509-svid') {
        const cert = x509Entry(jwk, i);
        if (cert !== undefined) x509.push(cert);
      } else if (jwk.use === 'jwt-svid') {
        // Ed25519 keys are accepted as go-spiffe does: the key is well-formed, and tokens signed
        // with EdDSA are refused by the JWT-SVID algorithm allow-list at verification.
        jwt.push(jwtAuthority(jwk.kid, jwkToPublicKey(jwk, { allowEd25519: true })));
      }
    } catch (err) {
      throw rewrap(AREA, `error adding authority ${i} of JWKS`, err);
    }
  });
  return createSpiffeBundle({
    trustDomain,
    x509Authorities: x509,
    jwtAuthorities: jwt,
    sequenceNumber: sequence(doc),
    refreshHintSeconds: refreshHint(doc),
  });
}

function x509Entry(jwk: Record<string, unknown>, i: number): X509Certificate | undefined {
  const x5c = jwk.x5c;
  if (x5c === undefined || x5c === null || (Array.isArray(x5c) && x5c.length === 0)) return undefined;
  if (!Array.isArray(x5c)) throw fail('invalid-jwk', 'x5c must be an array');
  if (x5c.length !== 1) throw fail('x509-entry-not-single-cert', `expected a single certificate in x509-svid entry ${i}; got ${x5c.length}`);
  const b64 = x5c[0];
  if (typeof b64 !== 'string' || !BASE64.test(b64) || b64.length % 4 !== 0) throw fail('invalid-jwk', 'x5c value is not base64');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(b64, 'base64'));
  } catch (err) {
    throw fail('invalid-jwk', 'x5c value is not a certificate', err);
  }
  // X.509 authorities may hold Ed25519 keys, unlike JWT authorities.
  if (!samePublicKey(jwkToPublicKey(jwk, { allowEd25519: true }), cert.publicKey)) {
    throw fail('invalid-jwk', 'public keys in key and x5c fields do not match');
  }
  return cert;
}

/** `spiffe_sequence`: a uint64, read from the raw number text so 2^64-1 survives. */
function sequence(doc: JsonDoc): bigint | undefined {
  if (doc.value.spiffe_sequence === undefined || doc.value.spiffe_sequence === null) return undefined;
  const raw = doc.raw('spiffe_sequence') ?? '';
  if (!/^(0|[1-9][0-9]*)$/.test(raw) || BigInt(raw) > MAX_UINT64) {
    throw fail('malformed-json', `unable to parse JWKS: spiffe_sequence must be an unsigned 64-bit integer, got ${raw.slice(0, 40)}`);
  }
  return BigInt(raw);
}

/** `spiffe_refresh_hint`: whole seconds; negative values are kept as given (go-spiffe does too). */
function refreshHint(doc: JsonDoc): number | undefined {
  const v = doc.value.spiffe_refresh_hint;
  if (v === undefined || v === null) return undefined;
  const raw = doc.raw('spiffe_refresh_hint') ?? '';
  if (!/^-?(0|[1-9][0-9]*)$/.test(raw) || !Number.isSafeInteger(v)) {
    throw fail('malformed-json', `unable to parse JWKS: spiffe_refresh_hint must be an integer number of seconds, got ${raw.slice(0, 40)}`);
  }
  return v as number;
}

/**
 * Serialises a SPIFFE bundle document: x509-svid entries carry the key members, `x5c` and `use`
 * (no `kid`, per X509-SVID §6); jwt-svid entries carry the key members, `kid` and `use`.
 */
export function spiffeBundleToJson(bundle: SpiffeBundle, opts: { space?: number } = {}): string {
  const keys = [
    ...bundle.x509Authorities.map((a) => ({ use: 'x509-svid', ...publicKeyToJwk(a.cert.publicKey), x5c: [a.der.toString('base64')] })),
    ...[...bundle.jwtAuthorities.values()].map((a) => ({ use: 'jwt-svid', kid: a.keyId, ...publicKeyToJwk(a.publicKey) })),
  ];
  // JSON.stringify cannot write a bigint, so the sequence is spliced in as a number literal.
  const SEQ = '\u0000seq\u0000';
  const doc: Record<string, unknown> = { keys };
  if (bundle.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = bundle.refreshHintSeconds;
  if (bundle.sequenceNumber !== undefined) doc.spiffe_sequence = SEQ;
  return JSON.stringify(doc, null, opts.space).replace(JSON.stringify(SEQ), String(bundle.sequenceNumber));
}
