// When the server re-keys the X509-SVID it presents: at half-life, at once when its CA is gone for
// good (tainted, revoked, expired), not when it is only withheld, and never under an active CA that
// is itself withheld (no peer could verify it; a peer that narrowed its trust would be locked out).
import { describe, expect, it } from 'vitest';
import { servingSvidDecision, type ServingKeyMarks } from '../../src/identity-plane/server/ca/serving-svid.js';

const NOW = 1_000_000;
const MARGIN = 15_000;
const key = (id: string, phase: string, marks: Partial<ServingKeyMarks> = {}): ServingKeyMarks => ({ kind: 'x509', phase, id, withheld: false, notAfter: NOW + 3600_000, ...marks });
const svid = (caId: string | undefined, renewAtMs = NOW + 600_000, notAfterMs = NOW + 1_200_000) => ({ caId, renewAtMs, notAfterMs });

describe('servingSvidDecision', () => {
  it('mints the first SVID whatever the marks', () => {
    expect(servingSvidDecision([key('B', 'active', { withheld: true })], svid(undefined), NOW, MARGIN)).toEqual({ action: 'renew', reason: 'initial' });
  });

  it('keeps the SVID across a rotation while its CA stays published, and renews it at half-life under the new one', () => {
    const keys = [key('A', 'old'), key('B', 'active')];
    expect(servingSvidDecision(keys, svid('A'), NOW, MARGIN)).toEqual({ action: 'keep' });
    expect(servingSvidDecision(keys, svid('A', NOW), NOW, MARGIN)).toEqual({ action: 'renew', reason: 'half-life' });
  });

  it.each<[string, Partial<ServingKeyMarks>]>([
    ['revoked', { revoked: true }],
    ['tainted', { tainted: true }],
    ['expired', { notAfter: NOW }],
  ])('re-keys at once when its CA is %s and a published one signs', (_, marks) => {
    expect(servingSvidDecision([key('A', 'old', marks), key('B', 'active')], svid('A'), NOW, MARGIN)).toEqual({ action: 'renew', reason: 'authority-gone' });
  });

  it('keeps the SVID when its CA is only withheld: peers that narrowed their trust to it must still connect', () => {
    expect(servingSvidDecision([key('A', 'old', { withheld: true }), key('B', 'active')], svid('A'), NOW, MARGIN)).toEqual({ action: 'keep' });
    expect(servingSvidDecision([key('A', 'old', { withheld: true }), key('B', 'active', { withheld: true })], svid('A'), NOW, MARGIN)).toEqual({ action: 'keep' });
  });

  it('does not re-key onto an active CA that is withheld, whatever the reason, until it is published again', () => {
    const revoked = [key('A', 'old', { revoked: true }), key('B', 'active', { withheld: true })];
    expect(servingSvidDecision(revoked, svid('A'), NOW, MARGIN)).toEqual({ action: 'hold', wanted: 'authority-gone', activeCaId: 'B' });
    expect(servingSvidDecision([key('A', 'old'), key('B', 'active', { withheld: true })], svid('A', NOW), NOW, MARGIN))
      .toEqual({ action: 'hold', wanted: 'half-life', activeCaId: 'B' });
    expect(servingSvidDecision([key('A', 'old', { revoked: true }), key('B', 'active')], svid('A'), NOW, MARGIN)).toEqual({ action: 'renew', reason: 'authority-gone' });
  });

  it('renews under the same withheld CA at half-life (trust does not change), and under any CA when about to expire', () => {
    expect(servingSvidDecision([key('B', 'active', { withheld: true })], svid('B', NOW), NOW, MARGIN)).toEqual({ action: 'renew', reason: 'half-life' });
    const keys = [key('A', 'old'), key('B', 'active', { withheld: true })];
    expect(servingSvidDecision(keys, svid('A', NOW - 1, NOW + MARGIN + 1), NOW, MARGIN)).toMatchObject({ action: 'hold' });
    expect(servingSvidDecision(keys, svid('A', NOW - 1, NOW + MARGIN), NOW, MARGIN)).toEqual({ action: 'renew', reason: 'expiring' });
  });

  it('ignores JWT keys and keeps an SVID whose CA is published even if the active one is withheld', () => {
    const keys = [key('A', 'old'), key('B', 'active', { withheld: true }), { ...key('J', 'active'), kind: 'jwt' }];
    expect(servingSvidDecision(keys, svid('A'), NOW, MARGIN)).toEqual({ action: 'keep' });
  });
});
