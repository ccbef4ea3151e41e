// Registration rules in-process: entry validation edge cases, which entries an agent is
// authorized for (node aliases, nesting, cycles, expiry on a fake clock), and the entry and agent
// caches following the datastore's change feed (SQLite in a temporary directory).
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { openDatastore } from '../../src/identity-plane/server/datastore/index.js';
import type { Datastore } from '../../src/identity-plane/server/datastore/types.js';
import { AgentCache } from '../../src/identity-plane/server/registration/agent-cache.js';
import { authorizedEntries, type AuthorizableEntry } from '../../src/identity-plane/server/registration/authorized.js';
import { EntryCache } from '../../src/identity-plane/server/registration/entry-cache.js';
import { MAX_HINT_BYTES, parseSelector, validateEntry, type EntryFields } from '../../src/identity-plane/server/registration/validate.js';
import { MAX_SPIFFE_ID_BYTES, mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { codeOf } from '../support/errors.js';
import { newAgent, newEntry } from '../datastore/fixtures.js';
import { removeDir, tempDir } from '../support/server.js';

const limits = { trustDomain: mustTrustDomain('example.org'), maxSvidTtlSeconds: 86_400, hasFederatedBundle: (td: string) => td === 'partner.org' };
const fields = (over: Partial<EntryFields> = {}): EntryFields => ({
  spiffeId: 'spiffe://example.org/web', parentId: 'spiffe://example.org/spire/agent/join_token/t', selectors: [{ type: 'unix', value: 'uid:1000' }],
  x509SvidTtl: 0, jwtSvidTtl: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false, expiresAt: 0, hint: '', ...over,
});
const check = (over: Partial<EntryFields>) => codeOf(() => validateEntry(fields(over), limits));

describe('entry validation', () => {
  it('accepts a plain entry and the documented edges', () => {
    expect(check({})).toBeUndefined();
    expect(check({ x509SvidTtl: 86_400, jwtSvidTtl: 86_400, dnsNames: ['*.web.example.org', 'a'.repeat(63) + '.org'], federatesWith: ['partner.org'], hint: 'é'.repeat(MAX_HINT_BYTES / 2) })).toBeUndefined();
    // A path that merely starts with "spire" is not the reserved namespace.
    expect(check({ spiffeId: 'spiffe://example.org/spireish' })).toBeUndefined();
  });

  it.each([
    ['the trust domain ID itself', { spiffeId: 'spiffe://example.org' }, 'invalid-spiffe-id'],
    ['the reserved /spire namespace', { spiffeId: 'spiffe://example.org/spire/agent/x' }, 'invalid-spiffe-id'],
    ['/spire itself', { spiffeId: 'spiffe://example.org/spire' }, 'invalid-spiffe-id'],
    ['another trust domain', { spiffeId: 'spiffe://other.org/web' }, 'invalid-spiffe-id'],
    ['a parent in another trust domain', { parentId: 'spiffe://other.org/agent' }, 'invalid-spiffe-id'],
    ['not a SPIFFE ID', { spiffeId: 'https://example.org/web' }, 'invalid-spiffe-id'],
    ['an oversized ID', { spiffeId: `spiffe://example.org/${'a'.repeat(MAX_SPIFFE_ID_BYTES)}` }, 'id-too-long'],
    ['no selector', { selectors: [] }, 'usage'],
    ['an uppercase selector type', { selectors: [{ type: 'Unix', value: 'uid:1' }] }, 'usage'],
    ['an empty selector value', { selectors: [{ type: 'unix', value: '' }] }, 'usage'],
    ['a TTL past the maximum', { x509SvidTtl: 86_401 }, 'ttl-invalid'],
    ['a negative TTL', { jwtSvidTtl: -1 }, 'ttl-invalid'],
    ['a fractional TTL', { x509SvidTtl: 1.5 }, 'ttl-invalid'],
    ['a DNS label over 63 characters', { dnsNames: [`${'a'.repeat(64)}.org`] }, 'usage'],
    ['a DNS label ending in a hyphen', { dnsNames: ['web-.org'] }, 'usage'],
    ['a wildcard inside a label', { dnsNames: ['w*b.org'] }, 'usage'],
    ['its own trust domain as federated', { federatesWith: ['example.org'] }, 'usage'],
    ['a trust domain with no known bundle', { federatesWith: ['stranger.org'] }, 'usage'],
    ['a federated name that is no trust domain', { federatesWith: ['Not A Domain'] }, 'usage'],
    ['an oversized federated trust domain', { federatesWith: [`${'a'.repeat(300)}.org`] }, 'id-too-long'],
    ['a negative expiry', { expiresAt: -1 }, 'usage'],
    ['a hint one byte over the limit (multi-byte characters counted as bytes)', { hint: `${'é'.repeat(MAX_HINT_BYTES / 2)}x` }, 'usage'],
  ])('refuses %s', (_what, over, code) => {
    expect(check(over as Partial<EntryFields>)).toBe(code);
  });

  it('never echoes an oversized ID into the message', () => {
    const huge = `spiffe://example.org/${'secret'.repeat(500)}`;
    try {
      validateEntry(fields({ spiffeId: huge }), limits);
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('secretsecret');
      expect((err as Error).message).toMatch(/spiffe_id is \d+ bytes/);
    }
  });

  it('splits a selector at its first colon only', () => {
    expect(parseSelector('unix:path:/usr/bin/x')).toEqual({ type: 'unix', value: 'path:/usr/bin/x' });
    for (const bad of ['unix', ':uid', 'unix:']) expect(codeOf(() => parseSelector(bad)), bad).toBe('usage');
  });
});

describe('authorized entries', () => {
  const SERVER = 'spiffe://example.org/spire/server';
  const AGENT = 'spiffe://example.org/spire/agent/join_token/a';
  const e = (id: string, parentId: string, selectors: string[] = [], expiresAt: Date | null = null): AuthorizableEntry =>
    ({ id, spiffeId: `spiffe://example.org/${id}`, parentId, selectors: selectors.map((s) => ({ type: s.split(':')[0], value: s.slice(s.indexOf(':') + 1) })), expiresAt });

  it('includes the agent\'s children and what hangs under the aliases its node selectors cover, nested, each once', () => {
    const clock = new FakeClock();
    const entries = [
      e('child', AGENT),
      e('alias', SERVER, ['join_token:a']),
      e('alias-strict', SERVER, ['join_token:a', 'region:eu']),
      e('under-alias', 'spiffe://example.org/alias'),
      e('nested', 'spiffe://example.org/under-alias'),
      e('other-agent', 'spiffe://example.org/spire/agent/join_token/b'),
      // A cycle must neither loop nor duplicate.
      e('loop-a', 'spiffe://example.org/loop-b'),
      e('loop-b', 'spiffe://example.org/child'),
      e('child', 'spiffe://example.org/loop-a'),
    ].map((x, i) => ({ ...x, id: `${x.id}#${i}` }));
    const ids = authorizedEntries(AGENT, [{ type: 'join_token', value: 'a' }], SERVER, entries, clock.nowMs()).map((x) => x.id.split('#')[0]).sort();
    // The alias itself is not an identity of the agent: only what hangs under it is.
    expect(ids).toEqual(['child', 'child', 'loop-a', 'loop-b', 'nested', 'under-alias']);
  });

  it('leaves out an entry from its expiry on, and with it what only it reached', () => {
    const clock = new FakeClock();
    const entries = [e('parent', AGENT, [], new Date(clock.nowMs() + 1000)), e('grandchild', 'spiffe://example.org/parent')];
    expect(authorizedEntries(AGENT, [], SERVER, entries, clock.nowMs()).map((x) => x.id)).toEqual(['parent', 'grandchild']);
    clock.advance(999);
    expect(authorizedEntries(AGENT, [], SERVER, entries, clock.nowMs())).toHaveLength(2);
    clock.advance(1);
    expect(authorizedEntries(AGENT, [], SERVER, entries, clock.nowMs())).toEqual([]);
  });
});

describe('entry and agent caches', () => {
  let ds: Datastore;
  let dir: string;
  afterEach(async () => {
    await ds?.close();
    if (dir) removeDir(dir);
  });
  const open = async () => {
    dir = tempDir('registration');
    ds = await openDatastore({ kind: 'sqlite', path: path.join(dir, 'datastore.sqlite3') });
  };

  it('the entry cache sees creates and deletes only after a refresh, and authorizes from its index', async () => {
    await open();
    const clock = new FakeClock();
    const cache = new EntryCache(ds, 'spiffe://example.org/spire/server');
    const agent = 'spiffe://example.org/spire/agent/join_token/abc';
    const web = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/web', parentId: agent }), clock.now());
    expect(cache.authorizedFor(agent, [], clock.nowMs())).toEqual([]);
    await cache.refresh();
    expect(cache.authorizedFor(agent, [], clock.nowMs()).map((x) => x.id)).toEqual([web.id]);
    const revision = cache.currentRevision;
    await ds.deleteEntry(web.id);
    expect(cache.size).toBe(1);
    await cache.refresh();
    expect(cache.size).toBe(0);
    expect(cache.currentRevision).toBeGreaterThan(revision);
    expect(cache.authorizedFor(agent, [], clock.nowMs())).toEqual([]);
  });

  it('the agent cache counts banned agents and forgets a deleted one; concurrent refreshes see a write made before they were called', async () => {
    await open();
    const clock = new FakeClock();
    const cache = new AgentCache(ds);
    await ds.createAgent(newAgent({ spiffeId: 'spiffe://example.org/spire/agent/join_token/a' }), clock.now());
    await ds.createAgent(newAgent({ spiffeId: 'spiffe://example.org/spire/agent/join_token/b' }), clock.now());
    await cache.refresh();
    expect(cache.counts()).toEqual({ active: 2, banned: 0 });
    await ds.setAgentBanned('spiffe://example.org/spire/agent/join_token/b', true, clock.now());
    const first = cache.refresh();
    await ds.deleteAgent('spiffe://example.org/spire/agent/join_token/a');
    const second = cache.refresh();
    await Promise.all([first, second]);
    expect(cache.get('spiffe://example.org/spire/agent/join_token/a')).toBeUndefined();
    expect(cache.counts()).toEqual({ active: 0, banned: 1 });
  });
});
