// The server's key-compromise gauges on a fake clock: when the next key must be active (the
// activate point normally, the prepare point while an operator-prepared successor waits), and the
// upstream authority's expiry.
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { createRegistry } from '../../src/common/telemetry/registry.js';
import { nullLogger } from '../../src/common/log.js';
import { CaManager, type RotationConfig } from '../../src/identity-plane/server/ca/manager.js';
import { createServerTelemetry } from '../../src/identity-plane/server/telemetry.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/ca.js';
import { removeDir, tempDir } from '../support/server.js';

const HOUR = 3600_000;
const td = mustTrustDomain('example.org');
const config: RotationConfig = { caTtlSeconds: 24 * 3600, prepareFraction: 1 / 2, activateFraction: 5 / 6, checkIntervalSeconds: 10, keyType: 'ec-p256', jwtKeyType: 'ec-p256' };
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach(removeDir));

function setup(clock: FakeClock, upstream?: ReturnType<typeof createSelfSignedCa>) {
  const dir = tempDir('ca-telemetry');
  dirs.push(dir);
  const ca = new CaManager({ trustDomain: td, dir, config, clock, logger: nullLogger(), upstream: upstream && { certificate: upstream.certificate, privateKey: upstream.privateKey } });
  const registry = createRegistry();
  createServerTelemetry(registry, undefined, { ca: () => ca, bundles: () => undefined, entries: () => undefined, agents: () => undefined, datastore: () => undefined });
  const read = async (name: string): Promise<Record<string, number>> => {
    const metric = registry.getSingleMetric(name);
    if (!metric) throw new Error(`${name} not registered`);
    const { values } = await metric.get();
    return Object.fromEntries(values.map((v) => [String(v.labels.kind ?? ''), v.value]));
  };
  return { ca, read };
}

const DUE = 'svidscope_server_authority_activation_due_timestamp_seconds';
const UPSTREAM = 'svidscope_server_upstream_authority_expiry_timestamp_seconds';

describe('authority activation due', () => {
  it('is the activate point, the prepare point while an operator-prepared key waits, and moves on at activation', async () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca, read } = setup(clock);
    ca.start();
    const active = (kind: 'x509' | 'jwt') => ca.status().find((s) => s.kind === kind && s.phase === 'active')!;
    const point = (kind: 'x509' | 'jwt', fraction: number) => { const a = active(kind); return (a.notBefore + (a.notAfter - a.notBefore) * fraction) / 1000; };

    expect(await read(DUE)).toEqual({ x509: point('x509', 5 / 6), jwt: point('jwt', 5 / 6) });
    expect(await read(UPSTREAM)).toEqual({ '': 0 });

    // A compromise response prepares an X.509 CA an hour in: due at the active CA's prepare point.
    clock.advance(HOUR);
    ca.prepareAuthority('x509');
    const x509PreparePoint = point('x509', 1 / 2);
    expect((await read(DUE)).x509).toBe(x509PreparePoint);
    expect((await read(DUE)).jwt).toBe(point('jwt', 5 / 6));

    // Nobody activates it: past the prepare point it is overdue (the schedule leaves it prepared).
    clock.advance(12 * HOUR);
    expect(ca.status().filter((s) => s.kind === 'x509').map((s) => s.phase).sort()).toEqual(['active', 'prepared']);
    expect((await read(DUE)).x509).toBeLessThan(clock.nowMs() / 1000);
    // The JWT key's successor, prepared by the schedule at its prepare point, is due at the activate point.
    expect(ca.status().some((s) => s.kind === 'jwt' && s.phase === 'prepared')).toBe(true);
    expect((await read(DUE)).jwt).toBe(point('jwt', 5 / 6));

    ca.activateAuthority('x509');
    expect((await read(DUE)).x509).toBe(point('x509', 5 / 6));
    expect((await read(DUE)).x509).toBeGreaterThan(clock.nowMs() / 1000);
    ca.stop();
  });

  it('treats an X.509 CA the schedule prepared (notBefore backdated) as scheduled', async () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1, 0, 0, 0, 500));
    const { ca, read } = setup(clock);
    ca.start();
    const first = ca.status().find((s) => s.kind === 'x509' && s.phase === 'active')!;
    clock.set(first.notBefore + (first.notAfter - first.notBefore) / 2 + 1);
    ca.rotate();
    const prepared = ca.status().find((s) => s.kind === 'x509' && s.phase === 'prepared')!;
    expect(prepared.notBefore).toBeLessThan(clock.nowMs()); // backdated
    expect((await read(DUE)).x509).toBe((first.notBefore + (first.notAfter - first.notBefore) * 5 / 6) / 1000);
    ca.stop();
  });
});

describe('upstream authority expiry', () => {
  it('is the upstream certificate\'s notAfter', async () => {
    const clock = new FakeClock(new Date());
    const upstream = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p256', ttlSeconds: 30 * 86400, now: clock.now() });
    const { ca, read } = setup(clock, upstream);
    ca.start();
    expect(await read(UPSTREAM)).toEqual({ '': new Date(upstream.certificate.validTo).getTime() / 1000 });
    ca.stop();
  });
});
