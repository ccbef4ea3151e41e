// The bounded X509-SVID cache on a fake clock: past x509_svid_cache_max_size the least recently
// used SVIDs of entries nobody is subscribed to are dropped, a subscribed entry's never; a fetch
// of an entry without a cached SVID asks for a mint; a batch of SVIDs wakes only the streams
// whose caller holds one of them, once per batch.
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { WorkloadCache, type CachedX509Svid } from '../../src/identity-plane/agent/manager/cache.js';
import type { EntryMsg } from '../../src/identity-plane/server-api/messages.js';

const MIN = 60_000;

function entry(id: string, uid: number, createdAt = 1): EntryMsg {
  return {
    id, spiffe_id: `spiffe://example.org/${id}`, parent_id: 'spiffe://example.org/agent', selectors: [{ type: 'unix', value: `uid:${uid}` }],
    x509_svid_ttl: 0, federates_with: [], admin: false, downstream: false, expires_at: '0', dns_names: [], revision_number: '1', jwt_svid_ttl: 0, hint: '', created_at: String(createdAt),
  };
}

function svid(entryId: string, clock: FakeClock, tag = ''): CachedX509Svid {
  return { entryId, spiffeId: `spiffe://example.org/${entryId}`, chain: [Buffer.from(entryId + tag)], keyDer: Buffer.alloc(0), notBefore: clock.nowMs(), notAfter: clock.nowMs() + 60 * MIN, entryRevision: '1', hint: '', authorityIds: [] };
}

const uidSel = (uid: number) => [{ type: 'unix', value: `uid:${uid}` }];

function setup(maxSize: number, idleMs = 5 * MIN) {
  const clock = new FakeClock();
  const evicted: number[] = [];
  const wanted: string[][] = [];
  const cache = new WorkloadCache(clock, { maxSize, idleMs }, { evicted: (n) => evicted.push(n), wanted: (ids) => wanted.push(ids) });
  return { clock, cache, evicted, wanted };
}

describe('bounded X509-SVID cache', () => {
  it('evicts the least recently used unsubscribed SVIDs past the bound, never a subscribed one', () => {
    const { clock, cache, evicted } = setup(3, MIN);
    cache.setEntries([entry('a', 1), entry('b', 2), entry('c', 3), entry('d', 4), entry('e', 5)]);
    cache.putSvids([svid('a', clock), svid('b', clock), svid('c', clock)]);
    // a is used long ago, c recently; b never. A stream subscribes to d's caller.
    cache.identitiesFor(uidSel(1), { x509: true });
    clock.advance(10 * MIN);
    cache.identitiesFor(uidSel(3), { x509: true });
    const unsubscribe = cache.subscribe(() => {}, uidSel(4));
    clock.advance(10 * MIN);
    cache.putSvids([svid('d', clock), svid('e', clock)]);
    // Five held, bound three: b and e (never asked for) go first, then none more is needed; a
    // (asked for 20 min ago) and c (10 min ago) stay by recency order, d is subscribed.
    expect([...cache.allSvids()].map((s) => s.entryId).sort()).toEqual(['a', 'c', 'd']);
    expect(evicted).toEqual([2]);
    // One more past the bound: the least recently used of a and c goes (a), never d.
    cache.identitiesFor(uidSel(5), { x509: true });
    clock.advance(2 * MIN);
    cache.putSvids([svid('e', clock)]);
    expect([...cache.allSvids()].map((s) => s.entryId).sort()).toEqual(['c', 'd', 'e']);
    expect(evicted).toEqual([2, 1]);
    // Subscribed entries stay even when they alone exceed the bound.
    const more = [7, 8, 9].map((uid) => cache.subscribe(() => {}, uidSel(uid)));
    cache.setEntries([entry('d', 4), entry('g', 7), entry('h', 8), entry('i', 9)]);
    cache.putSvids([svid('g', clock), svid('h', clock), svid('i', clock)]);
    expect([...cache.allSvids()].map((s) => s.entryId).sort()).toEqual(['d', 'g', 'h', 'i']);
    // Once its stream closes, an entry counts as used until the idle time passes, then may go.
    unsubscribe();
    cache.enforceBound();
    expect(cache.svidFor('d')).toBeDefined();
    clock.advance(MIN + 1);
    expect(cache.enforceBound()).toBe(1);
    expect(cache.svidFor('d')).toBeUndefined();
    more.forEach((u) => u());
  });

  it('keeps SVIDs asked for within the idle time, and tells what has room and what is wanted', () => {
    const { clock, cache } = setup(2, 5 * MIN);
    cache.setEntries([entry('a', 1), entry('b', 2), entry('c', 3)]);
    expect(cache.svidRoom).toBe(2);
    cache.putSvids([svid('a', clock), svid('b', clock)]);
    expect(cache.svidRoom).toBe(0);
    cache.identitiesFor(uidSel(1), { x509: true });
    cache.identitiesFor(uidSel(2), { x509: true });
    // JWT and bundle lookups do not count as use.
    cache.identitiesFor(uidSel(3));
    expect([...cache.wantedEntryIds()].sort()).toEqual(['a', 'b']);
    cache.putSvids([svid('c', clock)]);
    // a and b were asked for recently: c, never asked for, is the one dropped.
    expect([...cache.allSvids()].map((s) => s.entryId).sort()).toEqual(['a', 'b']);
    clock.advance(5 * MIN + 1);
    expect(cache.wantedEntryIds().size).toBe(0);
    expect(new WorkloadCache(clock).svidRoom).toBe(Infinity);
  });

  it('asks for a mint when a workload fetches an entry without a cached SVID', () => {
    const { clock, cache, wanted } = setup(1);
    cache.setEntries([entry('a', 1), entry('b', 1, 2), entry('c', 2)]);
    cache.putSvids([svid('a', clock)]);
    expect(cache.identitiesFor(uidSel(1), { x509: true }).svids.map((s) => s.entryId)).toEqual(['a']);
    expect(wanted).toEqual([['b']]);
    cache.identitiesFor(uidSel(2));
    expect(wanted).toEqual([['b']]);
  });
});

describe('stream notifications per batch', () => {
  it('wakes each stream once per batch, only when the batch holds one of its SVIDs', () => {
    const { clock, cache } = setup(0);
    const entries = Array.from({ length: 100 }, (_, i) => entry(`e${i}`, i % 10, i));
    cache.setEntries(entries);
    const wakes = new Map<number, number>();
    for (let uid = 0; uid < 10; uid++) cache.subscribe(() => wakes.set(uid, (wakes.get(uid) ?? 0) + 1), uidSel(uid));
    let everything = 0;
    cache.subscribe(() => everything++);
    // A batch holding the SVIDs of uids 0–4 only (entries e0..e4, e10..e14, …).
    cache.putSvids(entries.filter((_, i) => i % 10 < 5).map((e) => svid(e.id, clock)));
    expect([...wakes.entries()].sort((a, b) => a[0] - b[0])).toEqual([[0, 1], [1, 1], [2, 1], [3, 1], [4, 1]]);
    expect(everything).toBe(1);
    cache.putSvids(entries.map((e) => svid(e.id, clock, 'r')));
    for (let uid = 0; uid < 10; uid++) expect(wakes.get(uid)).toBe(uid < 5 ? 2 : 1);
    // Each caller sees exactly its own ten SVIDs.
    for (let uid = 0; uid < 10; uid++) {
      expect(cache.identitiesFor(uidSel(uid)).svids.map((s) => s.entryId).sort()).toEqual(entries.filter((_, i) => i % 10 === uid).map((e) => e.id).sort());
    }
  });
});
