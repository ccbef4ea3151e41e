// The agent's change stream on the fake clock: when it reopens after each kind of end (at once
// after its own reconnect, backing off on errors, rarely when the server has no push or is full),
// and what each notification triggers.
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { BUNDLE_NOTIFICATION_SPREAD_MAX_MS, BUNDLE_NOTIFICATION_SPREAD_MS, bundleSpreadMs, ChangeWatch } from '../../src/identity-plane/agent/manager/change-watch.js';
import { ServerCallError } from '../../src/identity-plane/server-api/node-client.js';
import type { ChangeNotificationMsg } from '../../src/identity-plane/server-api/messages.js';

function setup() {
  const clock = new FakeClock();
  const opened: { onMessage: (m: ChangeNotificationMsg) => void; onEnd: (e: ServerCallError | undefined) => void }[] = [];
  const state = { syncs: 0, connected: [] as boolean[], bundleStates: [] as (string | undefined)[] };
  const watch = new ChangeWatch({
    server: { watch: (onMessage, onEnd) => (opened.push({ onMessage, onEnd }), { cancel() {} }) },
    clock, logger: nullLogger(), attested: () => true, syncNow: (bundleState) => {
      state.syncs++;
      state.bundleStates.push(bundleState?.toString());
    },
    events: { pushConnected: (up) => state.connected.push(up) },
  });
  watch.start();
  const last = () => opened.at(-1)!;
  const up = () => last().onMessage({ initial: true, entries: false, bundle: false });
  return { clock, opened, state, watch, last, up };
}

const err = (status: grpc.status, code: ConstructorParameters<typeof ServerCallError>[1] = 'unavailable') => new ServerCallError(status, code, 'x');

describe('ChangeWatch', () => {
  it('reopens within 0.75 s after its own reconnect, and backs off while errors repeat', () => {
    const { clock, opened, last, up, state } = setup();
    up();
    expect(state.connected).toEqual([true]);
    last().onEnd(err(grpc.status.CANCELLED, 'unavailable'));
    clock.advance(750);
    expect(opened).toHaveLength(2);
    // Failing before it comes up: 1 s, 2 s, 4 s … (±50 %), capped at 30 s.
    for (const [n, maxMs] of [[3, 1500], [4, 3000], [5, 6000]] as const) {
      last().onEnd(err(grpc.status.UNAVAILABLE));
      clock.advance(maxMs / 3 - 1); // the least it waits is a third of the most
      expect(opened).toHaveLength(n - 1);
      clock.advance(maxMs);
      expect(opened).toHaveLength(n);
    }
    up();
    expect(state.syncs).toBe(1); // back after a gap: catch up once
  });

  it('asks again only after minutes when the server has no push, and after the longest wait when it is full', () => {
    const { clock, opened, last } = setup();
    last().onEnd(err(grpc.status.UNIMPLEMENTED, 'unimplemented'));
    clock.advance(149_999);
    expect(opened).toHaveLength(1);
    clock.advance(300_000);
    expect(opened).toHaveLength(2);
    last().onEnd(err(grpc.status.RESOURCE_EXHAUSTED, 'watch-streams-exhausted'));
    clock.advance(14_999);
    expect(opened).toHaveLength(2);
    clock.advance(30_000);
    expect(opened).toHaveLength(3);
  });

  it('syncs at once for an entry change, within the spread for a bundle change, and at once on a refusal', () => {
    const { clock, last, up, state } = setup();
    up();
    last().onMessage({ initial: false, entries: true, bundle: false });
    expect(state.syncs).toBe(1);
    last().onMessage({ initial: false, entries: false, bundle: true });
    last().onMessage({ initial: false, entries: false, bundle: true });
    expect(state.syncs).toBe(1);
    clock.advance(BUNDLE_NOTIFICATION_SPREAD_MS);
    expect(state.syncs).toBe(2); // two bundle notifications, one sync
    last().onEnd(err(grpc.status.PERMISSION_DENIED, 'agent-banned'));
    expect(state.syncs).toBe(3);
    expect(state.connected).toEqual([true, false]);
  });

  it('passes on the bundle state of the last bundle notification within the spread, none for an entry change', () => {
    const { clock, last, up, state } = setup();
    up();
    last().onMessage({ initial: false, entries: false, bundle: true, bundle_state: Buffer.from('s1') });
    last().onMessage({ initial: false, entries: false, bundle: true, bundle_state: Buffer.from('s2') });
    clock.advance(BUNDLE_NOTIFICATION_SPREAD_MS);
    last().onMessage({ initial: false, entries: false, bundle: true, bundle_state: Buffer.alloc(0) }); // an older server's
    clock.advance(BUNDLE_NOTIFICATION_SPREAD_MS);
    last().onMessage({ initial: false, entries: true, bundle: false });
    expect(state.bundleStates).toEqual(['s2', undefined, undefined]);
  });

  it('spreads a bundle change over what the server asks, never past the cap', () => {
    const { clock, last, up, state } = setup();
    up();
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.99);
    try {
      last().onMessage({ initial: false, entries: false, bundle: true, spread_ms: 20_000 });
    } finally {
      random.mockRestore();
    }
    clock.advance(19_700);
    expect(state.syncs).toBe(0);
    clock.advance(200);
    expect(state.syncs).toBe(1);
    expect(bundleSpreadMs({ initial: false, entries: false, bundle: true, spread_ms: 20_000 })).toBe(20_000);
    expect(bundleSpreadMs({ initial: false, entries: false, bundle: true, spread_ms: 10_000_000 })).toBe(BUNDLE_NOTIFICATION_SPREAD_MAX_MS);
    expect(bundleSpreadMs({ initial: false, entries: false, bundle: true, spread_ms: 0 })).toBe(BUNDLE_NOTIFICATION_SPREAD_MS);
    expect(bundleSpreadMs({ initial: false, entries: false, bundle: true })).toBe(BUNDLE_NOTIFICATION_SPREAD_MS);
  });
});
