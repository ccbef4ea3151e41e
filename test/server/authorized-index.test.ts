import { describe, expect, it } from 'vitest';
import { authorizedEntries, type AuthorizableEntry } from '../../src/identity-plane/server/registration/authorized.js';
import { AuthorizationIndex } from '../../src/identity-plane/server/registration/authorized-index.js';
import { seededRandom } from '../support/prng.js';

// Property test: the incrementally maintained index must give exactly the set the original
// full computation (`authorizedEntries`, kept as the oracle) gives, after every change of a
// randomized entry graph with nested parents, node aliases, expiry, re-parenting and deletes.

const SERVER = 'spiffe://example.org/spire/server';
const NOW = 1_700_000_000_000;

const rng = seededRandom;

const AGENTS = ['a0', 'a1', 'a2', 'a3'].map((a) => `spiffe://example.org/spire/agent/${a}`);
const SELECTORS = ['k:1', 'k:2', 'k:3', 'zone:x'].map((s) => ({ type: s.split(':')[0]!, value: s.split(':')[1]! }));

function randomEntry(r: () => number, id: string): AuthorizableEntry {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const workloadIds = Array.from({ length: 12 }, (_, i) => `spiffe://example.org/w${i}`);
  const aliasIds = ['spiffe://example.org/node/n0', 'spiffe://example.org/node/n1', 'spiffe://example.org/node/n2'];
  const roll = r();
  const isAlias = roll < 0.15;
  const parentId = isAlias ? SERVER : pick([...AGENTS, ...aliasIds, ...workloadIds]);
  const spiffeId = isAlias ? pick(aliasIds) : pick(workloadIds);
  const selectors = SELECTORS.filter(() => r() < 0.35);
  const expiry = r();
  const expiresAt = expiry < 0.1 ? new Date(NOW - 1000) : expiry < 0.2 ? new Date(NOW + 1000) : expiry < 0.25 ? new Date(NOW) : null;
  return { id, spiffeId, parentId, selectors, expiresAt };
}

const ids = (xs: readonly AuthorizableEntry[]): string[] => xs.map((e) => e.id).sort();

/** reachedFrom's walk over a plain scan of every entry: the oracle for the index's by-SPIFFE-ID groups. */
function reachedByScan(entry: AuthorizableEntry, all: readonly AuthorizableEntry[]): { parentIds: string[]; aliases: string[] } {
  const parentIds = new Set<string>();
  const aliases: AuthorizableEntry[] = [];
  const seen = new Set([entry.id]);
  const stack = [entry];
  while (stack.length > 0) {
    const e = stack.pop()!;
    if (e.parentId === SERVER) {
      aliases.push(e);
      continue;
    }
    if (parentIds.has(e.parentId)) continue;
    parentIds.add(e.parentId);
    for (const up of all) {
      if (up.spiffeId !== e.parentId || seen.has(up.id)) continue;
      seen.add(up.id);
      stack.push(up);
    }
  }
  return { parentIds: [...parentIds].sort(), aliases: ids(aliases) };
}

describe('AuthorizationIndex', () => {
  it('matches the full computation on randomized entry graphs after every change', () => {
    let checks = 0;
    let nonEmpty = 0;
    let deepWalks = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed);
      const all = new Map<string, AuthorizableEntry>();
      const index = new AuthorizationIndex<AuthorizableEntry>(SERVER);
      for (let step = 0; step < 80; step++) {
        const op = r();
        if (op < 0.6 || all.size === 0) {
          const e = randomEntry(r, `e${Math.floor(r() * 40)}`); // reuses ids: updates, re-parenting
          all.set(e.id, e);
          index.upsert(e);
        } else {
          const victim = [...all.keys()][Math.floor(r() * all.size)]!;
          all.delete(victim);
          index.delete(victim);
        }
        for (const agent of AGENTS) {
          const nodeSelectors = SELECTORS.filter(() => r() < 0.5);
          const expected = authorizedEntries(agent, nodeSelectors, SERVER, [...all.values()], NOW);
          expect(ids(index.authorized(agent, nodeSelectors, NOW)), `seed ${seed} step ${step} ${agent}`).toEqual(ids(expected));
          checks++;
          if (expected.length > 0) nonEmpty++;
        }
        // Entries sharing a SPIFFE ID come and go (12 IDs over 40 entry ids), so the walk up runs
        // over groups that grow from one entry, shrink back to one and vanish.
        for (const e of all.values()) {
          const got = index.reachedFrom(e);
          expect({ parentIds: [...got.parentIds].sort(), aliases: ids(got.aliases) }, `seed ${seed} step ${step} ${e.id}`).toEqual(reachedByScan(e, [...all.values()]));
          if (got.parentIds.size > 1) deepWalks++;
        }
      }
      expect(index.size).toBe(all.size);
    }
    // Guard against a generator that only ever produces empty sets (which would prove nothing).
    expect(nonEmpty).toBeGreaterThan(checks / 4);
    expect(deepWalks).toBeGreaterThan(checks / 4);
  });

  it('drops an entry and its descendants when it is deleted, and keeps siblings', () => {
    const index = new AuthorizationIndex<AuthorizableEntry>(SERVER);
    const agent = AGENTS[0]!;
    index.upsert({ id: 'p', spiffeId: 'spiffe://example.org/p', parentId: agent, selectors: [], expiresAt: null });
    index.upsert({ id: 'c', spiffeId: 'spiffe://example.org/c', parentId: 'spiffe://example.org/p', selectors: [], expiresAt: null });
    index.upsert({ id: 's', spiffeId: 'spiffe://example.org/s', parentId: agent, selectors: [], expiresAt: null });
    expect(ids(index.authorized(agent, [], NOW))).toEqual(['c', 'p', 's']);
    index.delete('p');
    expect(ids(index.authorized(agent, [], NOW))).toEqual(['s']);
  });
});
