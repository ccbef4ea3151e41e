// Who the change notifier tells, fed by a real EntryCache over a scripted change feed: the agents
// that could hold an entry before or after a change (direct parent, nested parents, node aliases
// they match), every stream for bundle changes; and how streams are bounded and re-authenticated.
import { describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { SvidscopeError } from '../../src/common/errors/catalog.js';
import { nullLogger } from '../../src/common/log.js';
import { BROADCAST_SLICE, BUNDLE_AGENT_SPREAD_MS, BUNDLE_PACE_TICK_MS, BUNDLE_SPREAD_MAX_MS, BUNDLE_SPREAD_MIN_MS, BUNDLE_SPREAD_PER_STREAM_MS, ChangeNotifier, type WatchDropReason } from '../../src/identity-plane/server/api/change-notifier.js';
import type { Datastore, EntryChanges, RegistrationEntry } from '../../src/identity-plane/server/datastore/types.js';
import { EntryCache } from '../../src/identity-plane/server/registration/entry-cache.js';
import type { ChangeNotificationMsg } from '../../src/identity-plane/server-api/messages.js';

const TD = 'spiffe://example.org';
const SERVER = `${TD}/spire/server`;
const agentId = (n: string) => `${TD}/spire/agent/join_token/${n}`;
const sel = (n: string) => ({ type: 'spiffe_id', value: agentId(n) });

let revision = 0;
function entry(id: string, spiffeId: string, parentId: string, extra: Partial<RegistrationEntry> = {}): RegistrationEntry {
  return { id, spiffeId, parentId, selectors: [{ type: 'unix', value: 'uid:1' }], x509SvidTtl: 0, jwtSvidTtl: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false,
    expiresAt: null, hint: '', createdAtMs: 0, revision: ++revision, ...extra };
}

/** An EntryCache over a change feed the test scripts one pull at a time. */
function feed() {
  let next: EntryChanges = { revision: 0, changed: [], deletedIds: [], fullResync: false };
  const ds = { listEntriesChangedSince: async () => next } as unknown as Datastore;
  const cache = new EntryCache(ds, SERVER);
  return {
    cache,
    apply: async (changed: RegistrationEntry[], deletedIds: string[] = [], fullResync = false) => {
      next = { revision: ++revision, changed, deletedIds, fullResync };
      await cache.refresh();
    },
  };
}

function setup(opts: { maxStreams?: number; sendBuffer?: number } = {}) {
  const clock = new FakeClock();
  const dropped: WatchDropReason[] = [];
  const limits: string[] = [];
  const warnings: unknown[] = [];
  const logger = nullLogger();
  logger.warn = ((obj: unknown) => void warnings.push(obj)) as typeof logger.warn;
  const notifier = new ChangeNotifier({ clock, logger, ...opts, events: { dropped: (r) => dropped.push(r), limitHit: (l) => limits.push(l) } });
  /** Streams by agent name: what each received, whether it was closed and with what. */
  const streams = new Map<string, { got: ChangeNotificationMsg[]; closed?: SvidscopeError; flush: (() => void)[]; recheck?: SvidscopeError; recheckAt: number; rechecks: number; unregister: () => void }>();
  const open = (name: string, o: { notAfterMs?: number; autoFlush?: boolean; recheckAt?: number } = {}) => {
    const s = { got: [] as ChangeNotificationMsg[], closed: undefined as SvidscopeError | undefined, flush: [] as (() => void)[], recheck: undefined as SvidscopeError | undefined,
      recheckAt: o.recheckAt ?? Infinity, rechecks: 0, unregister: () => undefined as void };
    streams.set(name, s);
    s.unregister = notifier.open({
      agentId: agentId(name), selectors: [sel(name)], svidNotAfterMs: o.notAfterMs ?? clock.nowMs() + 3_600_000,
      recheck: () => {
        s.rechecks++;
        return s.recheck;
      },
      recheckAt: () => s.recheckAt,
      sink: {
        send: (msg, flushed) => {
          s.got.push(msg);
          if (o.autoFlush !== false) flushed();
          else s.flush.push(flushed);
        },
        close: (err) => {
          s.closed = err;
        },
      },
    });
    return s;
  };
  /** Names of the agents told of an entry change since the last call. */
  const told = () => {
    const names = [...streams].filter(([, s]) => s.got.some((m) => m.entries)).map(([n]) => n).sort();
    for (const s of streams.values()) s.got = [];
    return names;
  };
  return { clock, notifier, open, told, streams, dropped, limits, warnings };
}

describe('ChangeNotifier: who is told of an entry change', () => {
  it('tells the parent agent only, through nested parents, on create, update, reparent and delete', async () => {
    const { notifier, open, told } = setup();
    const { cache, apply } = feed();
    cache.observe(notifier);
    await apply([]); // first load
    for (const n of ['a', 'b', 'c']) open(n);
    expect(told()).toEqual([]); // the first message is `initial`, not an entry change

    const web = entry('web', `${TD}/web`, agentId('a'));
    await apply([web]);
    expect(told()).toEqual(['a']);
    // A child of web (nested parent) reaches a through web.
    const sidecar = entry('sidecar', `${TD}/web/sidecar`, `${TD}/web`);
    await apply([sidecar]);
    expect(told()).toEqual(['a']);
    await apply([{ ...sidecar, hint: 'x', revision: ++revision }]);
    expect(told()).toEqual(['a']);
    // Reparenting web to b moves the subtree: a loses it, b gains it; both must hear of it.
    await apply([{ ...web, parentId: agentId('b'), revision: ++revision }]);
    expect(told()).toEqual(['a', 'b']);
    await apply([], ['sidecar']);
    expect(told()).toEqual(['b']);
    await apply([entry('other', `${TD}/other`, agentId('nobody-watching'))]);
    expect(told()).toEqual([]);
  });

  it('tells the agents a node alias matches, before and after its selectors change', async () => {
    const { notifier, open, told } = setup();
    const { cache, apply } = feed();
    cache.observe(notifier);
    await apply([]);
    for (const n of ['a', 'b', 'c']) open(n);
    const alias = entry('alias', `${TD}/group`, SERVER, { selectors: [sel('a')] });
    await apply([alias]);
    expect(told()).toEqual(['a']);
    const child = entry('child', `${TD}/group/app`, `${TD}/group`);
    await apply([child]);
    expect(told()).toEqual(['a']);
    // The alias now matches b instead: a loses the child, b gains it.
    await apply([{ ...alias, selectors: [sel('b')], revision: ++revision }]);
    expect(told()).toEqual(['a', 'b']);
    // An alias with every agent's selector would need all of them; one that matches no one tells no one.
    await apply([entry('alias2', `${TD}/nobody`, SERVER, { selectors: [sel('a'), sel('b')] })]);
    expect(told()).toEqual([]);
  });

  it('tells every stream on a full reload and on a bundle change', async () => {
    const { clock, notifier, open, streams } = setup();
    const { cache, apply } = feed();
    cache.observe(notifier);
    await apply([]);
    open('a');
    open('b');
    await apply([entry('x', `${TD}/x`, agentId('a'))], [], true);
    expect([...streams.values()].map((s) => s.got.at(-1))).toEqual([{ entries: true, bundle: false, initial: false }, { entries: true, bundle: false, initial: false }]);
    notifier.bundleChanged();
    clock.advance(BUNDLE_SPREAD_MIN_MS);
    expect([...streams.values()].map((s) => s.got.at(-1)?.bundle)).toEqual([true, true]);
  });

  it('paces a bundle notification over its streams by how many it holds, within its floor and cap', () => {
    /** When each stream got the bundle notification (ms after the change), and what it asked of the agent. */
    const paced = (streams: number) => {
      const { clock, notifier, open } = setup({ maxStreams: streams });
      const all = Array.from({ length: streams }, (_, i) => open(`a${i}`));
      const t0 = clock.nowMs();
      const at = new Map<number, number>();
      const record = () => all.forEach((s, i) => {
        if (s.got.length === 2 && !at.has(i)) at.set(i, clock.nowMs() - t0);
      });
      notifier.bundleChanged();
      record();
      while (at.size < streams && clock.nowMs() - t0 <= BUNDLE_SPREAD_MAX_MS + 1000) {
        clock.advance(BUNDLE_PACE_TICK_MS);
        record();
      }
      return { times: [...at.values()], spreadMs: all[0].got[1].spread_ms, firstTick: [...at.values()].filter((t) => t === 0).length };
    };
    const few = paced(3);
    expect(few.times).toHaveLength(3);
    expect(Math.max(...few.times)).toBeLessThan(BUNDLE_SPREAD_MIN_MS);
    const many = paced(5000);
    expect(many.times).toHaveLength(5000);
    expect(many.firstTick).toBe(Math.ceil(5000 / (5000 * BUNDLE_SPREAD_PER_STREAM_MS / BUNDLE_PACE_TICK_MS)));
    expect(Math.max(...many.times)).toBeGreaterThanOrEqual(0.95 * 5000 * BUNDLE_SPREAD_PER_STREAM_MS);
    expect(Math.max(...many.times)).toBeLessThanOrEqual(5000 * BUNDLE_SPREAD_PER_STREAM_MS);
    const capped = paced(30_001);
    expect(Math.max(...capped.times)).toBeLessThanOrEqual(BUNDLE_SPREAD_MAX_MS);
    expect(Math.max(...capped.times)).toBeGreaterThanOrEqual(0.95 * BUNDLE_SPREAD_MAX_MS);
    // The server spread the fleet: the agent only adds a second of jitter.
    expect([few.spreadMs, many.spreadMs, capped.spreadMs]).toEqual([BUNDLE_AGENT_SPREAD_MS, BUNDLE_AGENT_SPREAD_MS, BUNDLE_AGENT_SPREAD_MS]);
  });

  it('restarts the pacing with a newer bundle change, and sends nothing more after shutdown', () => {
    const { clock, notifier, open } = setup();
    const all = Array.from({ length: 1000 }, (_, i) => open(`a${i}`));
    notifier.bundleChanged();
    clock.advance(1000); // a third of the 3 s
    notifier.bundleChanged();
    clock.advance(3000);
    // Every stream got the newer one; those reached before the restart got both.
    expect(all.every((s) => s.got.filter((m) => m.bundle).length >= 1)).toBe(true);
    expect(all.filter((s) => s.got.filter((m) => m.bundle).length === 2).length).toBeGreaterThan(300);
    expect(all.filter((s) => s.got.filter((m) => m.bundle).length === 2).length).toBeLessThan(400);
    notifier.bundleChanged();
    const sent = () => all.reduce((n, s) => n + s.got.length, 0);
    const before = sent();
    notifier.closeAll();
    clock.advance(5000);
    expect(sent()).toBe(before);
  });

  it('writes a full reload to BROADCAST_SLICE streams per turn of the event loop', async () => {
    const { notifier, open } = setup();
    const { cache, apply } = feed();
    cache.observe(notifier);
    await apply([]);
    const all = Array.from({ length: BROADCAST_SLICE * 2 + 1 }, (_, i) => open(`a${i}`));
    await apply([], [], true);
    expect(all.filter((s) => s.got.length === 2)).toHaveLength(BROADCAST_SLICE);
    await vi.waitFor(() => expect(all.every((s) => s.got.length === 2)).toBe(true));
  });

  it('carries the bundle state it is given, so agents fetch bundles without an entry sync; none when it cannot be read', async () => {
    const { notifier, open, warnings } = setup();
    const a = open('a');
    let state: () => Promise<Buffer> = async () => Buffer.from('digest-2');
    notifier.useBundleState(() => state());
    notifier.bundleChanged();
    await vi.waitFor(() => expect(a.got).toHaveLength(2));
    expect(a.got[1]).toMatchObject({ bundle: true, entries: false, bundle_state: Buffer.from('digest-2') });
    state = async () => {
      throw new Error('datastore down');
    };
    notifier.bundleChanged();
    await vi.waitFor(() => expect(a.got).toHaveLength(3));
    expect(a.got[2].bundle).toBe(true);
    expect(a.got[2].bundle_state).toBeUndefined();
    expect(warnings).toHaveLength(1);
  });
});

describe('ChangeNotifier: limits and re-authentication', () => {
  it('refuses streams past watch_max_streams and past the per-agent bound, and counts them', () => {
    const { notifier, open, limits } = setup({ maxStreams: 2 });
    open('a');
    const b = open('b');
    expect(() => open('c')).toThrow(expect.objectContaining({ code: 'watch-streams-exhausted' }));
    expect(limits).toEqual(['watch_max_streams']);
    b.unregister();
    expect(notifier.streamCount).toBe(1);
    expect(() => open('c')).not.toThrow();
  });

  it('drops a stream that does not take its notifications once the send buffer is full', () => {
    const { clock, notifier, open, dropped } = setup({ sendBuffer: 3 });
    const slow = open('slow', { autoFlush: false });
    const fast = open('fast');
    for (let i = 0; i < 5; i++) {
      notifier.bundleChanged();
      clock.advance(BUNDLE_SPREAD_MIN_MS); // each one paced out to both streams
    }
    expect(slow.got).toHaveLength(3); // initial + 2, then the 3rd unflushed write was the bound
    expect(slow.closed?.code).toBe('watch-slow-consumer');
    expect(dropped).toEqual(['slow_consumer']);
    expect(fast.got).toHaveLength(6);
    expect(fast.closed).toBeUndefined();
    expect(notifier.streamCount).toBe(1);
  });

  it('closes the stream of a banned, evicted or renewed-away agent with its code, and one whose SVID expired', () => {
    const { clock, notifier, open, dropped } = setup();
    const banned = open('banned');
    const evicted = open('evicted');
    const fine = open('fine');
    const expiring = open('expiring', { notAfterMs: clock.nowMs() + 10_000 });
    banned.recheck = new SvidscopeError('agent-banned', 'banned');
    evicted.recheck = new SvidscopeError('agent-not-attested', 'evicted');
    notifier.reauthenticate([agentId('banned'), agentId('fine')]);
    expect(banned.closed?.code).toBe('agent-banned');
    expect(evicted.closed).toBeUndefined(); // not named, not checked
    notifier.reauthenticate('all');
    expect(evicted.closed?.code).toBe('agent-not-attested');
    expect(expiring.closed).toBeUndefined();
    clock.advance(10_000);
    notifier.checkDue();
    expect(expiring.closed?.code).toBe('agent-svid-stale');
    expect(fine.closed).toBeUndefined();
    expect(dropped).toEqual(['banned', 'not_attested', 'svid_expired']);
    expect(notifier.streamCount).toBe(1);
  });

  it('checks on the tick only the streams that came due: an SVID past notAfter, a renewal grace that ended', () => {
    const { clock, notifier, open, dropped } = setup();
    const t0 = clock.nowMs();
    const quiet = open('quiet'); // due in an hour
    const expiring = open('expiring', { notAfterMs: t0 + 10_000 });
    const inGrace = open('in-grace', { recheckAt: t0 + 5_000 });
    const renewing = open('renewing');
    // A refusal nobody is due to notice: only an agent-feed change (reauthenticate) would check it.
    quiet.recheck = new SvidscopeError('agent-banned', 'banned');
    notifier.checkDue();
    expect([quiet, expiring, inGrace, renewing].map((s) => s.rechecks)).toEqual([0, 0, 0, 0]);

    // A renewal through the agent feed puts `renewing`'s serial in grace until t0 + 7 s.
    renewing.recheckAt = t0 + 7_000;
    notifier.reauthenticate([agentId('renewing')]);
    expect(renewing.rechecks).toBe(1);

    clock.advance(5_000);
    inGrace.recheck = new SvidscopeError('agent-svid-stale', 'grace over');
    notifier.checkDue();
    expect(inGrace.closed?.code).toBe('agent-svid-stale');
    expect([quiet.rechecks, expiring.rechecks, renewing.rechecks]).toEqual([0, 0, 1]);

    clock.advance(2_000);
    renewing.recheck = new SvidscopeError('agent-svid-stale', 'grace over');
    notifier.checkDue();
    expect(renewing.closed?.code).toBe('agent-svid-stale');

    clock.advance(3_000);
    notifier.checkDue();
    expect(expiring.closed?.code).toBe('agent-svid-stale');
    expect(quiet.closed).toBeUndefined();
    expect(quiet.rechecks).toBe(0);
    expect(dropped).toEqual(['stale_serial', 'stale_serial', 'svid_expired']);
  });

  it('keeps its due queue within a small multiple of the streams held while streams come and go', () => {
    const { clock, notifier, open } = setup();
    for (let round = 0; round < 20; round++) {
      const held = Array.from({ length: 500 }, (_, i) => open(`r${round}-${i}`, { notAfterMs: clock.nowMs() + 3_600_000 + i }));
      for (const s of held.slice(0, 450)) s.unregister();
    }
    expect(notifier.streamCount).toBe(20 * 50);
    expect(notifier.dueQueueLength).toBeLessThanOrEqual(2 * notifier.streamCount + 1024);
  });
});
