/**
 * The shared datastore suite (SPIRE `sqltest.Run`): every backend runs exactly these cases, so SQLite and
 * PostgreSQL cannot drift apart. `newStore` makes a fresh, empty store and returns an opener; each opener call
 * is a new handle on that same store, which is how reopen and two-server races are tested.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { latestSchemaVersion, type Datastore } from '../../src/identity-plane/server/datastore/index.js';
import { FakeClock } from '../../src/common/clock.js';
import { AgentCache } from '../../src/identity-plane/server/registration/agent-cache.js';
import { EntryCache } from '../../src/identity-plane/server/registration/entry-cache.js';
import { TombstonePruner } from '../../src/identity-plane/server/registration/tombstone-pruner.js';
import { at, expectCode, newAgent, newBundle, newCaKey, newEntry, T0 } from './fixtures.js';

export type StoreOpener = () => Promise<Datastore>;

export function runDatastoreSuite(name: string, newStore: () => Promise<StoreOpener>): void {
  describe(`datastore suite: ${name}`, () => {
    let open: StoreOpener;
    let ds: Datastore;
    const handles: Datastore[] = [];
    const handle = async () => {
      const h = await open();
      handles.push(h);
      return h;
    };

    beforeEach(async () => {
      open = await newStore();
      ds = await handle();
    });
    afterEach(async () => {
      await Promise.all(handles.splice(0).map((h) => h.close()));
    });

    describe('registration entries', () => {
      it('creates with a generated uuid, createdAtMs and a revision, and reads it back', async () => {
        const created = await ds.createEntry(newEntry({ dnsNames: ['a.example'], federatesWith: ['other.org'], admin: true, expiresAt: at(60), hint: 'h' }), T0);
        expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
        expect(created.createdAtMs).toBe(T0.getTime());
        expect(created.revision).toBeGreaterThan(0);
        expect(await ds.getEntry(created.id)).toEqual(created);
      });

      it('refuses a duplicate id and a similar entry (same spiffe id, parent id and selector set)', async () => {
        const selectors = [{ type: 'unix', value: 'uid:1' }, { type: 'unix', value: 'gid:2' }];
        await ds.createEntry(newEntry({ id: 'e1', selectors }), T0);
        await expectCode(ds.createEntry(newEntry({ id: 'e1', spiffeId: 'spiffe://example.org/other' }), T0), 'already-exists', /entry "e1" already exists/);
        await expectCode(ds.createEntry(newEntry({ selectors: [...selectors].reverse() }), T0), 'already-exists', /same spiffe id, parent id and selectors/);
      });

      it('refuses records the store cannot hold', async () => {
        await expectCode(ds.createEntry(newEntry({ selectors: [] }), T0), 'config-invalid', /at least one selector/);
        await expectCode(ds.createEntry(newEntry({ selectors: [{ type: 'a', value: 'b' }, { type: 'a', value: 'b' }] }), T0), 'config-invalid', /repeats selector "a:b"/);
        await expectCode(ds.createEntry(newEntry({ x509SvidTtl: -1 }), T0), 'config-invalid', /x509 svid ttl/);
        await expectCode(ds.createEntry(newEntry({ spiffeId: '' }), T0), 'config-invalid', /no spiffe id/);
      });

      it('reports a missing entry as not-found', async () => {
        await expectCode(ds.getEntry('nope'), 'not-found', /entry "nope" does not exist/);
        await expectCode(ds.updateEntry({ ...newEntry(), id: 'nope' }), 'not-found');
        await expectCode(ds.deleteEntry('nope'), 'not-found');
      });

      it('updates the whole record, keeps createdAtMs, bumps the revision and checks an expected revision', async () => {
        const created = await ds.createEntry(newEntry(), T0);
        const { createdAtMs: _c, revision: _r, ...rest } = created;
        const updated = await ds.updateEntry({ ...rest, selectors: [{ type: 'k8s', value: 'ns:prod' }], dnsNames: ['x'] }, { expectedRevision: created.revision });
        expect(updated.revision).toBeGreaterThan(created.revision);
        expect(updated.createdAtMs).toBe(T0.getTime());
        expect(await ds.getEntry(created.id)).toEqual(updated);
        await expectCode(ds.updateEntry(rest, { expectedRevision: created.revision }), 'entry-revision-conflict', new RegExp(`revision ${updated.revision}, not ${created.revision}`));
      });

      it('lists by parent id, spiffe id, selector subset and superset, and revision', async () => {
        const a = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/a', selectors: [{ type: 'unix', value: 'uid:1' }] }), T0);
        const b = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/b', selectors: [{ type: 'unix', value: 'uid:1' }, { type: 'unix', value: 'gid:1' }] }), T0);
        const c = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/c', parentId: 'spiffe://example.org/spire/server', selectors: [{ type: 'k8s', value: 'ns:x' }] }), T0);
        const ids = (list: { id: string }[]) => list.map((e) => e.id).sort();
        expect(ids(await ds.listEntries())).toEqual(ids([a, b, c]));
        expect(ids(await ds.listEntries({ parentId: 'spiffe://example.org/spire/server' }))).toEqual([c.id]);
        expect(ids(await ds.listEntries({ spiffeId: 'spiffe://example.org/b' }))).toEqual([b.id]);
        const workload = [{ type: 'unix', value: 'uid:1' }, { type: 'unix', value: 'pid:9' }];
        expect(ids(await ds.listEntries({ selectors: { selectors: workload, match: 'subset' } }))).toEqual([a.id]);
        const all = [...workload, { type: 'unix', value: 'gid:1' }];
        expect(ids(await ds.listEntries({ selectors: { selectors: all, match: 'subset' } }))).toEqual(ids([a, b]));
        expect(ids(await ds.listEntries({ selectors: { selectors: [{ type: 'unix', value: 'uid:1' }], match: 'superset' } }))).toEqual(ids([a, b]));
        expect(ids(await ds.listEntries({ selectors: { selectors: [{ type: 'unix', value: 'gid:1' }], match: 'superset' }, parentId: a.parentId }))).toEqual([b.id]);
        expect(ids(await ds.listEntries({ revisionSince: b.revision }))).toEqual([c.id]);
      });

      it('reports changes and tombstones since a revision, and forces a full resync past pruned tombstones', async () => {
        const a = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/a' }), T0);
        const start = (await ds.listEntriesChangedSince(0)).revision;
        expect(start).toBe(a.revision);
        const b = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/b' }), T0);
        await ds.deleteEntry(a.id);
        const delta = await ds.listEntriesChangedSince(start);
        expect(delta.fullResync).toBe(false);
        expect(delta.changed.map((e) => e.id)).toEqual([b.id]);
        expect(delta.deletedIds).toEqual([a.id]);
        expect(delta.revision).toBeGreaterThan(b.revision);
        expect(await ds.listEntriesChangedSince(delta.revision)).toEqual({ revision: delta.revision, changed: [], deletedIds: [], fullResync: false });

        expect(await ds.pruneEntryTombstones(delta.revision)).toBe(1);
        const old = await ds.listEntriesChangedSince(start);
        expect(old.fullResync).toBe(true);
        expect(old.changed.map((e) => e.id)).toEqual([b.id]);
        expect((await ds.listEntriesChangedSince(delta.revision + 100)).fullResync).toBe(true);
        expect((await ds.listEntriesChangedSince(delta.revision)).fullResync).toBe(false);
      });

      it('prunes expired entries and leaves tombstones for them', async () => {
        const old = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/old', expiresAt: at(10) }), T0);
        const keep = await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/keep', expiresAt: at(100) }), T0);
        await ds.createEntry(newEntry({ spiffeId: 'spiffe://example.org/forever' }), T0);
        expect(await ds.pruneEntries(at(50))).toEqual([old.id]);
        expect((await ds.listEntriesChangedSince(keep.revision)).deletedIds).toEqual([old.id]);
        expect(await ds.listEntries()).toHaveLength(2);
      });

      it('creates a batch in one call: per-entry refusals in their slots, the rest stored with revisions of their own', async () => {
        await ds.createEntry(newEntry({ id: 'taken', spiffeId: 'spiffe://example.org/taken' }), T0);
        const results = await ds.createEntries([
          newEntry({ id: 'b1', spiffeId: 'spiffe://example.org/b1' }),
          newEntry({ id: 'taken', spiffeId: 'spiffe://example.org/other' }), // id exists in the store
          newEntry({ spiffeId: 'spiffe://example.org/b1', id: 'b1-twin' }), // similar to b1, earlier in this batch
          newEntry({ spiffeId: 'spiffe://example.org/bad', selectors: [] }), // the store cannot hold it
          newEntry({ id: 'b2', spiffeId: 'spiffe://example.org/b2' }),
        ], T0);
        const codes = results.map((r) => ('entry' in r ? 'ok' : r.error.code));
        expect(codes).toEqual(['ok', 'already-exists', 'already-exists', 'config-invalid', 'ok']);
        const stored = results.flatMap((r) => ('entry' in r ? [r.entry] : []));
        expect(stored[1].revision).toBeGreaterThan(stored[0].revision);
        for (const e of stored) expect(await ds.getEntry(e.id)).toEqual(e);
        expect((await ds.listEntries()).map((e) => e.id).sort()).toEqual(['b1', 'b2', 'taken']);
        const feed = await ds.listEntriesChangedSince(stored[0].revision - 1);
        expect(feed.changed.map((e) => e.id).sort()).toEqual(['b1', 'b2']);
        expect(await ds.createEntries([newEntry({ spiffeId: 'spiffe://example.org/x', selectors: [] })], T0)).toMatchObject([{ error: { code: 'config-invalid' } }]);
      });

      it('gives concurrent writers on two handles distinct, increasing revisions', async () => {
        const other = await handle();
        const writes = Array.from({ length: 20 }, (_, i) => (i % 2 ? ds : other).createEntry(newEntry({ spiffeId: `spiffe://example.org/w${i}` }), T0));
        const created = await Promise.all(writes);
        expect(new Set(created.map((e) => e.revision)).size).toBe(20);
        const changes = await ds.listEntriesChangedSince(0);
        expect(changes.changed).toHaveLength(20);
        expect(changes.revision).toBe(Math.max(...created.map((e) => e.revision)));
      });
    });

    describe('attested agents', () => {
      it('creates, reads, updates, bans, lists and evicts', async () => {
        const agent = await ds.createAgent(newAgent(), T0);
        expect(agent).toMatchObject({ createdAt: T0, updatedAt: T0, banned: false });
        expect(await ds.getAgent(agent.spiffeId)).toEqual(agent);
        await expectCode(ds.createAgent(newAgent(), T0), 'already-exists', /agent ".*" already exists/);
        const renewed = await ds.updateAgent({ ...newAgent(), serialNumber: 'ff', expiresAt: at(7200) }, at(60));
        expect(renewed).toMatchObject({ serialNumber: 'ff', expiresAt: at(7200), createdAt: T0, updatedAt: at(60) });
        const other = await ds.createAgent(newAgent({ spiffeId: 'spiffe://example.org/spire/agent/x509pop/aa', attestationType: 'x509pop' }), T0);
        expect((await ds.setAgentBanned(other.spiffeId, true, at(5))).banned).toBe(true);
        expect((await ds.listAgents({ banned: true })).map((a) => a.spiffeId)).toEqual([other.spiffeId]);
        expect((await ds.listAgents({ attestationType: 'join_token' })).map((a) => a.spiffeId)).toEqual([agent.spiffeId]);
        expect((await ds.listAgents({ expiresBefore: at(3601) })).map((a) => a.spiffeId)).toEqual([other.spiffeId]);
        expect(await ds.listAgents()).toHaveLength(2);
        await ds.deleteAgent(agent.spiffeId);
        await expectCode(ds.getAgent(agent.spiffeId), 'not-found');
        await expectCode(ds.deleteAgent(agent.spiffeId), 'not-found');
        await expectCode(ds.updateAgent(newAgent(), T0), 'not-found');
        await expectCode(ds.setAgentBanned('spiffe://example.org/none', true, T0), 'not-found');
      });

      it('feeds agent changes by revision: creates, renewals, bans and evictions (tombstones), with full resync', async () => {
        const start = await ds.listAgentsChangedSince(0);
        expect(start).toMatchObject({ changed: [], deletedIds: [], fullResync: false });
        const a = await ds.createAgent(newAgent(), T0);
        const b = await ds.createAgent(newAgent({ spiffeId: 'spiffe://example.org/spire/agent/join_token/b' }), T0);
        expect(b.revision).toBeGreaterThan(a.revision);
        const afterCreate = await ds.listAgentsChangedSince(start.revision);
        expect(afterCreate.changed.map((x) => x.spiffeId).sort()).toEqual([a.spiffeId, b.spiffeId].sort());
        expect(afterCreate.revision).toBe(b.revision);
        const banned = await ds.setAgentBanned(b.spiffeId, true, at(1));
        expect(banned.revision).toBeGreaterThan(b.revision);
        const renewed = await ds.updateAgent({ ...a, serialNumber: 'ff' }, at(2));
        const delta = await ds.listAgentsChangedSince(afterCreate.revision);
        // In the order the changes were made (revision order: the feed's index serves the range and the order).
        expect(delta.changed.map((x) => [x.spiffeId, x.serialNumber, x.banned])).toEqual([[b.spiffeId, b.serialNumber, true], [a.spiffeId, 'ff', false]]);
        expect(delta.revision).toBe(renewed.revision);
        await ds.deleteAgent(b.spiffeId);
        const evicted = await ds.listAgentsChangedSince(delta.revision);
        expect(evicted).toMatchObject({ changed: [], deletedIds: [b.spiffeId], fullResync: false });
        await expectCode(ds.deleteAgent(b.spiffeId), 'not-found');
        expect((await ds.listAgentsChangedSince(evicted.revision)).changed).toEqual([]); // a failed write moves nothing
        // The same ID attesting again is live: no tombstone left for it.
        await ds.createAgent(newAgent({ spiffeId: b.spiffeId }), at(3));
        const back = await ds.listAgentsChangedSince(delta.revision);
        expect(back.deletedIds).toEqual([]);
        expect(back.changed.map((x) => x.spiffeId)).toEqual([b.spiffeId]);
        // Behind the pruned tombstones or ahead of the store: start over from the full set.
        await ds.pruneAgentTombstones(back.revision);
        expect(await ds.listAgentsChangedSince(delta.revision)).toMatchObject({ fullResync: true });
        expect((await ds.listAgentsChangedSince(back.revision + 100)).changed).toHaveLength(2);
        expect((await ds.listAgentsChangedSince(back.revision)).fullResync).toBe(false);
      });

      it('prunes agent and entry tombstones once older than the retention, on the schedule of the server tick', async () => {
        const clock = new FakeClock(T0);
        const agents = new AgentCache(ds, { clock });
        const entries = new EntryCache(ds, 'spiffe://example.org/spire/server');
        const pruner = new TombstonePruner({ datastore: ds, clock, retentionSeconds: 3600, revisions: () => ({ entries: entries.currentRevision, agents: agents.currentRevision }) });
        const tick = async () => {
          await entries.refresh();
          await agents.refresh();
          return pruner.run();
        };
        const gone = await ds.createAgent(newAgent({ spiffeId: 'spiffe://example.org/spire/agent/join_token/gone' }), T0);
        const entry = await ds.createEntry(newEntry(), T0);
        await ds.deleteAgent(gone.spiffeId);
        await ds.deleteEntry(entry.id);
        const before = (await ds.listAgentsChangedSince(gone.revision)).revision;
        expect(await tick()).toEqual({ entries: 0, agents: 0 }); // seen now, not old enough
        clock.advance(3599_000);
        expect(await tick()).toEqual({ entries: 0, agents: 0 });
        // A reader that pulled just before the deletion still gets them as tombstones.
        expect((await ds.listAgentsChangedSince(gone.revision)).deletedIds).toEqual([gone.spiffeId]);
        const later = await ds.createAgent(newAgent({ spiffeId: 'spiffe://example.org/spire/agent/join_token/later' }), at(3599));
        await ds.deleteAgent(later.spiffeId); // a newer tombstone, not yet due
        clock.advance(1000);
        expect(await tick()).toEqual({ entries: 1, agents: 1 });
        expect(await tick()).toEqual({ entries: 0, agents: 0 }); // nothing twice
        // That reader is now behind the pruned tombstones: it must reload the full set, and the newer tombstone stays.
        expect(await ds.listAgentsChangedSince(gone.revision)).toMatchObject({ fullResync: true });
        expect((await ds.listAgentsChangedSince(before)).deletedIds).toEqual([later.spiffeId]);
        clock.advance(3600_000);
        expect((await tick()).agents).toBe(1);
        expect(await ds.listAgentsChangedSince(before)).toMatchObject({ fullResync: true });
      });

      it('keeps the serial a renewal replaced, with its deadline, until the next update clears it', async () => {
        const agent = await ds.createAgent(newAgent(), T0);
        expect(agent).toMatchObject({ previousSerialNumber: '', previousSerialValidUntil: new Date(0) });
        const renewed = await ds.updateAgent({ ...agent, serialNumber: 'ff', previousSerialNumber: agent.serialNumber, previousSerialValidUntil: at(90) }, at(60));
        expect(renewed).toMatchObject({ serialNumber: 'ff', previousSerialNumber: agent.serialNumber, previousSerialValidUntil: at(90) });
        expect(await ds.getAgent(agent.spiffeId)).toEqual(renewed);
        // Banning keeps the serials (the ban refuses every one of them anyway).
        expect(await ds.setAgentBanned(agent.spiffeId, true, at(61))).toMatchObject({ serialNumber: 'ff', previousSerialNumber: agent.serialNumber });
        const reattested = await ds.updateAgent({ ...newAgent(), serialNumber: '0100', banned: false }, at(70));
        expect(reattested).toMatchObject({ serialNumber: '0100', previousSerialNumber: '', previousSerialValidUntil: new Date(0) });
      });
    });

    describe('join tokens', () => {
      it('consumes a token once, burns an expired one and prunes', async () => {
        await ds.createJoinToken({ token: 't1', expiresAt: at(600) });
        await expectCode(ds.createJoinToken({ token: 't1', expiresAt: at(600) }), 'already-exists');
        expect(await ds.consumeJoinToken('t1', at(1))).toEqual({ outcome: 'consumed', token: { token: 't1', expiresAt: at(600) } });
        expect(await ds.consumeJoinToken('t1', at(2))).toEqual({ outcome: 'unknown' });
        await ds.createJoinToken({ token: 't2', expiresAt: at(10) });
        expect((await ds.consumeJoinToken('t2', at(10))).outcome).toBe('expired');
        expect((await ds.consumeJoinToken('t2', at(0))).outcome).toBe('unknown');
        await ds.createJoinToken({ token: 't3', expiresAt: at(10) });
        await ds.createJoinToken({ token: 't4', expiresAt: at(100) });
        expect(await ds.pruneJoinTokens(at(50))).toBe(1);
        expect((await ds.consumeJoinToken('t4', at(50))).outcome).toBe('consumed');
      });

      it('spends a token and stores the agent it attests in one transaction: new, again, refused, expired, a mint that fails', async () => {
        const id = 'spiffe://example.org/spire/agent/join_token/a1';
        const record = (serialNumber: string) => ({ ...newAgent(), spiffeId: id, serialNumber });
        await ds.createJoinToken({ token: 'a1', expiresAt: at(600) });
        const first = await ds.consumeJoinTokenForAgent('a1', id, at(1), (existing) => {
          expect(existing).toBeUndefined();
          return record('01');
        });
        expect(first.consumption.outcome).toBe('consumed');
        expect(first.stored).toMatchObject({ spiffeId: id, serialNumber: '01' });
        expect(await ds.getAgent(id)).toMatchObject({ serialNumber: '01' });
        // The same agent ID with a new token: admit sees the record, and the update replaces it.
        await ds.createJoinToken({ token: 'a1', expiresAt: at(600) });
        const again = await ds.consumeJoinTokenForAgent('a1', id, at(2), (existing) => {
          expect(existing).toMatchObject({ serialNumber: '01' });
          return record('02');
        });
        expect(again.stored).toMatchObject({ serialNumber: '02' });
        // Refused (a banned agent): the token is spent, the record untouched.
        await ds.createJoinToken({ token: 'a1', expiresAt: at(600) });
        const refused = await ds.consumeJoinTokenForAgent('a1', id, at(3), () => undefined);
        expect([refused.consumption.outcome, refused.stored]).toEqual(['consumed', undefined]);
        expect((await ds.consumeJoinToken('a1', at(4))).outcome).toBe('unknown');
        expect(await ds.getAgent(id)).toMatchObject({ serialNumber: '02' });
        // Expired or unknown: spent as consumeJoinToken spends it, and admit never runs.
        await ds.createJoinToken({ token: 'a1', expiresAt: at(10) });
        const never = () => {
          throw new Error('admit ran');
        };
        expect((await ds.consumeJoinTokenForAgent('a1', id, at(10), never)).consumption.outcome).toBe('expired');
        expect((await ds.consumeJoinTokenForAgent('a1', id, at(11), never)).consumption.outcome).toBe('unknown');
        // A mint that throws inside the transaction rolls it back: the token stays, the record too.
        await ds.createJoinToken({ token: 'a1', expiresAt: at(600) });
        await expect(ds.consumeJoinTokenForAgent('a1', id, at(12), () => {
          throw new Error('mint failed');
        })).rejects.toThrow(/mint failed/);
        expect((await ds.consumeJoinToken('a1', at(13))).outcome).toBe('consumed');
        expect(await ds.getAgent(id)).toMatchObject({ serialNumber: '02' });
      });

      it('lets exactly one of two concurrent consumers win', async () => {
        const other = await handle();
        for (let i = 0; i < 10; i++) {
          await ds.createJoinToken({ token: `race-${i}`, expiresAt: at(600) });
          const results = await Promise.all([ds.consumeJoinToken(`race-${i}`, T0), other.consumeJoinToken(`race-${i}`, T0)]);
          expect(results.map((r) => r.outcome).sort()).toEqual(['consumed', 'unknown']);
        }
      });
    });

    describe('bundles', () => {
      it('sets, reads, lists and deletes, refusing a lower sequence', async () => {
        await expectCode(ds.getBundle('example.org'), 'not-found', /bundle for "example.org" does not exist/);
        await ds.setBundle(newBundle('example.org', 1n));
        await ds.setBundle(newBundle('example.org', 2n, '{"v":2}'));
        await ds.setBundle(newBundle('example.org', 2n, '{"v":"2b"}'));
        await expectCode(ds.setBundle(newBundle('example.org', 1n)), 'bundle-sequence-regressed', /sequence 1, lower than the stored 2/);
        expect((await ds.getBundle('example.org')).document.toString()).toBe('{"v":"2b"}');
        const big = 2n ** 62n + 7n;
        await ds.setBundle(newBundle('federated.org', big));
        expect((await ds.getBundle('federated.org')).sequence).toBe(big);
        await expectCode(ds.setBundle(newBundle('x.org', -1n)), 'config-invalid');
        expect((await ds.listBundles()).map((b) => [b.trustDomain, b.sequence])).toEqual([['example.org', 2n], ['federated.org', big]]);
        await ds.deleteBundle('federated.org');
        await expectCode(ds.deleteBundle('federated.org'), 'not-found');
      });
    });

    describe('ca key records', () => {
      it('puts, lists, rotates phases with one active key per kind, and deletes', async () => {
        await ds.putCaKey(newCaKey('k1', { phase: 'active' }));
        await ds.putCaKey(newCaKey('k2', { createdAt: at(1) }));
        await ds.putCaKey(newCaKey('j1', { kind: 'jwt', phase: 'active', certificateDer: undefined }));
        await expectCode(ds.putCaKey(newCaKey('k1')), 'already-exists');
        expect(await ds.setCaKeyPhase('k2', 'active')).toMatchObject({ id: 'k2', phase: 'active' });
        const x509 = await ds.listCaKeys('x509');
        expect(x509.map((k) => [k.id, k.phase])).toEqual([['k1', 'old'], ['k2', 'active']]);
        expect(x509[1]).toEqual({ ...newCaKey('k2', { createdAt: at(1) }), phase: 'active' });
        const jwt = await ds.listCaKeys('jwt');
        expect(jwt).toHaveLength(1);
        expect(jwt[0].phase).toBe('active');
        expect(jwt[0].certificateDer).toBeUndefined();
        await ds.deleteCaKey('k1');
        expect(await ds.listCaKeys()).toHaveLength(2);
        await expectCode(ds.deleteCaKey('k1'), 'not-found');
        await expectCode(ds.setCaKeyPhase('k1', 'old'), 'not-found');
      });
    });

    describe('lifecycle', () => {
      it('keeps every record across close and reopen, and revisions continue', async () => {
        const entry = await ds.createEntry(newEntry(), T0);
        await ds.createAgent(newAgent(), T0);
        await ds.createJoinToken({ token: 'persist', expiresAt: at(600) });
        await ds.setBundle(newBundle('example.org', 5n));
        await ds.putCaKey(newCaKey('k1', { phase: 'active' }));
        await ds.close();
        const again = await handle();
        expect(await again.getEntry(entry.id)).toEqual(entry);
        expect(await again.getAgent(newAgent().spiffeId)).toMatchObject({ serialNumber: '0a1b2c' });
        expect((await again.getBundle('example.org')).sequence).toBe(5n);
        expect((await again.listCaKeys()).map((k) => k.id)).toEqual(['k1']);
        expect((await again.consumeJoinToken('persist', T0)).outcome).toBe('consumed');
        const next = await again.createEntry(newEntry({ spiffeId: 'spiffe://example.org/next' }), T0);
        expect(next.revision).toBeGreaterThan(entry.revision);
      });

      it('reports health, and refuses work once closed', async () => {
        expect(await ds.health()).toMatchObject({ ok: true, backend: ds.backend, schemaVersion: latestSchemaVersion });
        await ds.close();
        await expectCode(ds.getEntry('x'), 'unavailable', /store is closed/);
        expect(await ds.health()).toMatchObject({ ok: false, error: 'datastore: store is closed' });
      });
    });
  });
}
