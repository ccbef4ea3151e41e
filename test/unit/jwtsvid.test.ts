import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { JwtBundle, JwtBundleSource } from '../../src/identity-plane/spiffe/bundle/types.js';
import { parseSpiffeId, type TrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { mintJwtSvid, parseJwtSvidInsecure, verifyJwtSvid, type JwtSvidAlgorithm } from '../../src/identity-plane/spiffe/jwtsvid/index.js';
import { codeOf, codeOfAsync } from '../support/errors.js';

const id = parseSpiffeId('spiffe://example.org/workload');
const now = new Date('2030-01-01T00:00:00Z');
const opts = { audience: ['svc-a'], now, leewaySeconds: 60 };

function keyPair(kind: 'p256' | 'p384' | 'p521' | 'rsa' | 'ed25519') {
  switch (kind) {
    case 'p256': return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'p384': return generateKeyPairSync('ec', { namedCurve: 'P-384' });
    case 'p521': return generateKeyPairSync('ec', { namedCurve: 'P-521' });
    case 'rsa': return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'ed25519': return generateKeyPairSync('ed25519');
  }
}

function source(td: string, keys: Record<string, KeyObject>): JwtBundleSource {
  const bundle: JwtBundle = {
    trustDomain: { name: td } as TrustDomain,
    jwtAuthorities: new Map(Object.entries(keys).map(([keyId, publicKey]) => [keyId, { keyId, publicKey }])),
  };
  return { getJwtBundleForTrustDomain: (t) => (t.name === td ? bundle : undefined) };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('jwtsvid: mint → verify round trip', () => {
  it.each([
    ['p256', 'ES256'],
    ['p384', 'ES384'],
    ['p521', 'ES512'],
    ['rsa', 'RS256'],
  ] as const)('%s key signs with %s', async (kind, alg) => {
    const { privateKey, publicKey } = keyPair(kind);
    const token = await mintJwtSvid({ id, audience: ['svc-a', 'svc-b'], ttlSeconds: 300, now, key: { keyId: 'k1', privateKey }, extraClaims: { iss: 'me' } });
    const svid = await verifyJwtSvid(token, source('example.org', { k1: publicKey }), opts);
    expect(svid.id.toString()).toBe(id.toString());
    expect(svid.audience).toEqual(['svc-a', 'svc-b']);
    expect(svid.expiry.toISOString()).toBe('2030-01-01T00:05:00.000Z');
    expect(svid.header).toEqual({ alg, kid: 'k1', typ: 'JWT' });
    expect(svid.claims).toMatchObject({ sub: id.toString(), aud: ['svc-a', 'svc-b'], iat: now.getTime() / 1000, exp: now.getTime() / 1000 + 300, iss: 'me' });
  });

  it.each(['RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const)('RSA key with explicit %s', async (alg: JwtSvidAlgorithm) => {
    const { privateKey, publicKey } = keyPair('rsa');
    const token = await mintJwtSvid({ id, audience: ['svc-a'], ttlSeconds: 60, now, key: { keyId: 'k1', privateKey, alg } });
    const svid = await verifyJwtSvid(token, source('example.org', { k1: publicKey }), opts);
    expect(svid.header.alg).toBe(alg);
  });

  it('parseJwtSvidInsecure decodes without a bundle', async () => {
    const { privateKey } = keyPair('p256');
    const token = await mintJwtSvid({ id, audience: ['svc-a'], ttlSeconds: 60, now, key: { keyId: 'k1', privateKey } });
    const svid = parseJwtSvidInsecure(token);
    expect(svid.id.toString()).toBe(id.toString());
    expect(svid.audience).toEqual(['svc-a']);
    expect(codeOf(() => parseJwtSvidInsecure(token, { ...opts, audience: ['other'] }))).toBe('audience-mismatch');
  });
});

describe('jwtsvid: verification failures', () => {
  const { privateKey, publicKey } = keyPair('p256');
  const bundles = source('example.org', { k1: publicKey });
  const mint = (over: Partial<Parameters<typeof mintJwtSvid>[0]> = {}) =>
    mintJwtSvid({ id, audience: ['svc-a'], ttlSeconds: 300, now, key: { keyId: 'k1', privateKey }, ...over });

  it('tampered signature → signature-invalid with a fixed message', async () => {
    const token = await mint();
    const [h, p, s] = token.split('.');
    const sig = Buffer.from(s, 'base64url');
    sig[5] ^= 0xff;
    const err = await verifyJwtSvid(`${h}.${p}.${sig.toString('base64url')}`, bundles, opts).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'signature-invalid', message: 'jwtsvid: token signature verification failed' });
    expect((err as Error).cause).toBeDefined();
  });

  it('tampered payload → signature-invalid', async () => {
    const [h, , s] = (await mint()).split('.');
    const payload = b64({ sub: 'spiffe://example.org/admin', aud: ['svc-a'], exp: now.getTime() / 1000 + 300 });
    expect(await codeOfAsync(verifyJwtSvid(`${h}.${payload}.${s}`, bundles, opts))).toBe('signature-invalid');
  });

  it('signed by another key under the same kid → signature-invalid', async () => {
    const other = keyPair('p256');
    const token = await mint({ key: { keyId: 'k1', privateKey: other.privateKey } });
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, opts))).toBe('signature-invalid');
  });

  it('alg none → unsupported-alg', async () => {
    const claims = { sub: id.toString(), aud: ['svc-a'], exp: now.getTime() / 1000 + 300 };
    const token = `${b64({ alg: 'none', typ: 'JWT', kid: 'k1' })}.${b64(claims)}.`;
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, opts))).toBe('unsupported-alg');
    expect(codeOf(() => parseJwtSvidInsecure(token))).toBe('unsupported-alg');
  });

  it.each(['HS256', 'EdDSA', 'ES256K', 'RS1', 'es256'])('alg %s → unsupported-alg', async (alg) => {
    const token = `${b64({ alg, kid: 'k1' })}.${b64({ sub: id.toString(), aud: ['svc-a'], exp: 2e9 })}.c2ln`;
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, opts))).toBe('unsupported-alg');
  });

  it('wrong audience → audience-mismatch; empty expected audience → empty-expected-audience', async () => {
    const token = await mint();
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, audience: ['svc-b'] }))).toBe('audience-mismatch');
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, audience: [] }))).toBe('empty-expected-audience');
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, audience: [''] }))).toBe('empty-expected-audience');
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, audience: ['svc-b', 'svc-a'] }))).toBeUndefined();
  });

  it('expiry honours the explicit leeway', async () => {
    const token = await mint({ ttlSeconds: 60 }); // exp = now + 60 s
    const at = (s: number) => new Date(now.getTime() + s * 1000);
    // 30 s past exp: valid with 60 s leeway, expired without
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, now: at(90), leewaySeconds: 60 }))).toBeUndefined();
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, now: at(90), leewaySeconds: 0 }))).toBe('expired');
    // exactly at exp (+ leeway) is still valid; one second later is not
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, now: at(60), leewaySeconds: 0 }))).toBeUndefined();
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, now: at(121), leewaySeconds: 60 }))).toBe('expired');
  });

  it('iat in the future beyond the leeway → issued-in-future', async () => {
    const token = await mint({ now: new Date(now.getTime() + 120_000) });
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, opts))).toBe('issued-in-future');
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, { ...opts, leewaySeconds: 120 }))).toBeUndefined();
  });

  it('unknown trust domain → no-bundle; unknown kid → unknown-kid', async () => {
    const foreign = await mint({ id: parseSpiffeId('spiffe://other.org/w') });
    expect(await codeOfAsync(verifyJwtSvid(foreign, bundles, opts))).toBe('no-bundle');
    const unknown = await mint({ key: { keyId: 'k2', privateKey } });
    expect(await codeOfAsync(verifyJwtSvid(unknown, bundles, opts))).toBe('unknown-kid');
  });

  it.each([
    ['', 'malformed'],
    ['a.b', 'malformed'],
    ['a.b.c.d', 'malformed'],
    ['e30.e30.', 'unsupported-alg'],
    [`${b64({ alg: 'ES256' })}.!!!.c2ln`, 'malformed'],
    [`${b64({ alg: 'ES256' })}.${b64([1])}.c2ln`, 'malformed'],
    [`${b64({ alg: 'ES256', typ: '' })}.${b64({})}.c2ln`, 'bad-typ'],
    [`${b64({ alg: 'ES256', typ: 'jwt' })}.${b64({})}.c2ln`, 'bad-typ'],
    [`${b64({ alg: 'ES256' })}.${b64({ sub: 'spiffe://example.org/w', aud: 'svc-a' })}.c2ln`, 'missing-exp'],
    [`${b64({ alg: 'ES256' })}.${b64({ sub: 'spiffe://example.org/w', exp: 2e9, aud: [] })}.c2ln`, 'missing-aud'],
    [`${b64({ alg: 'ES256' })}.${b64({ sub: 'spiffe://example.org/w', exp: '2e9', aud: 'x' })}.c2ln`, 'malformed'],
    [`${b64({ alg: 'ES256' })}.${b64({ sub: 'https://example.org/w', exp: 2e9, aud: 'x' })}.c2ln`, 'invalid-sub'],
    [`${b64({ alg: 'ES256' })}.${b64({ sub: 'spiffe://example.org/w', exp: 2e9, aud: 'svc-a' })}.c2ln`, 'missing-kid'],
    [`${b64({ alg: 'ES256', kid: ' ' })}.${b64({ sub: 'spiffe://example.org/w', exp: 2e9, aud: 'svc-a' })}.c2ln`, 'missing-kid'],
  ])('%s → %s', async (token, code) => {
    expect(await codeOfAsync(verifyJwtSvid(token, bundles, opts))).toBe(code);
  });
});

describe('jwtsvid: minting input checks', () => {
  const { privateKey } = keyPair('p256');
  const base = { id, audience: ['svc-a'], ttlSeconds: 60, now, key: { keyId: 'k1', privateKey } };

  it('rejects an empty audience, a bad ttl, a blank key id and reserved extra claims', async () => {
    expect(await codeOfAsync(mintJwtSvid({ ...base, audience: [] }))).toBe('empty-expected-audience');
    expect(await codeOfAsync(mintJwtSvid({ ...base, audience: [''] }))).toBe('empty-expected-audience');
    expect(await codeOfAsync(mintJwtSvid({ ...base, ttlSeconds: 0 }))).toBe('ttl-invalid');
    expect(await codeOfAsync(mintJwtSvid({ ...base, ttlSeconds: -5 }))).toBe('ttl-invalid');
    expect(await codeOfAsync(mintJwtSvid({ ...base, ttlSeconds: 1.5 }))).toBe('ttl-invalid');
    expect(await codeOfAsync(mintJwtSvid({ ...base, key: { keyId: '', privateKey } }))).toBe('missing-kid');
    expect(await codeOfAsync(mintJwtSvid({ ...base, extraClaims: { sub: 'spiffe://evil/x' } }))).toBe('config-invalid');
  });

  it('rejects keys and algorithms outside the allow-list', async () => {
    expect(await codeOfAsync(mintJwtSvid({ ...base, key: { keyId: 'k1', privateKey: keyPair('ed25519').privateKey } }))).toBe('unsupported-key');
    expect(await codeOfAsync(mintJwtSvid({ ...base, key: { keyId: 'k1', privateKey, alg: 'ES384' } }))).toBe('unsupported-key');
    expect(await codeOfAsync(mintJwtSvid({ ...base, key: { keyId: 'k1', privateKey, alg: 'RS256' } }))).toBe('unsupported-key');
    expect(await codeOfAsync(mintJwtSvid({ ...base, key: { keyId: 'k1', privateKey: keyPair('p256').publicKey } }))).toBe('unsupported-key');
  });
});
