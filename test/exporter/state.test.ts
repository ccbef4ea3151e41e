// The exporter's state and scrape on a fake clock: rotations, snapshot lifetimes, propagation
// lag, coverage, caps and the time budget — and promtool accepts what it renders.
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { buildExporterConfig, createExporter, METRIC, type Exporter, type ObservedBundle, type ObservedSvid } from '../../src/exporter/index.js';
import { openMetricsProblems } from '../support/openmetrics.js';
import { parseSamples, promtoolRun, valueOf } from '../support/metrics.js';
import { renderSamples } from './support.js';

const TD = 'example.org';
const MIN = 60_000;

function setup(extra: Record<string, unknown> = {}): { clock: FakeClock; ex: Exporter } {
  const clock = new FakeClock();
  const config = buildExporterConfig({
    sources: [
      { name: 'server', type: 'server_admin', socket: '/nowhere.sock' },
      { name: 'agent-a', type: 'workload_api', address: 'unix:///nowhere.sock' },
      { name: 'svid-files', type: 'files', paths: ['/nowhere'] },
      { name: 'peer', type: 'bundle_endpoint', url: 'https://127.0.0.1:1/b', trust_domain: TD },
    ],
    ...extra,
  });
  return { clock, ex: createExporter(config, { clock, processMetrics: false }) };
}

const svid = (clock: FakeClock, key: string, serial: string, lifetimeMs: number, td = TD): ObservedSvid =>
  ({ key, spiffeId: `spiffe://${td}/${key}`, trustDomain: td, serial, notAfterMs: clock.nowMs() + lifetimeMs });

const bundle = (clock: FakeClock, fps: string[], extra: Partial<ObservedBundle> = {}): ObservedBundle =>
  ({ trustDomain: TD, x509: fps.map((fingerprint, i) => ({ fingerprint, notAfterMs: clock.nowMs() + (i + 1) * 24 * 60 * MIN })), ...extra });

describe('exporter state and scrape', () => {
  it('counts a new serial in a known slot as a rotation, with the lifetime the old one had left', async () => {
    const { clock, ex } = setup();
    ex.state.observe('agent-a', { svids: [svid(clock, 'web', '01', 10 * MIN), svid(clock, 'db', '02', 20 * MIN)] });
    clock.advance(6 * MIN);
    ex.state.observe('agent-a', { svids: [svid(clock, 'web', '03', 10 * MIN), svid(clock, 'db', '02', 14 * MIN)] });
    const { series } = await renderSamples(ex);
    expect(valueOf(series, METRIC.rotations, { source: 'agent-a', kind: 'x509_svid' })).toBe(1);
    expect(valueOf(series, `${METRIC.rotationRemainingLifetime}_sum`, { source: 'agent-a', kind: 'x509_svid' })).toBe(4 * 60);
    expect(valueOf(series, `${METRIC.rotationRemainingLifetime}_bucket`, { source: 'agent-a', kind: 'x509_svid', le: '300' })).toBe(1);
    // The first view of a source is a baseline, not a rotation; a slot that disappears is not one either.
    ex.state.observe('svid-files', { svids: [svid(clock, 'x', '09', MIN)] });
    ex.state.observe('svid-files', { svids: [] });
    expect(valueOf(parseSamples((await ex.render()).body), METRIC.rotations, { source: 'svid-files', kind: 'x509_svid' })).toBe(0);
  });

  it('renders remaining lifetime as a snapshot of what exists now, expired ones in le="0"', async () => {
    const { clock, ex } = setup();
    ex.state.observe('agent-a', { svids: [svid(clock, 'a', '1', 30_000), svid(clock, 'b', '2', 2 * MIN), svid(clock, 'c', '3', 2 * 24 * 60 * MIN)] });
    let { series } = await renderSamples(ex);
    const bucket = (le: string) => valueOf(series, `${METRIC.remainingLifetime}_bucket`, { source: 'agent-a', kind: 'x509_svid', le });
    expect([bucket('0'), bucket('60'), bucket('300'), bucket('86400'), bucket('172800'), bucket('+Inf')]).toEqual([0, 1, 2, 2, 3, 3]);
    expect(valueOf(series, METRIC.earliestExpiry, { source: 'agent-a', kind: 'x509_svid' })).toBe((clock.nowMs() + 30_000) / 1000);
    clock.advance(MIN);
    ({ series } = await renderSamples(ex));
    expect(bucket('0')).toBe(1);
    expect(bucket('60')).toBe(2);
    expect(valueOf(series, `${METRIC.remainingLifetime}_count`, { source: 'agent-a', kind: 'x509_svid' })).toBe(3);
  });

  it('observes propagation lag from the reference\'s sequence change to each source showing it', async () => {
    const { clock, ex } = setup();
    ex.state.observe('server', { bundles: [bundle(clock, ['ca1'], { sequence: 7n, jwtKeyIds: ['k1'] })] });
    ex.state.observe('agent-a', { bundles: [bundle(clock, ['ca1'], { jwtKeyIds: ['k1'] })] });
    ex.state.observe('svid-files', { bundles: [bundle(clock, ['ca1'])] });
    ex.state.observe('peer', { bundles: [bundle(clock, ['ca1'], { sequence: 7n, refreshHintSeconds: 300 })] });
    let { series } = await renderSamples(ex);
    expect(valueOf(series, METRIC.bundleSequence, { source: 'agent-a' })).toBe(7);
    expect(valueOf(series, METRIC.bundleSequence, { source: 'svid-files' })).toBe(7);
    expect(valueOf(series, `${METRIC.propagationLag}_count`)).toBe(0); // the baseline has no known change time

    clock.advance(10_000);
    ex.state.observe('server', { bundles: [bundle(clock, ['ca1', 'ca2'], { sequence: 8n, jwtKeyIds: ['k1'] })] });
    clock.advance(3_000);
    ex.state.observe('agent-a', { bundles: [bundle(clock, ['ca1', 'ca2'], { jwtKeyIds: ['k1'] })] });
    ex.state.observe('agent-a', { bundles: [bundle(clock, ['ca1', 'ca2'], { jwtKeyIds: ['k1'] })] }); // same content again: no second observation
    clock.advance(4_000);
    ex.state.observe('peer', { bundles: [bundle(clock, ['ca1', 'ca2'], { sequence: 8n, refreshHintSeconds: 300 })] });
    ({ series } = await renderSamples(ex));
    expect(valueOf(series, `${METRIC.propagationLag}_count`, { source: 'agent-a' })).toBe(1);
    expect(valueOf(series, `${METRIC.propagationLag}_sum`, { source: 'agent-a' })).toBe(3);
    expect(valueOf(series, `${METRIC.propagationLag}_sum`, { source: 'peer' })).toBe(7);
    expect(valueOf(series, `${METRIC.propagationLag}_count`, { source: 'svid-files' })).toBe(0); // still on 7
    expect(valueOf(series, METRIC.bundleSequence, { source: 'svid-files' })).toBe(7);
    expect(valueOf(series, METRIC.bundleSequence, { source: 'agent-a' })).toBe(8);
    expect(valueOf(series, METRIC.bundleRefreshHint, { source: 'peer' })).toBe(300);
    expect(valueOf(series, METRIC.rotations, { source: 'agent-a', kind: 'ca' })).toBe(1);
    expect(valueOf(series, METRIC.rotations, { source: 'server', kind: 'ca' })).toBe(1);

    // A source can show the new bundle before the reference's next poll: lag 0, not negative.
    ex.state.observe('svid-files', { bundles: [bundle(clock, ['ca1', 'ca2', 'ca3'])] });
    clock.advance(5_000);
    ex.state.observe('server', { bundles: [bundle(clock, ['ca1', 'ca2', 'ca3'], { sequence: 9n, jwtKeyIds: ['k1'] })] });
    ({ series } = await renderSamples(ex));
    expect(valueOf(series, `${METRIC.propagationLag}_count`, { source: 'svid-files' })).toBe(1);
    expect(valueOf(series, `${METRIC.propagationLag}_sum`, { source: 'svid-files' })).toBe(0);
    expect(valueOf(series, METRIC.bundleSequence, { source: 'svid-files' })).toBe(9);
  });

  it('counts workload entries no source holds an SVID for, and agents by status', async () => {
    const { clock, ex } = setup();
    ex.state.observe('server', {
      coverage: {
        entries: [{ spiffeId: `spiffe://${TD}/web` }, { spiffeId: `spiffe://${TD}/db` }, { spiffeId: `spiffe://${TD}/batch` }],
        agents: [{ id: 'a1', banned: false, expiresAtMs: clock.nowMs() + MIN }, { id: 'a2', banned: true, expiresAtMs: clock.nowMs() + MIN }, { id: 'a3', banned: false, expiresAtMs: clock.nowMs() - 1 }],
      },
    });
    ex.state.observe('agent-a', { svids: [svid(clock, 'web', '1', MIN)] });
    ex.state.observe('svid-files', { svids: [svid(clock, 'db', '2', MIN)] });
    const { series } = await renderSamples(ex);
    expect(valueOf(series, METRIC.registrationEntries, { source: 'server' })).toBe(3);
    expect(valueOf(series, METRIC.entriesWithoutSvid, { source: 'server' })).toBe(1);
    expect([['active', 1], ['banned', 1], ['expired', 1]].map(([status]) => valueOf(series, METRIC.agents, { status: status as string }))).toEqual([1, 1, 1]);
  });

  it('keeps a source\'s last data when it fails, marks it down and counts the reason', async () => {
    const { clock, ex } = setup();
    ex.state.observe('agent-a', { svids: [svid(clock, 'web', '1', MIN)] });
    ex.state.error('agent-a', 'unavailable');
    ex.state.error('agent-a', 'unavailable');
    const { series } = await renderSamples(ex);
    expect(valueOf(series, METRIC.sourceUp, { source: 'agent-a' })).toBe(0);
    expect(valueOf(series, METRIC.sourceErrors, { source: 'agent-a', reason: 'unavailable' })).toBe(2);
    expect(valueOf(series, `${METRIC.remainingLifetime}_count`, { source: 'agent-a' })).toBe(1);
    expect(ex.state.ready().ok).toBe(false); // the other sources never delivered
  });

  it('caps per-SVID series at the earliest-expiring ones and counts the rest as dropped', async () => {
    const { clock, ex } = setup({ per_svid_series: true, per_svid_max_series: 3 });
    ex.state.observe('agent-a', { svids: [1, 2, 3].map((i) => svid(clock, `a${i}`, `${i}`, i * MIN)) });
    ex.state.observe('svid-files', { svids: [svid(clock, 'weird "id"\\x', 'ff', 90_000), svid(clock, 'late', 'ee', 99 * MIN)] });
    const r = await renderSamples(ex);
    const perSvid = r.series.filter((x) => x.name.startsWith(METRIC.svidExpiry));
    expect(perSvid).toHaveLength(3);
    // Label values as exposed, escapes included.
    expect(perSvid.some((x) => x.labels.spiffe_id === 'spiffe://example.org/weird \\"id\\"\\\\x')).toBe(true);
    expect(r.dropped.per_svid_cap).toBe(2);
    expect(valueOf(parseSamples((await ex.render()).body), METRIC.seriesDropped, { reason: 'per_svid_cap' })).toBe(2);
    expect(await promtoolRun(r.body)).toEqual({ code: 0, output: '' });
  });

  it('stops at the series cap and at the time budget', async () => {
    const { clock, ex } = setup({ scrape: { max_series: 30 } });
    ex.state.observe('agent-a', { svids: ['a.org', 'b.org', 'c.org'].map((td) => svid(clock, 'w', '1', MIN, td)) });
    const capped = await renderSamples(ex);
    expect(capped.dropped.series_cap).toBeGreaterThan(0);
    expect(capped.series.filter((x) => x.name.startsWith(`${METRIC.remainingLifetime}_count`))).toHaveLength(1);
    const late = await renderSamples(ex, -1);
    expect(late.truncated).toBe(true);
    expect(valueOf(late.series, `${METRIC.remainingLifetime}_count`)).toBeUndefined();
    expect(valueOf(parseSamples((await ex.render()).body), METRIC.scrapeTruncated)).toBe(1);
  });

  it('renders every family in a form promtool check metrics accepts, and as valid OpenMetrics when asked, process metrics included', async () => {
    const clock = new FakeClock();
    const config = buildExporterConfig({ per_svid_series: true, sources: [{ name: 'server', type: 'server_admin', socket: '/x' }, { name: 'wl', type: 'workload_api', address: '/x.sock' }] });
    const ex = createExporter(config, { clock });
    ex.state.observe('server', { bundles: [bundle(clock, ['c1'], { sequence: 1n, refreshHintSeconds: 300, jwtKeyIds: ['k'] })], svids: [svid(clock, 'agent', '1', MIN)], coverage: { entries: [{ spiffeId: 'spiffe://example.org/x' }], agents: [] } });
    ex.state.observe('wl', { svids: [svid(clock, 'x', '1', MIN)], bundles: [bundle(clock, ['c1'], { jwtKeyIds: ['k'] })] });
    await ex.render();
    const body = (await ex.render()).body;
    expect(body).toContain('process_cpu_seconds_total');
    expect(body).not.toContain('nodejs_active_handles_total');
    expect(await promtoolRun(body)).toEqual({ code: 0, output: '' });
    // OpenMetrics in between leaves the next text scrape as it was (the counters keep their _total).
    const om = (await ex.render(undefined, 'openmetrics')).body;
    expect(openMetricsProblems(om)).toEqual([]);
    expect(om).toMatch(new RegExp(`^# TYPE ${METRIC.sourceUpdates.replace(/_total$/, '')} counter$`, 'm'));
    const again = (await ex.render()).body;
    expect(again).toMatch(new RegExp(`^# TYPE ${METRIC.sourceUpdates} counter$`, 'm'));
    expect(await promtoolRun(again)).toEqual({ code: 0, output: '' });
  });
});
