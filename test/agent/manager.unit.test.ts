// The agent's control loop (AgentManager) on a fake clock against an in-process fake server that
// signs with a real CA: workload SVIDs are re-minted at the configured fraction of their lifetime
// (measured from receipt), the agent SVID is renewed at the same fraction, entry changes and forced
// rotations re-mint at once, and an eviction leads back to attestation.
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { buildAgentConfig, type AgentConfig } from '../../src/identity-plane/agent/config.js';
import { WorkloadCache } from '../../src/identity-plane/agent/manager/cache.js';
import { AgentManager, type RotationReason } from '../../src/identity-plane/agent/manager/manager.js';
import { ServerCallError, type ServerClient } from '../../src/identity-plane/server-api/node-client.js';
import type { AgentSvidStore } from '../../src/identity-plane/agent/svid-store.js';
import type { BundleMsg, ChangeNotificationMsg, EntryMsg } from '../../src/identity-plane/server-api/messages.js';
import { createSpiffeBundle, spiffeBundleToJson } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain, parseSpiffeId } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa, createX509SvidMinter, parseCsr } from '../../src/identity-plane/spiffe/mint/index.js';

const td = mustTrustDomain('example.org');
const AGENT_TTL_S = 3600;
const SVID_TTL_S = 600;

function entry(id: string, revision = '1'): EntryMsg {
  return { id, spiffe_id: `spiffe://example.org/${id}`, parent_id: 'spiffe://example.org/spire/agent/join_token/tok', selectors: [{ type: 'unix', value: 'uid:1000' }], x509_svid_ttl: SVID_TTL_S, federates_with: [], admin: false, downstream: false, expires_at: '0', dns_names: [], revision_number: revision, jwt_svid_ttl: 0, hint: '', created_at: '1' };
}

interface WatchCallbacks {
  onMessage(m: ChangeNotificationMsg): void;
  onEnd(err: ServerCallError | undefined): void;
}

/** A server API as the manager sees it, in-process: a real CA on the fake clock, and call counts. */
function fakeServer(clock: FakeClock) {
  const ca = createSelfSignedCa({ trustDomain: td, ttlSeconds: 30 * 86400, now: clock.now() });
  const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
  const bundle: BundleMsg = { trust_domain: td.name, document: Buffer.from(spiffeBundleToJson(createSpiffeBundle({ trustDomain: td, x509Authorities: [ca.certificate], sequenceNumber: 1 }))), sequence_number: '1' };
  const sign = (id: string, csr: Buffer, ttlSeconds: number) => {
    const der = minter.mint({ id: parseSpiffeId(id), publicKey: parseCsr(csr).publicKey, ttlSeconds, now: clock.now() }).der;
    return { cert_chain: [der], spiffe_id: id, expires_at: '0', hint: '', entry_id: '' };
  };
  const state = { entries: [] as EntryMsg[], revision: 1, attests: 0, renewals: 0, syncs: 0, minted: [] as string[], evictNextSync: false, watches: [] as WatchCallbacks[],
    bundleState: Buffer.from('state-1'), bundleFetches: 0 };
  const server = {
    serverChain: undefined,
    setTrust() {}, setIdentity() {}, clearIdentity() {}, reconnect() {},
    watch(onMessage: WatchCallbacks['onMessage'], onEnd: WatchCallbacks['onEnd']) {
      state.watches.push({ onMessage, onEnd });
      return { cancel() {} };
    },
    async attest(_token: string, csr: Buffer) {
      state.attests++;
      return { svid: sign('spiffe://example.org/spire/agent/join_token/tok', csr, AGENT_TTL_S), bundle };
    },
    async renew(csr: Buffer) {
      state.renewals++;
      return { svid: sign('spiffe://example.org/spire/agent/join_token/tok', csr, AGENT_TTL_S) };
    },
    async sync(request: string | { known_revision: string }) {
      const known = typeof request === 'string' ? request : request.known_revision;
      state.syncs++;
      if (state.evictNextSync) {
        state.evictNextSync = false;
        throw new ServerCallError(grpc.status.PERMISSION_DENIED, 'agent-not-attested', 'agent evicted');
      }
      return { entries: state.entries, revision: String(state.revision), unchanged: known === String(state.revision), bundle_state: state.bundleState };
    },
    async getBundles() {
      state.bundleFetches++;
      return { bundle, federated_bundles: [] };
    },
    async batchNewX509Svid(reqs: { entry_id: string; csr: Buffer }[]) {
      return {
        results: reqs.map((r) => {
          state.minted.push(r.entry_id);
          return { status_code: grpc.status.OK, status_message: '', svid: sign(`spiffe://example.org/${r.entry_id}`, r.csr, SVID_TTL_S) };
        }),
      };
    },
  };
  return { server: server as unknown as ServerClient, state };
}

async function setup(rotationFraction: number) {
  const clock = new FakeClock();
  const { server, state } = fakeServer(clock);
  const cache = new WorkloadCache(clock);
  const stored = { cleared: 0 };
  const store = { load: () => undefined, save() {}, saveBundle() {}, clear: () => void stored.cleared++ } as unknown as AgentSvidStore;
  const config = { trustDomain: td, joinToken: 'tok', rotationFraction, syncIntervalSeconds: 5, workloadKeyType: 'ec-p256', jwtCacheMaxBytes: 1 << 20 } as unknown as AgentConfig;
  const rotations: [RotationReason, number][] = [];
  const manager = new AgentManager({ config, clock, logger: nullLogger(), server, cache, store, events: { rotation: (reason, left) => rotations.push([reason, left]) } });
  state.entries = [entry('web'), entry('db')];
  await manager.start();
  // Syncs are driven by the test, not by the manager's timer.
  manager.stop();
  return { clock, state, cache, manager, rotations, stored };
}

describe('AgentManager rotation', () => {
  it.each([0.5, 0.25, 0.8])('re-mints a workload SVID once %s of its lifetime has passed since it was received, not before', async (fraction) => {
    const { clock, state, cache, manager, rotations } = await setup(fraction);
    expect(state.minted.sort()).toEqual(['db', 'web']);
    expect(rotations).toEqual([['new', 1], ['new', 1]]);
    const first = cache.svidFor('web')!;
    const due = SVID_TTL_S * 1000 * fraction;
    clock.advance(due - 1);
    await manager.syncOnce();
    expect(state.minted).toHaveLength(2);
    clock.advance(1);
    await manager.syncOnce();
    expect(state.minted).toHaveLength(4);
    expect(rotations.slice(2).map(([reason]) => reason)).toEqual(['scheduled', 'scheduled']);
    expect(rotations[2][1]).toBeCloseTo(1 - fraction, 6);
    expect(cache.svidFor('web')!.notAfter).toBe(first.notAfter + due);
  });

  it('renews its own SVID at the same fraction of its lifetime', async () => {
    const { clock, state, manager } = await setup(0.5);
    expect(state.attests).toBe(1);
    clock.advance(AGENT_TTL_S * 500 - 1);
    await manager.syncOnce();
    expect(state.renewals).toBe(0);
    clock.advance(1);
    await manager.syncOnce();
    expect(state.renewals).toBe(1);
    // Measured again from the renewed SVID.
    clock.advance(AGENT_TTL_S * 500 - 1);
    await manager.syncOnce();
    expect(state.renewals).toBe(1);
    expect(state.attests).toBe(1);
  });

  it('re-mints at once for a new entry revision or a forced rotation, and only those SVIDs', async () => {
    const { state, manager, rotations } = await setup(0.5);
    state.entries = [entry('web', '2'), entry('db')];
    state.revision = 2;
    await manager.syncOnce();
    expect(state.minted.slice(2)).toEqual(['web']);
    expect(rotations[2][0]).toBe('entry_change');
    manager.forceRotation();
    await manager.syncOnce();
    expect(state.minted.slice(3).sort()).toEqual(['db', 'web']);
    expect(rotations.slice(3).map(([r]) => r)).toEqual(['forced', 'forced']);
    await manager.syncOnce();
    expect(state.minted).toHaveLength(5);
  });

  it('forgets an evicted identity and attests again at the next sync', async () => {
    const { state, manager, stored } = await setup(0.5);
    state.evictNextSync = true;
    await expect(manager.syncOnce()).rejects.toThrow(/evicted/);
    expect(stored.cleared).toBe(1);
    expect(manager.status.attested).toBe(false);
    await manager.syncOnce();
    expect(state.attests).toBe(2);
    expect(manager.status.attested).toBe(true);
  });
});

describe('AgentManager poll interval', () => {
  /** A running manager (its own timer drives the syncs) with push on; the fake server's stream is opened but not yet up. */
  async function running(pushSyncIntervalSeconds: number) {
    const clock = new FakeClock();
    const { server, state } = fakeServer(clock);
    const cache = new WorkloadCache(clock);
    const store = { load: () => undefined, save() {}, saveBundle() {}, clear() {} } as unknown as AgentSvidStore;
    const config = { trustDomain: td, joinToken: 'tok', rotationFraction: 0.5, syncIntervalSeconds: 5, pushSyncIntervalSeconds, workloadKeyType: 'ec-p256', jwtCacheMaxBytes: 1 << 20 } as unknown as AgentConfig;
    const manager = new AgentManager({ config, clock, logger: nullLogger(), server, cache, store });
    state.entries = [entry('web')];
    await manager.start();
    /** Moves the fake clock and lets the syncs it started finish (they await the fake server and key generation). */
    const advance = async (ms: number) => {
      clock.advance(ms);
      for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    };
    const streamUp = () => state.watches.at(-1)!.onMessage({ initial: true, entries: false, bundle: false });
    return { clock, state, manager, advance, streamUp };
  }

  it('reads push_sync_interval (30 s by default, never below sync_interval), and refuses a non-positive one', () => {
    expect(buildAgentConfig({ trust_domain: 'example.org' }).pushSyncIntervalSeconds).toBe(30);
    expect(buildAgentConfig({ trust_domain: 'example.org', push_sync_interval: '2m' }).pushSyncIntervalSeconds).toBe(120);
    expect(buildAgentConfig({ trust_domain: 'example.org', sync_interval: '1m', push_sync_interval: '10s' }).pushSyncIntervalSeconds).toBe(60);
    expect(() => buildAgentConfig({ trust_domain: 'example.org', push_sync_interval: '0s' })).toThrow(/push_sync_interval/);
  });

  it('polls every sync_interval without the change stream, and every push_sync_interval (±10 %) with it', async () => {
    const { state, manager, advance, streamUp } = await running(30);
    expect(state.syncs).toBe(1);
    await advance(5000);
    expect(state.syncs).toBe(2);
    streamUp();
    // The poll set before the stream came up still runs; the ones after it follow the longer interval.
    await advance(5000);
    expect(state.syncs).toBe(3);
    await advance(26_999);
    expect(state.syncs).toBe(3);
    await advance(6002);
    expect(state.syncs).toBe(4);
    manager.stop();
  });

  it('comes back to sync_interval as soon as the stream goes down', async () => {
    const { state, manager, advance, streamUp } = await running(30);
    streamUp();
    await advance(5000);
    expect(state.syncs).toBe(2);
    state.watches.at(-1)!.onEnd(new ServerCallError(grpc.status.UNAVAILABLE, 'unavailable', 'server went away'));
    await advance(5000);
    expect(state.syncs).toBe(3);
    manager.stop();
  });

  it('answers a bundle notification carrying the bundle state with GetBundles alone, and syncs in full after an older server\'s', async () => {
    const { state, manager, advance, streamUp } = await running(30);
    streamUp();
    expect([state.syncs, state.bundleFetches]).toEqual([1, 1]);
    const notify = (bundle_state?: Buffer) => state.watches.at(-1)!.onMessage({ initial: false, entries: false, bundle: true, spread_ms: 1000, bundle_state });
    const random = vi.spyOn(Math, 'random').mockReturnValue(0); // act at the start of the spread
    try {
      state.bundleState = Buffer.from('state-2');
      notify(state.bundleState);
      await advance(1);
      expect([state.syncs, state.bundleFetches]).toEqual([1, 2]); // no entry sync
      notify(Buffer.from('state-2')); // the state already fetched under: nothing to fetch
      await advance(1);
      expect([state.syncs, state.bundleFetches]).toEqual([1, 2]);
      // The next poll's answer carries the state fetched under: no second fetch.
      await advance(33_000);
      expect([state.syncs, state.bundleFetches]).toEqual([2, 2]);
      // An older server sends no state: the agent syncs, and the answer's state decides the fetch.
      state.bundleState = Buffer.from('state-3');
      notify();
      await advance(1);
      expect([state.syncs, state.bundleFetches]).toEqual([3, 3]);
    } finally {
      random.mockRestore();
      manager.stop();
    }
  });

  it('brings the poll forward to the next SVID renewal, so rotation stays on time', async () => {
    // push_sync_interval far beyond the SVID's renewal at half of its 600 s.
    const { state, manager, advance, streamUp } = await running(3600);
    streamUp();
    await advance(5000);
    expect(state.syncs).toBe(2);
    expect(state.minted).toEqual(['web']);
    await advance(SVID_TTL_S * 500 - 5001);
    expect(state.syncs).toBe(2);
    await advance(1);
    expect(state.syncs).toBe(3);
    expect(state.minted).toEqual(['web', 'web']);
    manager.stop();
  });
});
