import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../support/conformance.js';
import { cli, cliProcess, json } from '../support/cli.js';
import { removeDir, tempDir } from '../support/server.js';

const dir = tempDir('cli');
afterAll(() => removeDir(dir));
const f = (name: string) => path.join(dir, name);

let ca: { files: { caCert: string; caKey: string; jwtKey: string; bundle: string }; jwtKeyId: string };

beforeAll(async () => {
  const r = await cli('ca', 'init', '--trust-domain', 'example.org', '--out-dir', dir, '--json');
  expect(r.code, r.stdout + r.stderr).toBe(0);
  ca = json(r) as typeof ca;
});

describe('svidscope ca init / x509-svid mint / parse / verify', () => {
  it('writes key files 0600 and a bundle that loads', async () => {
    expect(statSync(ca.files.caKey).mode & 0o777).toBe(0o600);
    expect(statSync(ca.files.jwtKey).mode & 0o777).toBe(0o600);
    const shown = json(await cli('bundle', 'show', ca.files.bundle, '--json'));
    expect(shown).toMatchObject({ valid: true, format: 'spiffe', trustDomain: 'example.org', sequenceNumber: '1' });
    expect((shown.jwtAuthorities as { keyId: string }[])[0].keyId).toBe(ca.jwtKeyId);
  });

  it('mints an SVID that parses with its key and verifies against the bundle in every format', async () => {
    const m = await cli('x509-svid', 'mint', '--ca-cert', ca.files.caCert, '--ca-key', ca.files.caKey, '--spiffe-id', 'spiffe://example.org/web', '--dns-name', 'web.local', '--ttl', '10m', '--out', f('web'), '--json');
    expect(m.code, m.stdout).toBe(0);
    const parsed = json(await cli('x509-svid', 'parse', '--chain', f('web.pem'), '--key', f('web.key.pem'), '--json'));
    expect(parsed).toMatchObject({ valid: true, spiffeId: 'spiffe://example.org/web', numCerts: 1 });
    for (const bundle of [ca.files.bundle, ca.files.caCert]) {
      const v = json(await cli('x509-svid', 'verify', '--chain', f('web.pem'), '--bundle', bundle, '--json'));
      expect(v).toMatchObject({ valid: true, spiffeId: 'spiffe://example.org/web', trustDomain: 'example.org' });
    }
    const late = await cli('x509-svid', 'verify', '--chain', f('web.pem'), '--bundle', ca.files.caCert, '--at', '2099-01-01T00:00:00Z', '--json');
    expect(late.code).toBe(1);
    expect(json(late)).toMatchObject({ valid: false, error: 'expired' });
  });

  it('parses a DER chain with a DER PKCS#8 key, as its help says (PEM or DER)', async () => {
    await cli('x509-svid', 'mint', '--ca-cert', ca.files.caCert, '--ca-key', ca.files.caKey, '--spiffe-id', 'spiffe://example.org/der', '--out', f('der'));
    const leaf = new X509Certificate(readFileSync(f('der.pem')));
    writeFileSync(f('der-chain.der'), Buffer.concat([leaf.raw, new X509Certificate(readFileSync(ca.files.caCert)).raw]));
    writeFileSync(f('der-key.der'), createPrivateKey(readFileSync(f('der.key.pem'))).export({ type: 'pkcs8', format: 'der' }));
    const parsed = await cliProcess('x509-svid', 'parse', '--chain', f('der-chain.der'), '--key', f('der-key.der'), '--json');
    expect(parsed.code, parsed.stdout + parsed.stderr).toBe(0);
    expect(json(parsed)).toMatchObject({ valid: true, spiffeId: 'spiffe://example.org/der', numCerts: 2 });
    // Mixed forms work too, and a DER key that is not the leaf's is still refused.
    expect(json(await cli('x509-svid', 'parse', '--chain', f('der.pem'), '--key', f('der-key.der'), '--json'))).toMatchObject({ valid: true, numCerts: 1 });
    writeFileSync(f('other-key.der'), createPrivateKey(readFileSync(f('web.key.pem'))).export({ type: 'pkcs8', format: 'der' }));
    expect(json(await cli('x509-svid', 'parse', '--chain', f('der-chain.der'), '--key', f('other-key.der'), '--json'))).toMatchObject({ valid: false, error: 'key-mismatch' });
  });

  it('refuses the SVID against another trust domain\'s bundle', async () => {
    await cli('ca', 'init', '--trust-domain', 'other.org', '--out-dir', f('other'), '--json');
    await cli('x509-svid', 'mint', '--ca-cert', ca.files.caCert, '--ca-key', ca.files.caKey, '--spiffe-id', 'spiffe://example.org/api', '--out', f('api'));
    // Taken as the SVID's own trust domain (the default), the foreign CA is simply not an authority...
    const r = await cli('x509-svid', 'verify', '--chain', f('api.pem'), '--bundle', path.join(f('other'), 'ca.pem'), '--json');
    expect(json(r)).toMatchObject({ valid: false, error: 'unknown-authority' });
    // ...and named as other.org's, there is no bundle for example.org at all.
    const named = await cli('x509-svid', 'verify', '--chain', f('api.pem'), '--bundle', path.join(f('other'), 'ca.pem'), '--trust-domain', 'other.org', '--json');
    expect(json(named)).toMatchObject({ valid: false, error: 'no-bundle-for-trust-domain' });
  });

  it('mints and verifies a JWT-SVID, refusing the wrong audience', async () => {
    const m = await cli('jwt-svid', 'mint', '--key', ca.files.jwtKey, '--key-id', ca.jwtKeyId, '--spiffe-id', 'spiffe://example.org/web', '--audience', 'api', '--out', f('token'), '--json');
    expect(m.code, m.stdout).toBe(0);
    const ok = json(await cli('jwt-svid', 'verify', '--token', f('token'), '--bundle', ca.files.bundle, '--trust-domain', 'example.org', '--audience', 'api', '--json'));
    expect(ok).toMatchObject({ valid: true, spiffeId: 'spiffe://example.org/web', keyId: ca.jwtKeyId });
    const bad = await cli('jwt-svid', 'verify', '--token', f('token'), '--bundle', ca.files.bundle, '--trust-domain', 'example.org', '--audience', 'other', '--json');
    expect(json(bad)).toMatchObject({ valid: false, error: 'audience-mismatch' });
  });
});

describe('malformed input: one clear line, non-zero exit, no stack trace', () => {
  const cases: [string, () => string[], string][] = [
    ['a truncated PEM chain', () => {
      const pem = readFileSync(fixturePath('fixtures/x509svid/go-spiffe/good-leaf-only.pem'), 'utf8');
      writeFileSync(f('truncated.pem'), pem.slice(0, pem.length / 2));
      return ['x509-svid', 'parse', '--chain', f('truncated.pem'), '--key', fixturePath('fixtures/x509svid/go-spiffe/key-pkcs8-rsa.pem')];
    }, 'not-pem'],
    ['a bundle file that is not JSON', () => ['bundle', 'show', fixturePath('fixtures/bundle/derived/not-json.txt'), '--format', 'spiffe', '--trust-domain', 'example.org'], 'malformed-json'],
    ['a token with alg none', () => {
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      writeFileSync(f('none.jwt'), `${b64({ alg: 'none', kid: ca.jwtKeyId })}.${b64({ sub: 'spiffe://example.org/x', aud: ['a'], exp: 4102444800 })}.`);
      return ['jwt-svid', 'verify', '--token', f('none.jwt'), '--bundle', ca.files.bundle, '--trust-domain', 'example.org', '--audience', 'a'];
    }, 'unsupported-alg'],
    ['a missing file', () => ['x509-svid', 'parse', '--chain', f('nope.pem'), '--key', f('nope.pem')], 'io-error'],
    ['a bad --at', () => ['x509-svid', 'verify', '--chain', ca.files.caCert, '--bundle', ca.files.caCert, '--at', 'yesterday'], 'usage'],
  ];
  it.each(cases)('%s', async (_name, args, code) => {
    const argv = args();
    const withJson = await cli(...argv, '--json');
    expect(withJson.code).not.toBe(0);
    expect(json(withJson)).toMatchObject({ valid: false, error: code });
    const plain = await cliProcess(...argv);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr.trim().split('\n')).toHaveLength(1);
    expect(plain.stderr).toContain(`[${code}]`);
    expect(plain.stderr).not.toMatch(/\n\s+at /);
  });
});
