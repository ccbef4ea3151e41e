import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import type { AgentChanges, Datastore } from '../../src/identity-plane/server/datastore/types.js';
import { AgentCache } from '../../src/identity-plane/server/registration/agent-cache.js';

/** A datastore whose agent feed only counts its reads (each read is one query round trip). */
function countingFeed() {
  const feed = {
    reads: 0,
    listAgentsChangedSince: async (): Promise<AgentChanges> => {
      feed.reads++;
      await new Promise((r) => setTimeout(r, 1)); // a real read takes a while; callers pile up meanwhile
      return { revision: 1, changed: [], deletedIds: [], fullResync: false };
    },
  };
  return feed;
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('AgentCache refreshes for unknown callers', () => {
  it('serves a flood with one read per interval, shared by every caller', async () => {
    const clock = new FakeClock();
    const feed = countingFeed();
    const cache = new AgentCache(feed as unknown as Datastore, { clock, minUnknownRefreshIntervalMs: 1000 });
    await cache.refresh();
    expect(feed.reads).toBe(1);

    // 500 stale-serial calls right after a pull: all wait for one pull at the end of the interval.
    const flood = Array.from({ length: 500 }, () => cache.refreshForUnknown());
    await settle();
    expect(feed.reads).toBe(1);
    clock.advance(999);
    await settle();
    expect(feed.reads).toBe(1);
    clock.advance(1);
    await Promise.all(flood);
    expect(feed.reads).toBe(2);

    // The flood goes on for ten more intervals: at most one read per interval.
    for (let i = 0; i < 10; i++) {
      const wave = Array.from({ length: 100 }, () => cache.refreshForUnknown());
      clock.advance(1000);
      await Promise.all(wave);
    }
    expect(feed.reads).toBeLessThanOrEqual(2 + 10);
    expect(feed.reads).toBeGreaterThanOrEqual(2 + 9);
  });

  it('pulls at once for an unknown caller when no pull ran within the interval; later ones wait for the next', async () => {
    const clock = new FakeClock();
    const feed = countingFeed();
    const cache = new AgentCache(feed as unknown as Datastore, { clock, minUnknownRefreshIntervalMs: 1000 });
    await cache.refresh();
    clock.advance(5000);
    const first = cache.refreshForUnknown();
    const others = [cache.refreshForUnknown(), cache.refreshForUnknown()];
    await first;
    expect(feed.reads).toBe(2);
    clock.advance(1000);
    await Promise.all(others);
    expect(feed.reads).toBe(3);
  });
});
