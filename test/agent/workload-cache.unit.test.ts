// The agent's WorkloadCache on a fake clock: the selector index (subset match, oldest entry first),
// never serving an SVID past its notAfter, the expiry timer that tells streams so, and bundles.
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { WorkloadCache, type CachedX509Svid } from '../../src/identity-plane/agent/manager/cache.js';
import { createSpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import type { EntryMsg } from '../../src/identity-plane/server-api/messages.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

const MIN = 60_000;

function entry(id: string, selectors: string[], createdAt = 1, extra: Partial<EntryMsg> = {}): EntryMsg {
  return {
    id, spiffe_id: `spiffe://example.org/${id}`, parent_id: 'spiffe://example.org/agent', selectors: selectors.map((s) => ({ type: s.split(':')[0], value: s.slice(s.indexOf(':') + 1) })),
    x509_svid_ttl: 0, federates_with: [], admin: false, downstream: false, expires_at: '0', dns_names: [], revision_number: '1', jwt_svid_ttl: 0, hint: '', created_at: String(createdAt), ...extra,
  };
}

function svid(entryId: string, clock: FakeClock, lifetimeMs: number): CachedX509Svid {
  return { entryId, spiffeId: `spiffe://example.org/${entryId}`, chain: [Buffer.from(entryId)], keyDer: Buffer.alloc(0), notBefore: clock.nowMs(), notAfter: clock.nowMs() + lifetimeMs, entryRevision: '1', hint: '', authorityIds: [] };
}

const sel = (...s: string[]) => s.map((x) => ({ type: x.split(':')[0], value: x.slice(x.indexOf(':') + 1) }));

describe('WorkloadCache selector index', () => {
  it('matches entries whose selectors are all among the caller\'s, oldest entry first', () => {
    const cache = new WorkloadCache(new FakeClock());
    cache.setEntries([
      entry('web', ['unix:uid:1000'], 20),
      entry('web-strict', ['unix:uid:1000', 'unix:gid:50'], 10),
      entry('db', ['unix:uid:2000'], 5),
      // The value holds a colon: the index key is type and the whole value.
      entry('path', ['unix:path:/usr/bin/web'], 30),
    ]);
    expect(cache.identitiesFor(sel('unix:uid:1000')).entries.map((e) => e.id)).toEqual(['web']);
    expect(cache.identitiesFor(sel('unix:uid:1000', 'unix:gid:50', 'unix:path:/usr/bin/web')).entries.map((e) => e.id)).toEqual(['web-strict', 'web', 'path']);
    expect(cache.identitiesFor(sel('unix:gid:50')).entries).toEqual([]);
    expect(cache.identitiesFor(sel('unix:uid:3000')).entries).toEqual([]);
    expect(cache.identitiesFor([]).entries).toEqual([]);
  });

  it('rebuilds the index on every entry set: a removed entry no longer matches, and its SVID is dropped', () => {
    const clock = new FakeClock();
    const cache = new WorkloadCache(clock);
    cache.setEntries([entry('a', ['unix:uid:1']), entry('b', ['unix:uid:1'], 2)]);
    cache.putSvids([svid('a', clock, 10 * MIN), svid('b', clock, 10 * MIN)]);
    expect(cache.identitiesFor(sel('unix:uid:1')).svids.map((s) => s.entryId)).toEqual(['a', 'b']);
    cache.setEntries([entry('b', ['unix:uid:2'], 2)]);
    expect(cache.identitiesFor(sel('unix:uid:1')).entries).toEqual([]);
    expect(cache.identitiesFor(sel('unix:uid:2')).svids.map((s) => s.entryId)).toEqual(['b']);
    expect(cache.svidFor('a')).toBeUndefined();
    expect(cache.svidCount).toBe(1);
  });

  it('tells whether entries were ever received: an empty set is known, no set is not', () => {
    const cache = new WorkloadCache(new FakeClock());
    expect(cache.entriesKnown).toBe(false);
    cache.setEntries([]);
    expect(cache.entriesKnown).toBe(true);
  });
});

describe('WorkloadCache expiry', () => {
  it('never hands out an SVID at or after its notAfter, and wakes subscribers just after it passes', () => {
    const clock = new FakeClock();
    const cache = new WorkloadCache(clock);
    let changes = 0;
    cache.subscribe(() => changes++);
    cache.setEntries([entry('short', ['unix:uid:1']), entry('long', ['unix:uid:1'], 2)]);
    cache.putSvids([svid('short', clock, 5 * MIN), svid('long', clock, 60 * MIN)]);
    const seen = changes;
    clock.advance(5 * MIN - 1);
    expect(changes).toBe(seen);
    expect(cache.identitiesFor(sel('unix:uid:1')).svids.map((s) => s.entryId)).toEqual(['short', 'long']);
    clock.advance(2);
    expect(changes).toBe(seen + 1);
    expect(cache.identitiesFor(sel('unix:uid:1')).svids.map((s) => s.entryId)).toEqual(['long']);
    // The timer moves on to the next expiry.
    clock.advance(55 * MIN);
    expect(changes).toBe(seen + 2);
    expect(cache.identitiesFor(sel('unix:uid:1')).svids).toEqual([]);
    // Nothing left to expire: no more wake-ups.
    clock.advance(24 * 60 * MIN);
    expect(changes).toBe(seen + 2);
    cache.close();
  });

  it('stops waking anyone once closed or unsubscribed', () => {
    const clock = new FakeClock();
    const cache = new WorkloadCache(clock);
    let changes = 0;
    const unsubscribe = cache.subscribe(() => changes++);
    cache.setEntries([entry('a', ['unix:uid:1'])]);
    expect(changes).toBe(1);
    unsubscribe();
    expect(cache.subscriberCount).toBe(0);
    cache.putSvids([svid('a', clock, MIN)]);
    clock.advance(2 * MIN);
    expect(changes).toBe(1);
  });
});

describe('WorkloadCache bundles', () => {
  const bundle = (td: string, seq: number) => createSpiffeBundle({ trustDomain: mustTrustDomain(td), sequenceNumber: seq });

  it('reports a change only when a sequence number moved, and gives each caller the federated bundles its entries name', () => {
    const cache = new WorkloadCache(new FakeClock());
    let changes = 0;
    cache.subscribe(() => changes++);
    expect(cache.setBundles(bundle('example.org', 1), new Map([['other.org', bundle('other.org', 1)]]))).toBe(true);
    expect(cache.setBundles(bundle('example.org', 1), new Map([['other.org', bundle('other.org', 1)]]))).toBe(false);
    expect(changes).toBe(1);
    expect(cache.setBundles(bundle('example.org', 1), new Map([['other.org', bundle('other.org', 2)]]))).toBe(true);
    expect(cache.setBundles(bundle('example.org', 2), new Map([['other.org', bundle('other.org', 2)]]))).toBe(true);
    expect(cache.ownBundle?.sequenceNumber).toBe(2n);
    cache.setEntries([entry('fed', ['unix:uid:1'], 1, { federates_with: ['other.org', 'unknown.org'] }), entry('plain', ['unix:uid:2'])]);
    expect([...cache.identitiesFor(sel('unix:uid:1')).federated.keys()]).toEqual(['other.org']);
    expect(cache.identitiesFor(sel('unix:uid:2')).federated.size).toBe(0);
  });
});
