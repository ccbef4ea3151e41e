import { X509Certificate } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { CaManager, type RotationConfig } from '../../src/identity-plane/server/ca/manager.js';
import { BundleSet, createSpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustSpiffeId, mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { removeDir, tempDir } from '../support/server.js';

const HOUR = 3600_000;
const td = mustTrustDomain('example.org');
const config: RotationConfig = { caTtlSeconds: 24 * 3600, prepareFraction: 1 / 2, activateFraction: 5 / 6, checkIntervalSeconds: 10, keyType: 'ec-p256', jwtKeyType: 'ec-p256' };
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach(removeDir));

function manager(clock: FakeClock, dir = tempDir('ca')) {
  dirs.push(dir);
  const events: string[] = [];
  const ca = new CaManager({ trustDomain: td, dir, config, clock, logger: nullLogger(), onChange: (e) => events.push(`${e.kind}:${e.phase}`) });
  return { ca, dir, events };
}

/** What an agent holds after its last sync: the bundle as published at that moment. */
function bundleAt(ca: CaManager): BundleSet {
  const p = ca.published();
  return new BundleSet([createSpiffeBundle({ trustDomain: td, x509Authorities: p.x509, jwtAuthorities: p.jwt })]);
}

function mint(ca: CaManager, clock: FakeClock, ttlSeconds = 3600) {
  const key = generateKeyPair();
  const svid = ca.x509Minter.mint({ id: mustSpiffeId('spiffe://example.org/web'), publicKey: key.publicKey, ttlSeconds, now: clock.now() });
  return [new X509Certificate(svid.der), ...ca.x509ChainTail.map((d) => new X509Certificate(d))];
}

const phases = (ca: CaManager, kind: 'x509' | 'jwt') => ca.status().filter((s) => s.kind === kind).map((s) => s.phase).sort();

describe('CA rotation timeline (prepared -> active -> old) on a fake clock', () => {
  it('publishes the next key before it signs, and keeps the old one until its SVIDs expired', () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca, events } = manager(clock);
    ca.start();
    expect(phases(ca, 'x509')).toEqual(['active']);
    expect(phases(ca, 'jwt')).toEqual(['active']);
    const first = ca.status().find((s) => s.kind === 'x509')!;

    // Just before half-life nothing new exists; just after, the successor is prepared and published.
    clock.advance(12 * HOUR - 20_000);
    expect(ca.published().x509).toHaveLength(1);
    clock.advance(30_000);
    expect(phases(ca, 'x509')).toEqual(['active', 'prepared']);
    expect(phases(ca, 'jwt')).toEqual(['active', 'prepared']);
    const held = bundleAt(ca); // the agents sync this bundle now: it holds both authorities
    expect(held.bundles()[0].x509Authorities).toHaveLength(2);
    expect(held.bundles()[0].jwtAuthorities.size).toBe(2);

    // Still signed by the first CA until activation at 5/6 of its life.
    const beforeActivation = mint(ca, clock, 10 * 3600);
    const longLived = mint(ca, clock, 23 * 3600); // asks past the CA's own end: capped
    expect(verifyX509Svid(beforeActivation, held, { now: clock.now() }).id.toString()).toBe('spiffe://example.org/web');
    clock.advance(20 * HOUR - 12 * HOUR);
    expect(phases(ca, 'x509')).toEqual(['active', 'old']);
    const afterActivation = mint(ca, clock);
    expect(afterActivation[0].verify(beforeActivation[0].publicKey)).toBe(false);
    const [firstCa, secondCa] = held.bundles()[0].x509Authorities.map((a) => a.cert);
    const signedBy = (leaf: X509Certificate) => [firstCa, secondCa].findIndex((c) => leaf.verify(c.publicKey));
    expect(signedBy(beforeActivation[0])).not.toBe(signedBy(afterActivation[0]));
    // The bundle the agent held since preparation verifies SVIDs of both CAs.
    expect(verifyX509Svid(afterActivation, held, { now: clock.now() }).id.toString()).toBe('spiffe://example.org/web');
    expect(verifyX509Svid(beforeActivation, held, { now: clock.now() }).id.toString()).toBe('spiffe://example.org/web');

    // An SVID minted late by the old CA could not outlive it (capped), so the old key may leave at its notAfter.
    expect(new Date(longLived[0].validTo).getTime()).toBeLessThanOrEqual(first.notAfter);
    clock.set(first.notAfter - 20_000);
    expect(ca.published().x509).toHaveLength(2);
    clock.set(first.notAfter + 20_000);
    // (the second CA, prepared at 12 h, reaches its own half-life now and prepares a third)
    expect(ca.status().map((s) => s.id)).not.toContain(first.id);
    expect(ca.published().x509.map((c) => c.fingerprint256)).not.toContain(firstCa.fingerprint256);
    expect(events).toContain('x509:prepared');
    expect(events).toContain('x509:active');
  });

  it('survives a restart with the same keys and phases, key files 0600', () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca, dir } = manager(clock);
    ca.start();
    clock.advance(13 * HOUR);
    const before = ca.status();
    const svid = mint(ca, clock);
    ca.stop();

    const again = new CaManager({ trustDomain: td, dir, config, clock, logger: nullLogger() });
    again.start();
    expect(again.status()).toEqual(before);
    const held = bundleAt(again);
    expect(verifyX509Svid(svid, held, { now: clock.now() }).id.toString()).toBe('spiffe://example.org/web');
    for (const f of readdirSync(path.join(dir, 'keys'))) expect(statSync(path.join(dir, 'keys', f)).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(dir, 'journal.json')).mode & 0o777).toBe(0o600);
    again.stop();
  });

  it('catches up after downtime past the active key\'s life', () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca, dir } = manager(clock);
    ca.start();
    ca.stop();
    clock.set(Date.UTC(2030, 0, 5));
    const again = new CaManager({ trustDomain: td, dir, config, clock, logger: nullLogger() });
    again.start();
    const active = again.status().find((s) => s.kind === 'x509' && s.phase === 'active')!;
    expect(active.notAfter).toBeGreaterThan(clock.nowMs());
    expect(again.published().x509).toHaveLength(1);
    again.stop();
  });

  it('forced rotation activates a fresh key at once and keeps the previous one published', () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca } = manager(clock);
    ca.start();
    const old = mint(ca, clock);
    ca.forceRotate('x509');
    expect(phases(ca, 'x509')).toEqual(['active', 'old']);
    const held = bundleAt(ca);
    expect(verifyX509Svid(old, held, { now: clock.now() }).id.toString()).toBe('spiffe://example.org/web');
    expect(verifyX509Svid(mint(ca, clock), held, { now: clock.now() }).id.toString()).toBe('spiffe://example.org/web');
    ca.stop();
  });
});
