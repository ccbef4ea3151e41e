import { generateKeyPairSync, createSecretKey } from 'node:crypto';
import { importJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  BundleSet,
  createJwtBundle,
  createSpiffeBundle,
  createX509Bundle,
  jwkToPublicKey,
  jwtBundleToJson,
  parseJwtBundle,
  parseSpiffeBundle,
  parseX509Bundle,
  parseX509BundleRaw,
  publicKeyToJwk,
  samePublicKey,
  spiffeBundleToJson,
  x509BundleToDer,
  x509BundleToPem,
  type SpiffeBundle,
} from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { decodePem, encodePem, isPem } from '../../src/identity-plane/spiffe/x509/index.js';
import { loadCases, readFixture } from '../support/conformance.js';
import { codeOf } from '../support/errors.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const MAX_UINT64 = 18446744073709551615n;
const fx = (p: string) => readFixture(`fixtures/bundle/${p}`);
const DOMAIN_TEST = mustTrustDomain('domain.test');

/** A comparable view of a bundle: authority DERs, kid -> SPKI, sequence and hint. */
function canonical(b: SpiffeBundle) {
  return {
    td: b.trustDomain.name,
    x509: b.x509Authorities.map((a) => a.der.toString('base64')).sort(),
    jwt: [...b.jwtAuthorities.values()].map((a) => `${a.keyId}=${a.publicKey.export({ format: 'der', type: 'spki' }).toString('base64')}`).sort(),
    seq: b.sequenceNumber,
    hint: b.refreshHintSeconds,
  };
}

describe('SPIFFE bundle round trips', () => {
  const valid = loadCases<{ format: string; input?: string; trustDomain: string; expect: { valid: boolean } }>('bundle.json').filter(
    (c) => c.format === 'spiffe-bundle' && c.expect.valid && c.input !== undefined,
  );
  it.each(valid.map((c) => [c.input!, c] as const))('parse -> serialise -> parse is stable: %s', (_n, c) => {
    const td = mustTrustDomain(c.trustDomain);
    const first = parseSpiffeBundle(td, readFixture(c.input!));
    const again = parseSpiffeBundle(td, spiffeBundleToJson(first));
    expect(canonical(again)).toEqual(canonical(first));
  });

  it.each([0n, 1n, 9007199254740993n, MAX_UINT64])('keeps spiffe_sequence %s exactly', (seq) => {
    const b = createSpiffeBundle({ trustDomain: EXAMPLE_ORG, sequenceNumber: seq, refreshHintSeconds: 300 });
    const json = spiffeBundleToJson(b);
    expect(json).toContain(`"spiffe_sequence":${seq}`);
    expect(parseSpiffeBundle(EXAMPLE_ORG, json).sequenceNumber).toBe(seq);
  });

  it('rejects a sequence beyond uint64, fractional or in exponent form', () => {
    for (const s of ['18446744073709551616', '1.0', '1e3', '-0']) {
      expect(codeOf(() => parseSpiffeBundle(EXAMPLE_ORG, `{"keys":[],"spiffe_sequence":${s}}`))).toBe('malformed-json');
    }
    expect(codeOf(() => createSpiffeBundle({ trustDomain: EXAMPLE_ORG, sequenceNumber: MAX_UINT64 + 1n }))).toBe('malformed-json');
  });

  it('reads top-level members only, and the last of duplicates as JSON.parse does', () => {
    const json = '{ "x": {"spiffe_sequence": 5}, "keys": [ {"spiffe_sequence": 7, "kty":"oct"} ], "spiffe_sequence" : 3 ,"spiffe_sequence":18446744073709551615 }';
    expect(parseSpiffeBundle(EXAMPLE_ORG, json).sequenceNumber).toBe(MAX_UINT64);
  });

  it('writes entries other implementations accept: x509 without kid and one x5c, jwt with kid', async () => {
    const b = parseSpiffeBundle(DOMAIN_TEST, fx('go-spiffe/spiffebundle/spiffebundle_valid_2.json'));
    const doc = JSON.parse(spiffeBundleToJson(b)) as { keys: Record<string, unknown>[]; spiffe_refresh_hint: number };
    expect(doc.spiffe_refresh_hint).toBe(60);
    for (const k of doc.keys) {
      if (k.use === 'x509-svid') {
        expect(k.kid).toBeUndefined();
        expect(k.x5c).toHaveLength(1);
      } else {
        expect(k.use).toBe('jwt-svid');
        expect(typeof k.kid).toBe('string');
      }
      expect(k.kty === 'EC' ? [k.crv, k.x, k.y].every((v) => typeof v === 'string') : typeof k.n === 'string').toBe(true);
      await importJWK(k as never, k.kty === 'EC' ? `ES${String(k.crv).slice(2) === '521' ? '512' : String(k.crv).slice(2)}` : 'RS256');
    }
  });
});

describe('SPIFFE bundle parsing beyond the vectors', () => {
  const cases: [string, string | number][] = [
    ['derived/spiffebundle-jwk-unknown-kty.json', 'x1 j1'],
    ['derived/spiffebundle-keys-empty.json', 'x0 j0'],
    ['derived/spiffebundle-keys-null.json', 'keys-missing'],
    ['derived/spiffebundle-refresh-hint-float.json', 'malformed-json'],
    ['derived/spiffebundle-refresh-hint-string.json', 'malformed-json'],
    ['derived/spiffebundle-unknown-use.json', 'x1 j1'],
    ['derived/spiffebundle-x509-no-x5c.json', 'x0 j1'],
    ['derived/spiffebundle-x5c-bad-base64.json', 'invalid-jwk'],
    ['derived/spiffebundle-x5c-not-a-certificate.json', 'invalid-jwk'],
    ['derived/not-json.txt', 'malformed-json'],
    ['go-spiffe/spiffebundle/spiffebundle_multiple_x509.json', 'x509-entry-not-single-cert'],
    ['go-spiffe/spiffebundle/spiffebundle_valid_with_wit.json', 'x1 j2'],
  ];
  it.each(cases)('%s -> %s', (file, want) => {
    let got: string;
    try {
      const b = parseSpiffeBundle(DOMAIN_TEST, fx(file));
      got = `x${b.x509Authorities.length} j${b.jwtAuthorities.size}`;
    } catch (err) {
      got = (err as { code: string }).code;
    }
    expect(got).toBe(want);
  });

  it('keys must be an array of objects', () => {
    expect(codeOf(() => parseSpiffeBundle(EXAMPLE_ORG, '{"keys":{}}'))).toBe('malformed-json');
    expect(codeOf(() => parseSpiffeBundle(EXAMPLE_ORG, '{"keys":[1]}'))).toBe('invalid-jwk');
    expect(codeOf(() => parseSpiffeBundle(EXAMPLE_ORG, '[]'))).toBe('malformed-json');
  });
});

describe('JWT bundles and JWKs', () => {
  const keys = {
    rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
    p256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    p384: generateKeyPairSync('ec', { namedCurve: 'P-384' }),
    p521: generateKeyPairSync('ec', { namedCurve: 'P-521' }),
  };
  it.each(Object.entries(keys))('JWK round trip for %s, private halves reduced to public', (_n, kp) => {
    expect(samePublicKey(jwkToPublicKey(publicKeyToJwk(kp.publicKey)), kp.publicKey)).toBe(true);
    const fromPrivate = jwkToPublicKey(kp.privateKey.export({ format: 'jwk' }));
    expect(fromPrivate.type).toBe('public');
    expect(publicKeyToJwk(kp.privateKey)).toEqual(publicKeyToJwk(kp.publicKey));
  });

  it('Ed25519 is refused for JWT use and accepted when asked for (X.509 authorities)', () => {
    const ed = generateKeyPairSync('ed25519').publicKey;
    expect(codeOf(() => jwkToPublicKey(publicKeyToJwk(ed)))).toBe('unsupported-key-type');
    expect(samePublicKey(jwkToPublicKey(publicKeyToJwk(ed), { allowEd25519: true }), ed)).toBe(true);
  });

  it('classifies broken JWKs', () => {
    expect(codeOf(() => jwkToPublicKey(null))).toBe('invalid-jwk');
    expect(codeOf(() => jwkToPublicKey({ crv: 'P-256' }))).toBe('invalid-jwk');
    expect(codeOf(() => jwkToPublicKey({ kty: 'oct', k: 'AAAA' }))).toBe('unsupported-key-type');
    expect(codeOf(() => jwkToPublicKey({ kty: 'EC', crv: 'secp256k1', x: 'AA', y: 'AA' }))).toBe('unsupported-key-type');
    expect(codeOf(() => jwkToPublicKey({ kty: 'EC', crv: 'P-256', x: 'a+b/', y: 'AA' }))).toBe('invalid-jwk');
    expect(codeOf(() => jwkToPublicKey({ kty: 'RSA', n: 'AQAB' }))).toBe('invalid-jwk');
    expect(codeOf(() => publicKeyToJwk(createSecretKey(Buffer.alloc(32))))).toBe('unsupported-key-type');
  });

  it('plain JWKS: duplicate kids keep the last key; serialises with kid and no use', () => {
    const b = parseJwtBundle(DOMAIN_TEST, fx('derived/jwks-duplicate-kid.json'));
    expect(b.jwtAuthorities.size).toBe(1);
    const again = parseJwtBundle(DOMAIN_TEST, jwtBundleToJson(b));
    expect([...again.jwtAuthorities.keys()]).toEqual([...b.jwtAuthorities.keys()]);
    expect(JSON.parse(jwtBundleToJson(b)).keys[0].use).toBeUndefined();
  });

  it('createJwtBundle requires key ids', () => {
    expect(codeOf(() => createJwtBundle(EXAMPLE_ORG, [{ keyId: '', publicKey: keys.p256.publicKey }]))).toBe('jwt-authority-missing-kid');
  });
});

describe('X.509 bundles, PEM and BundleSet', () => {
  const certs = parseX509Bundle(DOMAIN_TEST, fx('go-spiffe/x509bundle/certs.pem'));
  it('PEM and DER round trips keep the authorities', () => {
    expect(parseX509Bundle(DOMAIN_TEST, Buffer.from(x509BundleToPem(certs))).x509Authorities.map((a) => a.der)).toEqual(certs.x509Authorities.map((a) => a.der));
    expect(parseX509BundleRaw(DOMAIN_TEST, x509BundleToDer(certs)).x509Authorities).toHaveLength(2);
  });

  it('drops a repeated authority', () => {
    const a = certs.x509Authorities[0];
    expect(createX509Bundle(DOMAIN_TEST, [a, a.cert]).x509Authorities).toHaveLength(1);
  });

  it('decodes PEM with text around blocks and CRLF; refuses input without blocks', () => {
    const der = certs.x509Authorities[0].der;
    const text = `subject=CN=x\r\n${encodePem('CERTIFICATE', der).replace(/\n/g, '\r\n')}trailing words\n`;
    expect(isPem(text)).toBe(true);
    expect(decodePem(text)).toEqual([{ type: 'CERTIFICATE', der }]);
    expect(codeOf(() => decodePem('plain text'))).toBe('not-pem');
    expect(codeOf(() => parseX509BundleRaw(DOMAIN_TEST, Buffer.from('-----BEGIN')))).toBe('malformed-certificate');
  });

  it('BundleSet serves each trust domain its own bundle, widening X.509- or JWT-only bundles', () => {
    const jwt = parseJwtBundle(EXAMPLE_ORG, fx('go-spiffe/jwtbundle/jwks_valid_1.json'));
    const set = new BundleSet([certs, jwt]);
    const domain = mustTrustDomain('domain.test');
    const example = mustTrustDomain('example.org');
    expect(set.getX509BundleForTrustDomain(domain)?.x509Authorities).toHaveLength(2);
    expect(set.getJwtBundleForTrustDomain(domain)?.jwtAuthorities.size).toBe(0);
    expect(set.getJwtBundleForTrustDomain(example)?.jwtAuthorities.size).toBe(1);
    expect(set.getX509BundleForTrustDomain(mustTrustDomain('other.test'))).toBeUndefined();
    set.set(createSpiffeBundle({ trustDomain: DOMAIN_TEST, sequenceNumber: 2 }));
    expect(set.get(domain)?.x509Authorities).toHaveLength(0);
    expect(set.size).toBe(2);
  });
});
