/**
 * How long a revoked key stays in the bundles the exporter watches. A server reports its revoked
 * keys with the instant of the revoke (admin CaStatus: `revoked_at_ms` of its own keys and of
 * upstream authorities); the sources report the bundles they serve. For each revocation and each
 * scope — `agents` (the trust domain's own bundle as agents serve it on the Workload API) and
 * `federated_peers` (the domain's bundle as federated peers hold it: a peer server's stored copy,
 * or a peer agent serving it as a federated bundle) — the tracker observes, once, the time from the
 * revoke until the last watched holder in that scope was seen without the key.
 *
 * No per-agent label: the answer is one observation per revocation and scope. "Every agent" means
 * every source the exporter watches in that scope; a source that is down keeps its last view, so
 * a revocation it has not been seen to drop stays pending (not falsely cleared). Times are as the
 * exporter sees them: at once for Workload API streams, within their poll interval for polled
 * sources; the revoke instant is the server's clock. A revocation that happened before the
 * exporter started is never timed (what it saw then says nothing of when the key left).
 */

export const REVOCATION_SCOPES = ['agents', 'federated_peers'] as const;
export type RevocationScope = (typeof REVOCATION_SCOPES)[number];

/** A key a server reports revoked: its own X.509 CA (key id = subject key id) or JWT key, or an upstream X.509 authority (by subject key id). */
export interface ObservedRevocation {
  readonly trustDomain: string;
  readonly kind: 'x509' | 'jwt';
  /** X.509: subject key identifier, lower-case hex; JWT: the kid. */
  readonly keyId: string;
  readonly revokedAtMs: number;
}

/** One bundle a source holds, as the tracker needs it: which keys, and in which scope. */
export interface KeyView {
  readonly trustDomain: string;
  readonly scope: RevocationScope;
  /** Subject key ids of the X.509 authorities; undefined when the source cannot see X.509 authorities. */
  readonly x509?: readonly string[];
  /** JWT key ids; undefined when the source cannot see JWT authorities. */
  readonly jwt?: readonly string[];
}

interface Held {
  readonly view: KeyView;
  readonly keys: { readonly x509?: ReadonlySet<string>; readonly jwt?: ReadonlySet<string> };
  /** `kind:keyId` → when this source was first seen without a key it held before. */
  readonly dropped: Map<string, number>;
}

interface Tracked {
  readonly reporter: string;
  readonly revocation: ObservedRevocation;
  readonly cleared: Set<RevocationScope>;
}

export interface RevocationTrackerOptions {
  /** When the exporter started watching (ms): revocations before it are not timed. */
  readonly startedAtMs: number;
  /** Every holder in `scope` was seen without the key, `seconds` after the revoke. */
  readonly cleared: (scope: RevocationScope, trustDomain: string, seconds: number) => void;
  /** Revocations kept at most (oldest dropped first); a handful live at a time. */
  readonly maxTracked?: number;
  /** Dropped keys remembered per source and trust domain. */
  readonly maxDropped?: number;
}

const keyOf = (kind: 'x509' | 'jwt', id: string) => `${kind}:${id}`;

export class RevocationTracker {
  /** source → trust domain → what it holds. */
  private readonly held = new Map<string, Map<string, Held>>();
  /** `trustDomain/kind:keyId` → the revocation. */
  private readonly tracked = new Map<string, Tracked>();
  private readonly domains = new Set<string>();

  constructor(private readonly opts: RevocationTrackerOptions) {}

  /** Trust domains some server reported revocations for (possibly none yet): the label values to expose. */
  trustDomains(): ReadonlySet<string> {
    return this.domains;
  }

  /**
   * What `reporter` (a server's admin source) reports revoked now for its `trustDomain`; replaces
   * its earlier report, so a key it no longer reports (expired, out of its journal) is forgotten.
   */
  learn(reporter: string, trustDomain: string, revocations: readonly ObservedRevocation[]): void {
    this.domains.add(trustDomain);
    const reported = new Set<string>();
    for (const r of revocations) {
      const id = `${r.trustDomain}/${keyOf(r.kind, r.keyId)}`;
      reported.add(id);
      if (this.tracked.has(id) || r.revokedAtMs < this.opts.startedAtMs) continue;
      this.tracked.set(id, { reporter, revocation: r, cleared: new Set() });
    }
    for (const [id, t] of this.tracked) if (t.reporter === reporter && !reported.has(id)) this.tracked.delete(id);
    const max = this.opts.maxTracked ?? 32;
    if (this.tracked.size > max) {
      const oldest = [...this.tracked].sort((a, b) => a[1].revocation.revokedAtMs - b[1].revocation.revokedAtMs).slice(0, this.tracked.size - max);
      for (const [id] of oldest) this.tracked.delete(id);
    }
    this.evaluate();
  }

  /** `source`'s bundles now (replacing what it held before); keys it no longer holds are dropped as of `nowMs`. */
  observe(source: string, views: readonly KeyView[], nowMs: number): void {
    const before = this.held.get(source);
    const next = new Map<string, Held>();
    for (const view of views) {
      const prev = before?.get(view.trustDomain);
      const keys = { x509: view.x509 ? new Set(view.x509) : undefined, jwt: view.jwt ? new Set(view.jwt) : undefined };
      const dropped = prev?.dropped ?? new Map<string, number>();
      for (const kind of ['x509', 'jwt'] as const) {
        const now = keys[kind];
        if (!now) continue;
        for (const id of prev?.keys[kind] ?? []) if (!now.has(id) && !dropped.has(keyOf(kind, id))) dropped.set(keyOf(kind, id), nowMs);
        for (const id of now) dropped.delete(keyOf(kind, id));
      }
      const max = this.opts.maxDropped ?? 64;
      for (const k of dropped.keys()) {
        if (dropped.size <= max) break;
        dropped.delete(k); // insertion order: the longest-dropped first
      }
      next.set(view.trustDomain, { view, keys, dropped });
    }
    if (next.size > 0) this.held.set(source, next);
    else this.held.delete(source);
    this.evaluate();
  }

  /** Per trust domain and scope: watched holders (source bundles) that still hold a revoked key. */
  holders(): Map<string, Record<RevocationScope, number>> {
    const out = new Map<string, Record<RevocationScope, number>>();
    for (const td of this.domains) out.set(td, { agents: 0, federated_peers: 0 });
    for (const sources of this.held.values()) {
      for (const h of sources.values()) {
        const holds = [...this.tracked.values()].some((t) => t.revocation.trustDomain === h.view.trustDomain && h.keys[t.revocation.kind]?.has(t.revocation.keyId));
        if (!holds) continue;
        const counts = out.get(h.view.trustDomain) ?? { agents: 0, federated_peers: 0 };
        counts[h.view.scope]++;
        out.set(h.view.trustDomain, counts);
      }
    }
    return out;
  }

  private evaluate(): void {
    for (const t of this.tracked.values()) {
      const { trustDomain, kind, keyId, revokedAtMs } = t.revocation;
      for (const scope of REVOCATION_SCOPES) {
        if (t.cleared.has(scope)) continue;
        let watched = 0;
        let last = revokedAtMs;
        let clear = true;
        for (const sources of this.held.values()) {
          const h = sources.get(trustDomain);
          const keys = h?.view.scope === scope ? h.keys[kind] : undefined;
          if (!h || !keys) continue; // not in this scope, or cannot see this kind of key
          watched++;
          if (keys.has(keyId)) {
            clear = false;
            break;
          }
          // A holder never seen with the key (it dropped it before the exporter watched it) counts as clear at the revoke.
          last = Math.max(last, h.dropped.get(keyOf(kind, keyId)) ?? revokedAtMs);
        }
        if (watched === 0 || !clear) continue;
        t.cleared.add(scope);
        this.opts.cleared(scope, trustDomain, (last - revokedAtMs) / 1000);
      }
    }
  }
}
