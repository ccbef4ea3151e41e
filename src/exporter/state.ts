/**
 * What the exporter knows: per source, the latest "state of the world" it delivered (SVIDs,
 * bundles, registration coverage), kept in the shape the scrape needs (sorted expiry arrays, so a
 * scrape costs O(buckets · log n) per group however many SVIDs exist). Sources push snapshots from
 * the background; the events derived from consecutive snapshots — rotations and bundle
 * propagation — go to the event families as they are seen. Time comes from the injected Clock.
 */
import type { Clock } from '../common/clock.js';
import { AUTHORITY_UNKNOWN, AUTHORITY_OTHER, type ErrorReason } from './names.js';
import type { SelfMetrics } from './self-metrics.js';
import { SvidscopeError } from '../common/errors/catalog.js';
import { RevocationTracker, type KeyView, type ObservedRevocation, type RevocationScope } from './revocations.js';

/** One X509-SVID as a source sees it. `key` is its slot within the source (rotation = same key, new serial). */
export interface ObservedSvid {
  readonly key: string;
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly serial: string;
  readonly notAfterMs: number;
  readonly notBeforeMs?: number;
  /** The leaf's authorityKeyIdentifier, hex: which CA key signed it. */
  readonly authorityKeyId?: string;
}

/** SVIDs of one trust domain signed by one authority, over every source (one per serial). */
export interface AuthorityView {
  readonly trustDomain: string;
  /** Hex key id, `unknown` without an authorityKeyIdentifier, `other` for the ones past the cap. */
  readonly authorityKeyId: string;
  /** Held and not yet expired. */
  readonly held: number;
  /** Earliest notBefore among those (age of the oldest = now − this); undefined when none is unexpired. */
  readonly oldestNotBeforeMs?: number;
}

/** Validity of one SVID, deduplicated by authority and serial across sources. */
interface HeldSvid {
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

export interface ObservedX509Authority {
  /** SHA-256 of the DER, hex. */
  readonly fingerprint: string;
  readonly notAfterMs: number;
  /** subjectKeyIdentifier, lower-case hex (what a revocation names); undefined when absent. */
  readonly subjectKeyId?: string;
}

/** A trust bundle as a source sees it; a part left undefined is a part this source cannot see. */
export interface ObservedBundle {
  readonly trustDomain: string;
  readonly sequence?: bigint;
  readonly refreshHintSeconds?: number;
  readonly x509?: readonly ObservedX509Authority[];
  readonly jwtKeyIds?: readonly string[];
  /** Held as a federated bundle (a peer's), not as the source's own trust domain's; undefined when the source cannot tell. */
  readonly federated?: boolean;
}

export interface ObservedCoverage {
  /** Workload entries (node alias entries left out). */
  readonly entries: readonly { readonly spiffeId: string }[];
  readonly agents: readonly { readonly id: string; readonly banned: boolean; readonly expiresAtMs: number }[];
}

/** A full replacement of the parts it carries; parts left undefined stay as they were. */
export interface SourceSnapshot {
  readonly svids?: readonly ObservedSvid[];
  readonly bundles?: readonly ObservedBundle[];
  readonly coverage?: ObservedCoverage;
  /** A server's revoked keys of its own trust domain (server admin sources). */
  readonly revocations?: { readonly trustDomain: string; readonly keys: readonly ObservedRevocation[] };
}

/**
 * What a source is to the revocation timing: an agent's Workload API (its own bundle is the
 * `agents` scope, federated ones `federated_peers`), a server's admin API (its federated bundles
 * are `federated_peers`; its own is the reference), or neither.
 */
export type SourceRole = 'agent' | 'server' | 'other';

/** Expiry times (seconds) of one (source, trust domain, kind) group, sorted ascending. */
export interface LifetimeGroup {
  readonly notAfter: Float64Array;
  readonly sumNotAfter: number;
}

export interface BundleView {
  readonly bundle: ObservedBundle;
  readonly x509Key?: string;
  readonly jwtKey?: string;
  readonly caGroup?: LifetimeGroup;
  /** When this source's view of the bundle last changed. */
  readonly contentSinceMs: number;
  /** The reference sequence this view matches (by sequence, else by content). */
  shownSequence?: bigint;
  lagObservedSeq?: bigint;
}

export interface SourceState {
  readonly name: string;
  readonly role: SourceRole;
  svids?: Map<string, ObservedSvid>;
  svidGroups: Map<string, LifetimeGroup>;
  svidIds: Set<string>;
  /** Only kept in per-SVID mode: the SVIDs by expiry. */
  sortedSvids: ObservedSvid[];
  bundles: Map<string, BundleView>;
  coverage?: ObservedCoverage;
  up: boolean;
  lastSuccessMs?: number;
}

interface HistoryRecord {
  readonly x509Key?: string;
  readonly jwtKey?: string;
  /** When the reference was seen changing to this sequence; unknown for the first one seen. */
  readonly changedAtMs?: number;
}

interface Reference {
  readonly source: string;
  readonly history: Map<bigint, HistoryRecord>;
}

const HISTORY_LIMIT = 64;

export interface StateOptions {
  readonly clock: Clock;
  readonly metrics: SelfMetrics;
  readonly perSvid: boolean;
  /** Sources whose sequences are the reference, by preference. */
  readonly references: readonly string[];
}

export function lifetimeGroup(notAfterMs: Iterable<number>): LifetimeGroup {
  const arr = Float64Array.from(notAfterMs, (ms) => ms / 1000).sort();
  let sum = 0;
  for (const v of arr) sum += v;
  return { notAfter: arr, sumNotAfter: sum };
}

const keyOf = (parts: readonly string[] | undefined) => (parts === undefined ? undefined : [...parts].sort().join(','));

export class ExporterState {
  private readonly byName = new Map<string, SourceState>();
  private readonly refs = new Map<string, Reference>();
  private coverageCache: Map<string, number> | undefined;
  /** trust domain → authority key id → SVIDs: rebuilt after SVIDs change, read at every scrape. */
  private authorityCache: Map<string, Map<string, HeldSvid[]>> | undefined;
  /** Revoke → every watched holder without the key (revocations.ts). */
  readonly revocations: RevocationTracker;

  constructor(private readonly opts: StateOptions) {
    this.revocations = new RevocationTracker({
      startedAtMs: opts.clock.nowMs(),
      cleared: (scope, trustDomain, seconds) => opts.metrics.revocationCleared(scope, trustDomain, seconds),
    });
  }

  addSource(name: string, role: SourceRole = 'other'): void {
    this.byName.set(name, { name, role, svidGroups: new Map(), svidIds: new Set(), sortedSvids: [], bundles: new Map(), up: false });
  }

  sources(): IterableIterator<SourceState> {
    return this.byName.values();
  }

  source(name: string): SourceState {
    const s = this.byName.get(name);
    if (!s) throw new SvidscopeError('not-found', `exporter: unknown source ${name}`);
    return s;
  }

  /** A source delivered its current view: it is up, and the parts it carries replace the old ones. */
  observe(name: string, snapshot: SourceSnapshot): void {
    const s = this.source(name);
    const now = this.opts.clock.nowMs();
    if (snapshot.svids) {
      this.observeSvids(s, snapshot.svids, now);
      this.authorityCache = undefined;
    }
    if (snapshot.bundles) this.observeBundles(s, snapshot.bundles, now);
    if (snapshot.revocations) {
      this.opts.metrics.revocationDomain(snapshot.revocations.trustDomain);
      this.revocations.learn(name, snapshot.revocations.trustDomain, snapshot.revocations.keys);
    }
    if (snapshot.coverage) s.coverage = snapshot.coverage;
    if (snapshot.svids || snapshot.coverage) this.coverageCache = undefined;
    s.up = true;
    s.lastSuccessMs = now;
    this.opts.metrics.sourceUpdate(name);
  }

  /** A failed poll or stream: the source is down until it delivers again (its last view stays). */
  error(name: string, reason: ErrorReason): void {
    this.source(name).up = false;
    this.opts.metrics.sourceError(name, reason);
  }

  /** One unreadable item (a file) of a poll that otherwise worked: counted, the source stays up. */
  itemError(name: string, reason: ErrorReason): void {
    this.opts.metrics.sourceError(name, reason);
  }

  private observeSvids(s: SourceState, svids: readonly ObservedSvid[], now: number): void {
    const previous = s.svids;
    const next = new Map<string, ObservedSvid>();
    const byTd = new Map<string, number[]>();
    const ids = new Set<string>();
    for (const svid of svids) {
      next.set(svid.key, svid);
      ids.add(svid.spiffeId);
      let list = byTd.get(svid.trustDomain);
      if (!list) byTd.set(svid.trustDomain, (list = []));
      list.push(svid.notAfterMs);
      const before = previous?.get(svid.key);
      if (before && before.serial !== svid.serial) this.opts.metrics.rotation(s.name, 'x509_svid', (before.notAfterMs - now) / 1000);
    }
    s.svids = next;
    s.svidIds = ids;
    s.svidGroups = new Map([...byTd].map(([td, list]) => [td, lifetimeGroup(list)]));
    s.sortedSvids = this.opts.perSvid ? [...svids].sort((a, b) => a.notAfterMs - b.notAfterMs) : [];
  }

  private observeBundles(s: SourceState, bundles: readonly ObservedBundle[], now: number): void {
    const next = new Map<string, BundleView>();
    for (const b of bundles) {
      const td = b.trustDomain;
      const prev = s.bundles.get(td);
      const x509Key = keyOf(b.x509?.map((a) => a.fingerprint));
      const jwtKey = keyOf(b.jwtKeyIds);
      const changed = !prev || prev.x509Key !== x509Key || prev.jwtKey !== jwtKey || prev.bundle.sequence !== b.sequence;
      if (prev && changed) this.bundleRotations(s.name, prev.bundle, b, now);
      const view: BundleView = {
        bundle: b, x509Key, jwtKey,
        caGroup: b.x509 ? lifetimeGroup(b.x509.map((a) => a.notAfterMs)) : undefined,
        contentSinceMs: changed || !prev ? now : prev.contentSinceMs,
        shownSequence: changed || !prev ? undefined : prev.shownSequence,
        lagObservedSeq: prev?.lagObservedSeq,
      };
      next.set(td, view);
    }
    s.bundles = next;
    this.revocations.observe(s.name, revocationViews(s.role, bundles), now);
    for (const [td, view] of next) {
      if (view.bundle.sequence !== undefined && this.isReferenceFor(s.name, td)) this.referenceUpdate(s.name, td, view, now);
      else this.match(s, td, view);
    }
  }

  /** A new authority next to known ones is a rotation (prepare/publish); its lifetime left is the newest old one's. */
  private bundleRotations(source: string, before: ObservedBundle, after: ObservedBundle, now: number): void {
    if (before.x509 && after.x509 && before.x509.length > 0) {
      const known = new Set(before.x509.map((a) => a.fingerprint));
      if (after.x509.some((a) => !known.has(a.fingerprint))) {
        const newest = Math.max(...before.x509.map((a) => a.notAfterMs));
        this.opts.metrics.rotation(source, 'ca', (newest - now) / 1000);
      }
    }
    if (before.jwtKeyIds && after.jwtKeyIds && before.jwtKeyIds.length > 0) {
      const known = new Set(before.jwtKeyIds);
      if (after.jwtKeyIds.some((k) => !known.has(k))) this.opts.metrics.rotation(source, 'jwt_authority', undefined);
    }
  }

  private rank(source: string): number {
    const i = this.opts.references.indexOf(source);
    return i < 0 ? Infinity : i;
  }

  private isReferenceFor(source: string, td: string): boolean {
    const r = this.rank(source);
    if (r === Infinity) return false;
    const current = this.refs.get(td);
    if (!current || r < this.rank(current.source)) {
      // A more preferred reference takes over; its history starts afresh (sequences of different publishers do not mix).
      if (current?.source !== source) this.refs.set(td, { source, history: new Map() });
      return true;
    }
    return current.source === source;
  }

  private referenceUpdate(source: string, td: string, view: BundleView, now: number): void {
    const ref = this.refs.get(td)!;
    const seq = view.bundle.sequence!;
    if (!ref.history.has(seq)) {
      ref.history.set(seq, { x509Key: view.x509Key, jwtKey: view.jwtKey, changedAtMs: ref.history.size > 0 ? now : undefined });
      if (ref.history.size > HISTORY_LIMIT) ref.history.delete([...ref.history.keys()].reduce((a, b) => (a < b ? a : b)));
    }
    view.shownSequence = seq;
    for (const other of this.byName.values()) {
      if (other.name === source) continue;
      const v = other.bundles.get(td);
      if (v) this.match(other, td, v);
    }
  }

  /** Which reference sequence a source shows: its own sequence if it has one, else the newest whose content it holds. */
  private match(s: SourceState, td: string, view: BundleView): void {
    const ref = this.refs.get(td);
    if (!ref || ref.source === s.name) return;
    let seq: bigint | undefined;
    if (view.bundle.sequence !== undefined) {
      seq = ref.history.has(view.bundle.sequence) ? view.bundle.sequence : undefined;
    } else {
      for (const [candidate, rec] of ref.history) {
        const comparable = (view.x509Key !== undefined && rec.x509Key !== undefined) || (view.jwtKey !== undefined && rec.jwtKey !== undefined);
        const fits = comparable
          && (view.x509Key === undefined || rec.x509Key === undefined || view.x509Key === rec.x509Key)
          && (view.jwtKey === undefined || rec.jwtKey === undefined || view.jwtKey === rec.jwtKey);
        if (fits && (seq === undefined || candidate > seq)) seq = candidate;
      }
    }
    view.shownSequence = seq;
    if (seq === undefined || (view.lagObservedSeq !== undefined && seq <= view.lagObservedSeq)) return;
    view.lagObservedSeq = seq;
    const changedAt = ref.history.get(seq)!.changedAtMs;
    // The reference is polled: a source may show the change before the reference poll does (lag 0).
    if (changedAt !== undefined) this.opts.metrics.propagation(s.name, Math.max(0, view.contentSinceMs - changedAt) / 1000);
  }

  /** Per coverage source: workload entries none of the sources holds an SVID for. */
  entriesWithoutSvid(): Map<string, number> {
    if (this.coverageCache) return this.coverageCache;
    const result = new Map<string, number>();
    const holders = [...this.byName.values()].filter((s) => s.svidIds.size > 0);
    for (const s of this.byName.values()) {
      if (!s.coverage) continue;
      let missing = 0;
      for (const e of s.coverage.entries) if (!holders.some((h) => h.svidIds.has(e.spiffeId))) missing++;
      result.set(s.name, missing);
    }
    this.coverageCache = result;
    return result;
  }

  /**
   * Per trust domain and issuing authority: SVIDs held by any source and not expired at `nowMs`,
   * and the earliest notBefore among them. The same SVID seen by two sources (a workload's
   * Workload API and the file it writes) counts once. At most `cap` key ids per trust domain: the
   * ones holding most SVIDs keep their own series, the rest fold into `other`; `folded` counts them.
   */
  svidsByAuthority(nowMs: number, cap: number): { views: AuthorityView[]; folded: number } {
    const views: AuthorityView[] = [];
    let folded = 0;
    for (const [trustDomain, byKey] of this.authorityGroups()) {
      const rows = [...byKey].map(([authorityKeyId, list]) => {
        let held = 0;
        let oldest: number | undefined;
        for (const h of list) {
          if (h.notAfterMs <= nowMs) continue;
          held++;
          if (oldest === undefined || h.notBeforeMs < oldest) oldest = h.notBeforeMs;
        }
        return { trustDomain, authorityKeyId, held, oldestNotBeforeMs: oldest };
      }).sort((a, b) => b.held - a.held || (a.authorityKeyId < b.authorityKeyId ? -1 : 1));
      if (rows.length <= cap) {
        views.push(...rows);
        continue;
      }
      const rest = rows.slice(cap - 1);
      folded += rest.length;
      const oldest = rest.reduce<number | undefined>((m, r) => (r.oldestNotBeforeMs !== undefined && (m === undefined || r.oldestNotBeforeMs < m) ? r.oldestNotBeforeMs : m), undefined);
      views.push(...rows.slice(0, cap - 1), { trustDomain, authorityKeyId: AUTHORITY_OTHER, held: rest.reduce((n, r) => n + r.held, 0), oldestNotBeforeMs: oldest });
    }
    return { views, folded };
  }

  private authorityGroups(): Map<string, Map<string, HeldSvid[]>> {
    if (this.authorityCache) return this.authorityCache;
    const seen = new Set<string>();
    const groups = new Map<string, Map<string, HeldSvid[]>>();
    for (const s of this.byName.values()) {
      for (const svid of s.svids?.values() ?? []) {
        const key = svid.authorityKeyId ?? AUTHORITY_UNKNOWN;
        const id = `${svid.trustDomain}/${key}/${svid.serial}`;
        if (seen.has(id)) continue;
        seen.add(id);
        let byKey = groups.get(svid.trustDomain);
        if (!byKey) groups.set(svid.trustDomain, (byKey = new Map()));
        let list = byKey.get(key);
        if (!list) byKey.set(key, (list = []));
        // Without a notBefore (a source that cannot see it) the SVID's age is unknown: it never counts as the oldest.
        list.push({ notBeforeMs: svid.notBeforeMs ?? Infinity, notAfterMs: svid.notAfterMs });
      }
    }
    this.authorityCache = groups;
    return groups;
  }

  /** Every source has delivered at least once. */
  ready(): { ok: boolean; checks: Record<string, string> } {
    const checks: Record<string, string> = {};
    let ok = true;
    for (const s of this.byName.values()) {
      if (s.lastSuccessMs === undefined) ok = false;
      checks[s.name] = s.up ? 'ok' : s.lastSuccessMs === undefined ? 'no data yet' : 'down (serving its last data)';
    }
    return { ok, checks };
  }
}

/** The bundles of a source that count for revocation timing, with their scope. */
function revocationViews(role: SourceRole, bundles: readonly ObservedBundle[]): KeyView[] {
  const views: KeyView[] = [];
  for (const b of bundles) {
    const scope: RevocationScope | undefined = b.federated === true && role !== 'other' ? 'federated_peers'
      : b.federated === false && role === 'agent' ? 'agents'
      : undefined;
    if (!scope) continue;
    views.push({
      trustDomain: b.trustDomain, scope,
      x509: b.x509?.map((a) => a.subjectKeyId).filter((k): k is string => k !== undefined),
      jwt: b.jwtKeyIds,
    });
  }
  return views;
}
