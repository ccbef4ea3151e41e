import { describe, expect, it } from 'vitest';
import type { PeerCertificate } from 'node:tls';
import { PeerIdentityCache } from '../../src/identity-plane/server/api/peer-identity.js';
import { parseTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../../src/identity-plane/spiffe/mint/index.js';
import { parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { createHash } from 'node:crypto';

const NOW = new Date(Date.UTC(2030, 0, 1));
const ca = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 3600, now: NOW });
const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
const key = generateKeyPair();

/** What TLS hands the server for a client certificate: its DER and its SHA-256 fingerprint. */
function peerFor(id: string, dnsNames?: string[]): PeerCertificate {
  const { der } = minter.mint({ id: parseSpiffeId(id), publicKey: key.publicKey, ttlSeconds: 600, now: NOW, dnsNames });
  const fingerprint256 = createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
  return { raw: der, fingerprint256 } as PeerCertificate;
}

describe('PeerIdentityCache', () => {
  it('decodes an agent certificate once, and refuses certificates that name no agent of the trust domain', () => {
    const cache = new PeerIdentityCache(parseTrustDomain('example.org'), 2);
    const peer = peerFor('spiffe://example.org/spire/agent/join_token/a');
    const first = cache.resolve(peer);
    expect(first.id.toString()).toBe('spiffe://example.org/spire/agent/join_token/a');
    expect(first.serial).toMatch(/^[0-9a-f]+$/);
    // Change streams close at this time; it comes from the certificate, not from another TLS query.
    expect(first.notAfterMs).toBe(NOW.getTime() + 600_000);
    expect(cache.resolve(peer)).toBe(first); // the same decoded object: no second decode
    expect(() => cache.resolve(peerFor('spiffe://example.org/workload'))).toThrow(/is not an agent of trust domain example.org/);
    expect(() => cache.resolve(undefined)).toThrow(/X.509-SVID signed by this trust domain is required/);
    expect(cache.size).toBe(1); // refusals are not cached
  });

  it('reads the SPIFFE ID the same way whether the SAN text is one URI or holds other names too', () => {
    const cache = new PeerIdentityCache(parseTrustDomain('example.org'));
    const plain = cache.resolve(peerFor('spiffe://example.org/spire/agent/join_token/plain'));
    // A DNS name beside the URI makes the SAN text more than one entry: the ASN.1 walk reads it.
    const withDns = cache.resolve(peerFor('spiffe://example.org/spire/agent/join_token/dns', ['node-1.example.org']));
    expect(plain.id.toString()).toBe('spiffe://example.org/spire/agent/join_token/plain');
    expect(withDns.id.toString()).toBe('spiffe://example.org/spire/agent/join_token/dns');
  });

  it('stays within its bound, oldest out', () => {
    const cache = new PeerIdentityCache(parseTrustDomain('example.org'), 2);
    const peers = ['a', 'b', 'c'].map((n) => peerFor(`spiffe://example.org/spire/agent/join_token/${n}`));
    const a = cache.resolve(peers[0]);
    cache.resolve(peers[1]);
    cache.resolve(peers[2]);
    expect(cache.size).toBe(2);
    expect(cache.resolve(peers[0])).not.toBe(a); // decoded again after eviction
    expect(cache.resolve(peers[0]).id.toString()).toBe(a.id.toString());
  });
});
