// Revoke → every watched holder without the key, on a fake clock: one observation per revoked key
// and scope, timed to the last holder seen dropping it (before or after the exporter learned of the
// revoke), nothing for revokes older than the exporter, and the state's mapping of sources to
// scopes (agents: a Workload API source's own bundle; federated_peers: peer copies).
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { RevocationTracker, type KeyView, type ObservedRevocation, type RevocationScope } from '../../src/exporter/revocations.js';
import { SelfMetrics } from '../../src/exporter/self-metrics.js';
import { ExporterState } from '../../src/exporter/state.js';
import { revokedKeys } from '../../src/exporter/sources/server-admin.js';

const TD = 'example.org';
const S = 1000;

function tracker(clock: FakeClock) {
  const seen: { scope: RevocationScope; td: string; seconds: number }[] = [];
  const t = new RevocationTracker({ startedAtMs: clock.nowMs(), cleared: (scope, td, seconds) => seen.push({ scope, td, seconds }) });
  const agent = (x509: string[], jwt?: string[]): KeyView[] => [{ trustDomain: TD, scope: 'agents', x509, jwt }];
  const peer = (x509: string[]): KeyView[] => [{ trustDomain: TD, scope: 'federated_peers', x509 }];
  return { t, seen, agent, peer };
}
const rev = (keyId: string, revokedAtMs: number, kind: 'x509' | 'jwt' = 'x509'): ObservedRevocation => ({ trustDomain: TD, kind, keyId, revokedAtMs });

describe('revocation timing', () => {
  it('observes each scope once, when its last holder was seen without the key', () => {
    const clock = new FakeClock(new Date('2026-01-01T00:00:00Z'));
    const { t, seen, agent, peer } = tracker(clock);
    for (const a of ['agent-1', 'agent-2']) t.observe(a, agent(['old', 'new']), clock.nowMs());
    t.observe('peer-admin', peer(['old', 'new']), clock.nowMs());
    clock.advance(10 * S);
    const revokedAt = clock.nowMs();
    clock.advance(1 * S);
    t.observe('agent-1', agent(['new']), clock.nowMs()); // dropped before the exporter learns of the revoke
    clock.advance(2 * S);
    t.learn('server-admin', TD, [rev('old', revokedAt)]); // the admin poll, 3 s after the revoke
    expect(seen).toEqual([]);
    expect(t.holders().get(TD)).toEqual({ agents: 1, federated_peers: 1 });
    clock.advance(1 * S);
    t.observe('agent-2', agent(['new']), clock.nowMs());
    expect(seen).toEqual([{ scope: 'agents', td: TD, seconds: 4 }]);
    clock.advance(6 * S);
    t.observe('peer-admin', peer(['new']), clock.nowMs());
    expect(seen).toEqual([{ scope: 'agents', td: TD, seconds: 4 }, { scope: 'federated_peers', td: TD, seconds: 10 }]);
    expect(t.holders().get(TD)).toEqual({ agents: 0, federated_peers: 0 });
    // Reported again at the next poll, and the views unchanged: no second observation.
    t.learn('server-admin', TD, [rev('old', revokedAt)]);
    t.observe('agent-1', agent(['new']), clock.nowMs());
    expect(seen).toHaveLength(2);
  });

  it('stays pending while any holder, even one that is down, still shows the key, and counts it in holders', () => {
    const clock = new FakeClock();
    const { t, seen, agent } = tracker(clock);
    t.observe('agent-1', agent(['old']), clock.nowMs());
    t.observe('agent-2', agent(['old']), clock.nowMs());
    clock.advance(S);
    t.learn('server-admin', TD, [rev('old', clock.nowMs())]);
    clock.advance(S);
    t.observe('agent-1', agent([]), clock.nowMs());
    expect(seen).toEqual([]); // agent-2 never delivered again: its last view still holds the key
    expect(t.holders().get(TD)).toEqual({ agents: 1, federated_peers: 0 });
  });

  it('does not time a revoke older than the exporter, nor a scope nothing is watched in', () => {
    const clock = new FakeClock();
    const { t, seen, agent } = tracker(clock);
    t.observe('agent-1', agent(['new']), clock.nowMs());
    t.learn('server-admin', TD, [rev('before-start', clock.nowMs() - 60 * S)]);
    expect(seen).toEqual([]);
    t.learn('server-admin', TD, [rev('before-start', clock.nowMs() - 60 * S), rev('gone', clock.nowMs())]);
    // Nobody ever showed "gone": cleared at the revoke for the agents; no peer is watched, so no peer figure.
    expect(seen).toEqual([{ scope: 'agents', td: TD, seconds: 0 }]);
  });

  it('times a JWT key only against holders that can see JWT keys', () => {
    const clock = new FakeClock();
    const { t, seen, agent } = tracker(clock);
    t.observe('agent-1', agent(['ca'], ['kid-old', 'kid-new']), clock.nowMs());
    t.observe('agent-2', agent(['ca']), clock.nowMs()); // no JWT bundles on this source
    t.learn('server-admin', TD, [rev('kid-old', clock.nowMs(), 'jwt')]);
    clock.advance(3 * S);
    t.observe('agent-1', agent(['ca'], ['kid-new']), clock.nowMs());
    expect(seen).toEqual([{ scope: 'agents', td: TD, seconds: 3 }]);
  });

  it('forgets what its server no longer reports and keeps at most maxTracked', () => {
    const clock = new FakeClock();
    const seen: number[] = [];
    const t = new RevocationTracker({ startedAtMs: 0, cleared: (_s, _td, seconds) => seen.push(seconds), maxTracked: 2 });
    t.observe('agent-1', [{ trustDomain: TD, scope: 'agents', x509: ['a', 'b', 'c'] }], clock.nowMs());
    t.learn('server-admin', TD, [rev('a', 1), rev('b', 2), rev('c', 3)]);
    expect(t.holders().get(TD)?.agents).toBe(1);
    t.learn('server-admin', TD, []);
    expect(t.holders().get(TD)?.agents).toBe(0);
    expect(seen).toEqual([]);
  });
});

describe('revocation timing through the exporter state', () => {
  it('maps a Workload API source\'s own bundle to agents and a peer server\'s copy to federated_peers, and exports the histogram', async () => {
    const clock = new FakeClock(new Date('2026-01-01T00:00:00Z'));
    const metrics = new SelfMetrics({ processMetrics: false });
    const state = new ExporterState({ clock, metrics, perSvid: false, references: ['server-admin'] });
    state.addSource('server-admin', 'server');
    state.addSource('agent-1', 'agent');
    state.addSource('peer-admin', 'server');
    state.addSource('files', 'other');
    const ca = (ski: string) => ({ fingerprint: ski.repeat(4), notAfterMs: clock.nowMs() + 86400 * S, subjectKeyId: ski });
    const bundle = (skis: string[], federated: boolean) => ({ trustDomain: TD, x509: skis.map(ca), federated });
    state.observe('agent-1', { bundles: [bundle(['aa', 'bb'], false)] });
    state.observe('peer-admin', { bundles: [bundle(['aa', 'bb'], true)] });
    state.observe('files', { bundles: [{ trustDomain: TD, x509: [ca('aa'), ca('bb')] }] }); // not a holder the timing watches
    clock.advance(5 * S);
    const revokedAt = clock.nowMs();
    const status = { slots: [{ kind: 'x509', key_id: 'aa', revoked: true, revoked_at_ms: String(revokedAt) }, { kind: 'jwt', key_id: 'k', revoked: false, revoked_at_ms: '0' }] };
    expect(revokedKeys(TD, status)).toEqual([{ trustDomain: TD, kind: 'x509', keyId: 'aa', revokedAtMs: revokedAt }]);
    // An upstream authority revoked by subject key id counts as an X.509 key of the domain; a tainted one does not yet.
    expect(revokedKeys(TD, { slots: [], upstream_authorities: [
      { subject_key_id: 'cc', revoked: true, revoked_at_ms: '1234' }, { subject_key_id: 'dd', revoked: false, revoked_at_ms: '0' },
    ] })).toEqual([{ trustDomain: TD, kind: 'x509', keyId: 'cc', revokedAtMs: 1234 }]);
    state.observe('server-admin', { bundles: [{ ...bundle(['bb'], false), sequence: 3n }], revocations: { trustDomain: TD, keys: revokedKeys(TD, status) } });
    clock.advance(2 * S);
    state.observe('agent-1', { bundles: [bundle(['bb'], false)] });
    clock.advance(5 * S);
    state.observe('peer-admin', { bundles: [bundle(['bb'], true)] });
    // The server's next poll reports the same revoke: it neither counts again nor resets the series.
    state.observe('server-admin', { bundles: [{ ...bundle(['bb'], false), sequence: 3n }], revocations: { trustDomain: TD, keys: revokedKeys(TD, status) } });

    const text = await metrics.registry.metrics();
    expect(text).toContain('svidscope_exporter_revocation_propagation_seconds_sum{scope="agents",trust_domain="example.org"} 2');
    expect(text).toContain('svidscope_exporter_revocation_propagation_seconds_sum{scope="federated_peers",trust_domain="example.org"} 7');
    expect(text).toContain('svidscope_exporter_revocation_propagation_seconds_count{scope="federated_peers",trust_domain="example.org"} 1');
  });
});
