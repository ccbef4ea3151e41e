// The agent's rotation-path chain reader against Node's own decoding: the chain facts equal what
// certificate decoding gives (the PKCS#8 of workload keys is checked in test/unit/keygen.test.ts).
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChainReader } from '../../src/identity-plane/agent/manager/svid-parts.js';
import { chainAuthorityIds } from '../../src/identity-plane/agent/manager/taint.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, signIntermediateCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { certificateFacts } from '../../src/identity-plane/spiffe/x509/index.js';

describe('ChainReader', () => {
  it('reads validity and authority ids as certificate decoding does, and shares the CA part between SVIDs of one chain', () => {
    const now = new Date();
    const root = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 86_400, now });
    const interKey = generateKeyPair('ec-p256');
    const inter = signIntermediateCa({ parentCert: root.certificate, parentKey: root.privateKey, trustDomain: 'example.org', publicKey: interKey.publicKey, ttlSeconds: 3600, now });
    const reader = new ChainReader();
    const cases = [
      { minter: createX509SvidMinter({ caCertificate: root.certificate, caPrivateKey: root.privateKey }), tail: [] as Buffer[] },
      { minter: createX509SvidMinter({ caCertificate: inter.certificate, caPrivateKey: interKey.privateKey }), tail: [inter.der] },
    ];
    for (const { minter, tail } of cases) {
      const read = [];
      for (let i = 0; i < 3; i++) {
        const leaf = minter.mint({ id: parseSpiffeId(`spiffe://example.org/w${i}`), publicKey: generateKeyPair('ec-p256').publicKey, ttlSeconds: 600, now }).der;
        // Fresh copies per SVID, as each protobuf answer brings its own.
        const chain = [leaf, ...tail].map((d) => Buffer.from(d));
        const key = Buffer.from(`pkcs8 of w${i}`);
        const facts = reader.read(chain, key);
        const certs = chain.map((d) => new X509Certificate(d));
        expect(facts.authorityIds).toEqual(chainAuthorityIds(certs));
        expect(facts.notAfter).toBe(certificateFacts(certs[0]).notAfter.getTime());
        expect(facts.notBefore).toBe(certificateFacts(certs[0]).notBefore.getTime());
        expect(facts.chain.map((d) => d.toString('hex'))).toEqual(chain.map((d) => d.toString('hex')));
        expect(facts.chain[0]).not.toBe(chain[0]);
        // Leaf and key in one allocation of their own, outside the shared pool.
        expect(facts.keyDer.equals(key)).toBe(true);
        expect(facts.keyDer.buffer).toBe(facts.chain[0].buffer);
        expect(facts.chain[0].buffer.byteLength).toBe(chain[0].length + key.length);
        read.push(facts);
      }
      if (tail.length > 0) expect(read[2].chain[1]).toBe(read[0].chain[1]);
    }
  });
});
