import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { errorFactory } from '../../../common/errors/catalog.js';

export { samePublicKey } from '../x509/index.js';

const fail = errorFactory('jwk');

const EC_CURVES = new Set(['P-256', 'P-384', 'P-521']);
const BASE64URL = /^[A-Za-z0-9_-]+$/;

export interface JwkOptions {
  /**
   * Accept OKP/Ed25519 keys. Off by default because JWT-SVID allows only RS/ES/PS algorithms, so an
   * Ed25519 JWT authority could never verify a valid token; X.509 authorities may carry Ed25519 keys.
   */
  readonly allowEd25519?: boolean;
}

function member(jwk: Record<string, unknown>, name: string, kty: string): string {
  const v = jwk[name];
  if (typeof v !== 'string' || v === '') throw fail('invalid-jwk', `invalid ${kty} key: missing ${name} value`);
  if (!BASE64URL.test(v)) throw fail('invalid-jwk', `invalid ${kty} key: ${name} is not base64url`);
  return v;
}

/** The public members of a JWK only: private parameters (d, p, q…) are dropped, never kept as an authority. */
function publicMembers(jwk: Record<string, unknown>, opts: JwkOptions): JsonWebKey {
  const kty = jwk.kty;
  if (kty === undefined || kty === null || kty === '') throw fail('invalid-jwk', 'missing json web key type');
  if (typeof kty !== 'string') throw fail('invalid-jwk', 'json web key type must be a string');
  switch (kty) {
    case 'RSA':
      return { kty, n: member(jwk, 'n', kty), e: member(jwk, 'e', kty) };
    case 'EC': {
      const crv = jwk.crv;
      if (typeof crv !== 'string' || crv === '') throw fail('invalid-jwk', 'invalid EC key: missing crv value');
      if (!EC_CURVES.has(crv)) throw fail('unsupported-key-type', `unsupported EC curve ${JSON.stringify(crv)}`);
      return { kty, crv, x: member(jwk, 'x', kty), y: member(jwk, 'y', kty) };
    }
    case 'OKP': {
      if (opts.allowEd25519 && jwk.crv === 'Ed25519') return { kty, crv: 'Ed25519', x: member(jwk, 'x', kty) };
      throw fail('unsupported-key-type', `unsupported key type OKP/${String(jwk.crv)}`);
    }
    default:
      throw fail('unsupported-key-type', `unsupported key type ${JSON.stringify(kty)}`);
  }
}

/**
 * Turns a JWK into a public KeyObject. Node's JWK import checks that EC points lie on the curve and
 * that coordinates have the curve's length, which is exactly the go-jose check the vectors expect.
 */
export function jwkToPublicKey(jwk: unknown, opts: JwkOptions = {}): KeyObject {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw fail('invalid-jwk', 'json web key must be an object');
  const pub = publicMembers(jwk as Record<string, unknown>, opts);
  try {
    return createPublicKey({ key: pub, format: 'jwk' });
  } catch (err) {
    throw fail('invalid-jwk', `invalid ${pub.kty} key: ${pub.kty === 'EC' ? 'point is not on the declared curve' : 'cannot be imported'}`, err);
  }
}

/** The public JWK of a key (kty/crv/x/y, kty/n/e or kty/crv/x); private keys are reduced to their public half. */
export function publicKeyToJwk(key: KeyObject): JsonWebKey {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.type !== 'public') throw fail('unsupported-key-type', 'symmetric keys have no public JWK');
  const jwk = pub.export({ format: 'jwk' });
  switch (jwk.kty) {
    case 'RSA':
      return { kty: 'RSA', n: jwk.n, e: jwk.e };
    case 'EC':
      return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    case 'OKP':
      return { kty: 'OKP', crv: jwk.crv, x: jwk.x };
    default:
      throw fail('unsupported-key-type', `unsupported key type ${String(jwk.kty)}`);
  }
}
