/**
 * When the server re-keys an X509-SVID it presents itself (the node API's TLS identity, the
 * https_spiffe bundle endpoint's). Peers authenticate it against *their* copy of this trust
 * domain's bundle, so the authority under which it is minted decides who can still connect, and
 * a peer that cannot connect can never fetch the bundle that would fix that:
 *
 * - It is renewed at half-life, and at once when the CA that signed it is gone for good
 *   (tainted, revoked, expired) while another CA signs.
 * - A CA that is only withheld (an operator's reversible fault, e.g. a game day's bad rotation)
 *   does not count as gone. Agents refuse a bundle that drops the server's authority, so they
 *   keep trusting it and recover when it is published again; re-keying instead would strand
 *   every peer that narrowed its trust while another CA was withheld (seen: withhold the active
 *   CA, peers adopt the bundle of the old one, withhold the old one too, publish the active one
 *   again first: a server re-keyed onto it is one those peers can never verify).
 * - It is minted only under an authority peers can have: the active CA must be in the published
 *   bundle, or be the one that signed the current SVID (trust does not change). Until then the
 *   current SVID is kept, and renewed anyway only when it is about to expire: an SVID few peers
 *   trust is better than an expired one none do.
 */

/** The marks of one key, as CaManager.status reports them. */
export interface ServingKeyMarks {
  kind: string;
  phase: string;
  id: string;
  withheld: boolean;
  notAfter?: number;
  tainted?: boolean;
  revoked?: boolean;
}

/** The SVID being presented now. */
export interface ServingSvid {
  /** The CA that signed it; undefined before the first one. */
  caId?: string;
  renewAtMs: number;
  notAfterMs: number;
}

export type ServingSvidDecision =
  | { action: 'keep' }
  | { action: 'renew'; reason: 'initial' | 'half-life' | 'authority-gone' | 'expiring' }
  /** Renewal is wanted but the active CA is not published: the current SVID stays. */
  | { action: 'hold'; wanted: 'half-life' | 'authority-gone'; activeCaId?: string };

export function servingSvidDecision(keys: readonly ServingKeyMarks[], current: ServingSvid, nowMs: number, expiringWithinMs: number): ServingSvidDecision {
  if (current.caId === undefined) return { action: 'renew', reason: 'initial' };
  const x509 = keys.filter((k) => k.kind === 'x509');
  const active = x509.find((k) => k.phase === 'active');
  const published = (k: ServingKeyMarks | undefined) => k !== undefined && !k.withheld && !k.revoked && (k.notAfter === undefined || k.notAfter > nowMs);
  const signer = x509.find((k) => k.id === current.caId);
  const signerGone = signer === undefined || signer.tainted === true || signer.revoked === true || (signer.notAfter !== undefined && signer.notAfter <= nowMs);
  // Re-minting from the same CA would change nothing for trust; a tainted CA is never the active one.
  const wanted = signerGone && active?.id !== current.caId ? 'authority-gone' : nowMs >= current.renewAtMs ? 'half-life' : undefined;
  if (!wanted) return { action: 'keep' };
  if (published(active) || (active !== undefined && active.id === current.caId)) return { action: 'renew', reason: wanted };
  if (nowMs >= current.notAfterMs - expiringWithinMs) return { action: 'renew', reason: 'expiring' };
  return { action: 'hold', wanted, ...(active ? { activeCaId: active.id } : {}) };
}
