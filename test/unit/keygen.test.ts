// Keys as svidscope makes them: of the asked type, each pair matching, and the workload key's
// PKCS#8 byte for byte what Node exports (P-256 scalars shorter than 32 bytes included).
import { createPublicKey, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateKeyPair, generateWorkloadKey, keyTypeOf, keyTypes, privateKeyPkcs8 } from '../../src/identity-plane/spiffe/mint/index.js';

describe('generateKeyPair', () => {
  it.each(keyTypes)('makes a %s pair whose halves match', (type) => {
    const { privateKey, publicKey } = generateKeyPair(type);
    expect(keyTypeOf(privateKey)).toBe(type);
    expect(publicKey.type).toBe('public');
    const data = Buffer.from('svidscope');
    expect(verify('sha256', data, publicKey, sign('sha256', data, privateKey))).toBe(true);
  });
});

describe('generateWorkloadKey', () => {
  it('gives 2,000 P-256 keys whose PKCS#8 equals Node\'s export, some of them with a short scalar', () => {
    let short = 0;
    for (let i = 0; i < 2000; i++) {
      const key = generateWorkloadKey('ec-p256');
      expect(key.pkcs8().equals(key.privateKey.export({ type: 'pkcs8', format: 'der' }))).toBe(true);
      expect(key.publicKey.export({ type: 'spki', format: 'der' }).equals(createPublicKey(key.privateKey).export({ type: 'spki', format: 'der' }))).toBe(true);
      if (Buffer.from(key.privateKey.export({ format: 'jwk' }).d!, 'base64url')[0] === 0) short++;
    }
    // ≈ 2,000 / 256 leading zero bytes expected; with none the padding above was never exercised.
    expect(short).toBeGreaterThan(0);
  });

  it.each(['ec-p384', 'rsa-2048'] as const)('gives a %s key with Node\'s PKCS#8', (type) => {
    const key = generateWorkloadKey(type);
    expect(keyTypeOf(key.privateKey)).toBe(type);
    expect(key.pkcs8().equals(key.privateKey.export({ type: 'pkcs8', format: 'der' }))).toBe(true);
    expect(privateKeyPkcs8(key.privateKey).equals(key.pkcs8())).toBe(true);
  });
});
