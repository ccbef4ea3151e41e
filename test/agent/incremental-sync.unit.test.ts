// The incremental entry sync and the push trigger, in-process on the fake clock: the server's
// delta applied by the agent cache gives exactly the server's set (randomized), the manager asks
// for deltas with what it holds, falls back to the full list on a digest mismatch and every
// FULL_SYNC_EVERY syncs, still works with a server that only knows full lists, and turns a burst
// of change notifications into one extra sync.
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import type { AgentConfig } from '../../src/identity-plane/agent/config.js';
import { WorkloadCache } from '../../src/identity-plane/agent/manager/cache.js';
import { AgentManager, FULL_SYNC_EVERY } from '../../src/identity-plane/agent/manager/manager.js';
import type { ServerClient } from '../../src/identity-plane/server-api/node-client.js';
import type { AgentSvidStore } from '../../src/identity-plane/agent/svid-store.js';
import { entryDelta, entrySetDigest } from '../../src/identity-plane/server-api/entry-sync.js';
import type { ChangeNotificationMsg, EntryMsg, SyncRequestMsg, SyncResponseMsg } from '../../src/identity-plane/server-api/messages.js';
import { createSpiffeBundle, spiffeBundleToJson } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain, parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa, createX509SvidMinter, parseCsr } from '../../src/identity-plane/spiffe/mint/index.js';
import { seededRandom } from '../support/prng.js';

const td = mustTrustDomain('example.org');
const AGENT = 'spiffe://example.org/spire/agent/join_token/tok';
const pairOf = (e: EntryMsg) => ({ id: e.id, revision: e.revision_number });

function entry(id: string, revision: number, uid = 1000): EntryMsg {
  return { id, spiffe_id: `spiffe://example.org/${id}`, parent_id: AGENT, selectors: [{ type: 'unix', value: `uid:${uid}` }], x509_svid_ttl: 3600, federates_with: [], admin: false,
    downstream: false, expires_at: '0', dns_names: [], revision_number: String(revision), jwt_svid_ttl: 0, hint: '', created_at: String(revision) };
}

describe('entry delta (server) applied by the agent cache', () => {
  it('gives exactly the server\'s set, the same workload views and the same digest, on random changes', () => {
    const rnd = seededRandom(13);
    const clock = new FakeClock();
    for (let round = 0; round < 200; round++) {
      const universe = Array.from({ length: 12 }, (_, i) => `e${i}`);
      // A revision names one content: the selectors follow from (id, revision), as in the store.
      const version = (id: string, revision: number) => entry(id, revision, 1000 + ((Number(id.slice(1)) + revision) % 3));
      const pick = () => universe.filter(() => rnd() < 0.5).map((id) => version(id, 1 + Math.floor(rnd() * 3)));
      const before = pick();
      const after = pick().map((e) => (rnd() < 0.3 ? version(e.id, Number(e.revision_number) + 10) : e));
      const viaDelta = new WorkloadCache(clock);
      viaDelta.setEntries(before);
      const delta = entryDelta(after, pairOf, before.map(pairOf));
      viaDelta.applyEntryDelta(delta.changed, delta.deletedIds);
      const viaFull = new WorkloadCache(clock);
      viaFull.setEntries(after);
      const ids = (c: WorkloadCache) => c.allEntries().map((e) => `${e.id}@${e.revision_number}`).sort();
      expect(ids(viaDelta)).toEqual(ids(viaFull));
      for (const uid of [1000, 1001, 1002]) {
        const view = (c: WorkloadCache) => c.identitiesFor([{ type: 'unix', value: `uid:${uid}` }]).entries.map((e) => e.id);
        expect(view(viaDelta)).toEqual(view(viaFull));
      }
      expect(entrySetDigest(viaDelta.allEntries().map(pairOf)).equals(entrySetDigest(after.map(pairOf)))).toBe(true);
      // The delta holds only what differs.
      const held = new Map(before.map((e) => [e.id, e.revision_number]));
      for (const e of delta.changed) expect(held.get(e.id)).not.toBe(e.revision_number);
      for (const id of delta.deletedIds) expect(after.some((e) => e.id === id)).toBe(false);
    }
  });

  it('does not depend on the order of the pairs', () => {
    const a = [entry('x', 1), entry('y', 2)].map(pairOf);
    expect(entrySetDigest(a).equals(entrySetDigest([...a].reverse()))).toBe(true);
    expect(entrySetDigest(a).equals(entrySetDigest([a[0], { ...a[1], revision: '3' }]))).toBe(false);
  });
});

/** A server as the manager sees it: entries it serves as deltas (or full lists only, as a server of the first protocol), and a watch stream the test drives. */
function fakeServer(clock: FakeClock, opts: { incremental: boolean }) {
  const ca = createSelfSignedCa({ trustDomain: td, ttlSeconds: 30 * 86400, now: clock.now() });
  const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
  const bundle = { trust_domain: td.name, document: Buffer.from(spiffeBundleToJson(createSpiffeBundle({ trustDomain: td, x509Authorities: [ca.certificate], sequenceNumber: 1 }))), sequence_number: '1' };
  const state = {
    entries: [] as EntryMsg[], requests: [] as SyncRequestMsg[], corruptDigest: false,
    /** The bundle_state answered with every sync (undefined: a server that predates it); GetBundles calls counted, the next ones failing while set. */
    bundleState: undefined as Buffer | undefined, getBundlesCalls: 0, getBundlesFails: false,
    watch: undefined as undefined | { onMessage: (m: ChangeNotificationMsg) => void },
    /** Resolves the sync in flight when set (to hold a sync open while notifications arrive). */
    gate: undefined as undefined | Promise<void>,
  };
  const key = () => String(state.entries.reduce((m, e) => Math.max(m, Number(e.revision_number)), 0) * 1_000_000 + state.entries.length);
  const answer = (request: SyncRequestMsg): SyncResponseMsg => {
    if (opts.incremental && request.incremental) {
      const d = entryDelta(state.entries, pairOf, request.known_entries ?? []);
      if (d.changed.length + d.deletedIds.length === 0) return { entries: [], revision: key(), unchanged: true };
      const digest = entrySetDigest(state.entries.map(pairOf));
      if (state.corruptDigest) digest[0] ^= 1;
      return { entries: d.changed, revision: key(), unchanged: false, incremental: true, deleted_ids: d.deletedIds, digest };
    }
    return request.known_revision === key() ? { entries: [], revision: key(), unchanged: true } : { entries: state.entries, revision: key(), unchanged: false };
  };
  const server = {
    serverChain: undefined,
    setTrust() {}, setIdentity() {}, clearIdentity() {}, reconnect() {},
    async attest(_t: string, csr: Buffer) {
      const der = minter.mint({ id: parseSpiffeId(AGENT), publicKey: parseCsr(csr).publicKey, ttlSeconds: 3600, now: clock.now() }).der;
      return { svid: { cert_chain: [der], spiffe_id: AGENT, expires_at: '0', hint: '', entry_id: '' }, bundle };
    },
    async sync(request: SyncRequestMsg): Promise<SyncResponseMsg> {
      state.requests.push(request);
      if (state.gate) await state.gate;
      return { ...answer(request), bundle_state: state.bundleState };
    },
    async getBundles() {
      state.getBundlesCalls++;
      if (state.getBundlesFails) throw new Error('unavailable in this test');
      return { bundle, federated_bundles: [] };
    },
    // Minting is not what these tests look at: every CSR is refused, which the manager logs and counts.
    async batchNewX509Svid(reqs: unknown[]) {
      return { results: reqs.map(() => ({ status_code: grpc.status.UNAVAILABLE, status_message: 'not in this test' })) };
    },
    watch(onMessage: (m: ChangeNotificationMsg) => void) {
      state.watch = { onMessage };
      return { cancel() {} };
    },
  };
  return { server: server as unknown as ServerClient, state };
}

async function setup(opts: { incremental: boolean; bundleState?: Buffer }) {
  const clock = new FakeClock();
  const { server, state } = fakeServer(clock, opts);
  state.bundleState = opts.bundleState;
  const cache = new WorkloadCache(clock);
  const store = { load: () => undefined, save() {}, saveBundle() {}, clear() {} } as unknown as AgentSvidStore;
  const config = { trustDomain: td, joinToken: 'tok', rotationFraction: 0.5, syncIntervalSeconds: 5, workloadKeyType: 'ec-p256', jwtCacheMaxBytes: 1 << 20 } as unknown as AgentConfig;
  const kinds: string[] = [];
  const manager = new AgentManager({ config, clock, logger: nullLogger(), server, cache, store, events: { entrySync: (k) => kinds.push(k) } });
  state.entries = [entry('web', 1), entry('db', 2)];
  await manager.start();
  return { clock, state, cache, manager, kinds };
}

const held = (cache: WorkloadCache) => cache.allEntries().map((e) => `${e.id}@${e.revision_number}`).sort();

describe('AgentManager incremental sync', () => {
  it('starts with the full list, then sends what it holds and applies deltas', async () => {
    const { state, cache, manager, kinds } = await setup({ incremental: true });
    manager.stop();
    expect(state.requests[0]).toEqual({ known_revision: '0' });
    expect(held(cache)).toEqual(['db@2', 'web@1']);
    state.entries = [entry('web', 3), entry('api', 4)];
    await manager.syncOnce();
    expect(state.requests[1]).toMatchObject({ incremental: true });
    expect(state.requests[1].known_entries?.map((p) => `${p.id}@${p.revision}`).sort()).toEqual(['db@2', 'web@1']);
    expect(held(cache)).toEqual(['api@4', 'web@3']);
    await manager.syncOnce();
    expect(kinds).toEqual(['full', 'incremental', 'unchanged']);
  });

  it('asks for the full list after a digest mismatch, and every FULL_SYNC_EVERY syncs', async () => {
    const { state, manager, kinds } = await setup({ incremental: true });
    manager.stop();
    state.corruptDigest = true;
    state.entries = [...state.entries, entry('api', 5)];
    await manager.syncOnce();
    expect(kinds.at(-1)).toBe('incremental');
    await manager.syncOnce();
    expect(state.requests.at(-1)).toEqual({ known_revision: '0' });
    expect(kinds.at(-1)).toBe('full');
    state.corruptDigest = false;
    for (let i = 0; i < FULL_SYNC_EVERY; i++) await manager.syncOnce();
    expect(kinds.slice(-FULL_SYNC_EVERY - 1)).toEqual(['full', ...Array(FULL_SYNC_EVERY - 1).fill('unchanged'), 'full']);
  });

  it('works with a server of the first protocol: full lists, or unchanged', async () => {
    const { state, cache, manager, kinds } = await setup({ incremental: false });
    manager.stop();
    state.entries = [entry('web', 7)];
    await manager.syncOnce();
    expect(held(cache)).toEqual(['web@7']);
    await manager.syncOnce();
    expect(kinds).toEqual(['full', 'full', 'unchanged']);
  });
});

describe('AgentManager push', () => {
  it('syncs at once on a notification, and a burst during a sync costs one more sync', async () => {
    const { state, cache, manager } = await setup({ incremental: true });
    const watch = state.watch!;
    expect(watch, 'the manager opened its change stream').toBeDefined();
    watch.onMessage({ initial: true, entries: false, bundle: false });
    expect(manager.pushConnected).toBe(true);
    const before = state.requests.length;
    state.entries = [...state.entries, entry('new', 9)];
    // No clock advance: only the notification can start this sync (the poll is 5 s away).
    let release!: () => void;
    state.gate = new Promise((r) => (release = r));
    watch.onMessage({ initial: false, entries: true, bundle: false });
    await new Promise((r) => setImmediate(r));
    expect(state.requests.length).toBe(before + 1);
    for (let i = 0; i < 5; i++) watch.onMessage({ initial: false, entries: true, bundle: false });
    state.gate = undefined;
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(state.requests.length).toBe(before + 2);
    expect(held(cache)).toContain('new@9');
    manager.stop();
  });
});

describe('AgentManager bundle fetches', () => {
  const stateA = Buffer.alloc(32, 1);
  const stateB = Buffer.alloc(32, 2);

  it('calls GetBundles only when the sync answer\'s bundle state moved, or its federated trust domains did', async () => {
    const { state, manager } = await setup({ incremental: true, bundleState: stateA });
    manager.stop();
    expect(state.getBundlesCalls).toBe(1); // the first sync fetches
    for (let i = 0; i < 5; i++) await manager.syncOnce();
    expect(state.getBundlesCalls, 'unchanged state: no GetBundles').toBe(1);
    state.bundleState = stateB;
    await manager.syncOnce();
    expect(state.getBundlesCalls).toBe(2);
    await manager.syncOnce();
    expect(state.getBundlesCalls).toBe(2);
    // An entry that federates with a trust domain the last fetch did not ask for.
    state.entries = [...state.entries, { ...entry('fed', 20), federates_with: ['other.example'] }];
    await manager.syncOnce();
    expect(state.getBundlesCalls).toBe(3);
    await manager.syncOnce();
    expect(state.getBundlesCalls).toBe(3);
  });

  it('fetches again after a failed fetch, and every sync from a server without the field', async () => {
    const { state, manager } = await setup({ incremental: true, bundleState: stateA });
    manager.stop();
    state.bundleState = stateB;
    state.getBundlesFails = true;
    await expect(manager.syncOnce()).rejects.toThrow(/unavailable in this test/);
    state.getBundlesFails = false;
    await manager.syncOnce();
    expect(state.getBundlesCalls).toBe(3); // start, the failed one, the retry
    await manager.syncOnce();
    expect(state.getBundlesCalls).toBe(3);
    state.bundleState = undefined; // an older server
    await manager.syncOnce();
    await manager.syncOnce();
    expect(state.getBundlesCalls).toBe(5);
  });
});
