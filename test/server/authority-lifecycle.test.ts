// Key-compromise response on the CA manager: prepare → activate → taint → revoke, each wrong
// order refused with `authority-order`, the flags persisted in the journal across a restart.
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { CaManager, type RotationConfig } from '../../src/identity-plane/server/ca/manager.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
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
