// Key-compromise response on the CA manager: prepare → activate → taint → revoke, each wrong
// order refused with `authority-order`, the flags persisted in the journal across a restart; an
// upstream authority tainted and revoked by subject key id, refused while something signs under it.
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { CaManager, type RotationConfig } from '../../src/identity-plane/server/ca/manager.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { certificateFacts } from '../../src/identity-plane/spiffe/x509/index.js';
import { removeDir, tempDir } from '../support/server.js';
import { codeOf } from '../support/errors.js';

const td = mustTrustDomain('example.org');
const config: RotationConfig = { caTtlSeconds: 24 * 3600, prepareFraction: 1 / 2, activateFraction: 5 / 6, checkIntervalSeconds: 10, keyType: 'ec-p256', jwtKeyType: 'ec-p256' };

describe('CaManager authority lifecycle', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach(removeDir));
  const start = (dir: string) => {
    const ca = new CaManager({ trustDomain: td, dir, config, clock: new FakeClock(new Date('2026-01-01T00:00:00Z')), logger: nullLogger() });
    ca.start();
    return ca;
  };

  for (const kind of ['x509', 'jwt'] as const) {
    it(`${kind}: prepare publishes without signing, activate switches, taint and revoke take the old key out`, () => {
      const dir = tempDir('ca-lifecycle');
      dirs.push(dir);
      const ca = start(dir);
      const first = ca.status().find((s) => s.kind === kind && s.phase === 'active')!;
      const count = () => (kind === 'x509' ? ca.published().x509.length : ca.published().jwt.length);

      expect(codeOf(() => ca.activateAuthority(kind))).toBe('authority-order');
      expect(codeOf(() => ca.taintAuthority(kind, first.id))).toBe('authority-order');
      expect(codeOf(() => ca.revokeAuthority(kind, first.id))).toBe('authority-order');
      expect(codeOf(() => ca.taintAuthority(kind, 'no-such-key'))).toBe('not-found');

      const next = ca.prepareAuthority(kind);
      expect(next.phase).toBe('prepared');
      expect(count()).toBe(2);
      expect(ca.status().find((s) => s.kind === kind && s.phase === 'active')!.id).toBe(first.id);
      expect(codeOf(() => ca.activateAuthority(kind, first.id))).toBe('authority-order');

      expect(ca.activateAuthority(kind).id).toBe(next.id);
      if (kind === 'jwt') expect(ca.activeJwtKey.keyId).toBe(next.id);
      expect(codeOf(() => ca.revokeAuthority(kind, first.id))).toBe('authority-order'); // not tainted yet
      expect(codeOf(() => ca.taintAuthority(kind, next.id))).toBe('authority-order'); // the active one

      expect(ca.taintAuthority(kind, first.id).tainted).toBe(true);
      expect(count()).toBe(2); // tainted keys stay published until revoked
      expect(ca.revokeAuthority(kind, first.id).revoked).toBe(true);
      expect(count()).toBe(1);
      if (kind === 'jwt') expect(ca.published().jwt.map((k) => k.keyId)).toEqual([next.id]);
      ca.stop();

      const again = start(dir); // flags survive a restart through the journal
      const old = again.status().find((s) => s.id === first.id)!;
      expect(old).toMatchObject({ tainted: true, revoked: true, phase: 'old' });
      expect(kind === 'x509' ? again.published().x509.length : again.published().jwt.length).toBe(1);
      again.stop();
    });
  }
});

describe('CaManager upstream authority taint and revoke', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach(removeDir));
  const clock = new FakeClock(new Date('2026-01-01T00:00:00Z'));
  const upstreamCa = (days: number) => {
    const ca = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p256', ttlSeconds: days * 86400, now: clock.now() });
    return { certificate: ca.certificate, privateKey: ca.privateKey, ski: certificateFacts(ca.certificate).subjectKeyId! };
  };

  it('refuses while something signs under it, taints once nothing does, revokes it out of the bundle, persisted', () => {
    const dir = tempDir('ca-upstream');
    dirs.push(dir);
    const start = (u: ReturnType<typeof upstreamCa>) => {
      const ca = new CaManager({ trustDomain: td, dir, config, clock, logger: nullLogger(), upstream: u });
      ca.start();
      return ca;
    };
    const [u1, u2] = [upstreamCa(2), upstreamCa(30)];
    start(u1).stop();
    // The operator replaced ca.upstream and restarted: the bundle holds both roots, the active CA still chains to the first.
    const ca = start(u2);
    const bundle = [u1.certificate, u2.certificate];
    const first = ca.status().find((s) => s.kind === 'x509' && s.phase === 'active')!;
    expect(ca.upstreamStatus(bundle)).toEqual([
      expect.objectContaining({ subjectKeyId: u2.ski, configured: true, tainted: false, inUse: expect.stringContaining('ca.upstream') }),
      expect.objectContaining({ subjectKeyId: u1.ski, configured: false, inUse: expect.stringContaining(`active X.509 CA ${first.id} chains to it`) }),
    ]);

    expect(codeOf(() => ca.taintUpstreamAuthority(u1.ski, bundle))).toBe('authority-in-use');
    expect(codeOf(() => ca.taintUpstreamAuthority(u2.ski, bundle))).toBe('authority-in-use');
    expect(codeOf(() => ca.revokeUpstreamAuthority(u1.ski, bundle))).toBe('authority-order');
    expect(codeOf(() => ca.taintUpstreamAuthority('ab12', bundle))).toBe('not-found');
    expect(codeOf(() => ca.taintUpstreamAuthority('not hex', bundle))).toBe('usage');
    expect(codeOf(() => ca.taintUpstreamAuthority(first.id, bundle))).toBe('usage'); // its own CA: taint by key id

    const next = ca.prepareAuthority('x509');
    expect(codeOf(() => ca.taintUpstreamAuthority(u1.ski, bundle))).toBe('authority-in-use'); // still the active CA's
    ca.activateAuthority('x509', next.id);
    // As operators paste it from openssl: upper case with colons.
    const colons = u1.ski.toUpperCase().match(/../g)!.join(':');
    expect(ca.taintUpstreamAuthority(colons, bundle)).toMatchObject({ subjectKeyId: u1.ski, tainted: true, revoked: false, taintedAt: clock.nowMs() });
    expect(ca.taintedAuthorities().x509.some((der) => der.equals(u1.certificate.raw))).toBe(true);
    // The old CA signed under it counts as tainted (the server re-keys its own SVID off it); the new one does not.
    expect(ca.status().find((s) => s.id === first.id)).toMatchObject({ tainted: true, phase: 'old' });
    expect(ca.status().find((s) => s.id === next.id)?.tainted).toBeUndefined();
    expect(ca.published().withheld.x509).toHaveLength(0); // tainted stays published until revoked

    clock.advance(1000);
    expect(ca.revokeUpstreamAuthority(u1.ski, bundle)).toMatchObject({ revoked: true, revokedAt: clock.nowMs() });
    expect(ca.published().withheld.x509.map((c) => c.fingerprint256)).toEqual([u1.certificate.fingerprint256]);
    expect(ca.published().x509.map((c) => c.fingerprint256)).toEqual([u2.certificate.fingerprint256]);
    ca.stop();

    const again = start(u2); // the marks survive a restart through the journal
    expect(again.upstreamStatus([u2.certificate])).toContainEqual(expect.objectContaining({ subjectKeyId: u1.ski, tainted: true, revoked: true }));
    expect(again.published().withheld.x509).toHaveLength(1);
    clock.advance(3 * 86400 * 1000); // past the first root's notAfter: nothing chains to it any more
    again.rotate();
    expect(again.upstreamStatus([]).map((u) => u.subjectKeyId)).toEqual([u2.ski]);
    again.stop();
  });
});
