// The bundle state digest and the agent's fetch tracker, on their own.
import { describe, expect, it } from 'vitest';
import { BundleFetchTracker, bundleStateDigest, type BundleStateInput } from '../../src/identity-plane/server-api/bundle-state.js';

const base: BundleStateInput = {
  ownDocumentSha256: Buffer.alloc(32, 7),
  taintedX509: [Buffer.from('der-1')],
  taintedJwtKeyIds: ['k1', 'k2'],
  federated: [{ trustDomain: 'a.example', sequence: 3n, updatedAtMs: 1000 }, { trustDomain: 'b.example', sequence: 1n, updatedAtMs: 2000 }],
};

describe('bundleStateDigest', () => {
  it('is a SHA-256 that moves with every input and not with the order of sets', () => {
    const d = bundleStateDigest(base);
    expect(d.length).toBe(32);
    expect(bundleStateDigest({ ...base, federated: [...base.federated].reverse(), taintedJwtKeyIds: ['k2', 'k1'] }).equals(d)).toBe(true);
    const variants: BundleStateInput[] = [
      { ...base, ownDocumentSha256: Buffer.alloc(32, 8) },
      { ...base, taintedX509: [] },
      { ...base, taintedX509: [Buffer.from('der-2')] },
      { ...base, taintedJwtKeyIds: ['k1'] },
      { ...base, federated: [{ trustDomain: 'a.example', sequence: 4n, updatedAtMs: 1000 }] },
      { ...base, federated: [...base.federated].map((f, i) => (i === 0 ? { ...f, updatedAtMs: 1001 } : f)) },
      { ...base, federated: [] },
      // Framing: moving bytes between neighbouring fields must not collide.
      { ...base, taintedJwtKeyIds: ['k1k2'] },
    ];
    const seen = new Set([d.toString('hex')]);
    for (const v of variants) seen.add(bundleStateDigest(v).toString('hex'));
    expect(seen.size).toBe(variants.length + 1);
  });
});

describe('BundleFetchTracker', () => {
  it('is stale until a fetch under the answered state, for the same trust domains in any order', () => {
    const t = new BundleFetchTracker();
    const s = Buffer.alloc(32, 1);
    expect(t.stale(s, [])).toBe(true);
    t.fetched(s, ['b', 'a']);
    expect(t.stale(Buffer.from(s), ['a', 'b'])).toBe(false);
    expect(t.stale(Buffer.alloc(32, 2), ['a', 'b'])).toBe(true);
    expect(t.stale(s, ['a'])).toBe(true);
    expect(t.stale(undefined, ['a', 'b']), 'a server without the field').toBe(true);
    expect(t.stale(Buffer.alloc(0), ['a', 'b'])).toBe(true);
  });
});
