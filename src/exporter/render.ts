/**
 * The scrape: renders the cached state within a series cap and a time budget, then appends the
 * event/self families of the prom-client registry, in the format the scrape negotiated (text 0.0.4
 * or OpenMetrics, common/telemetry/exposition.ts). Nothing here waits on a source: sources are
 * polled in the background, and a scrape only reads what they left.
 */
import { performance } from 'node:perf_hooks';
import type { Clock } from '../common/clock.js';
import { endExposition, escapeLabelValue, familyHeader, formatSampleValue, renderFamilies, type ExpositionFormat } from '../common/telemetry/exposition.js';
import { AGENT_STATUSES, LIFETIME_BUCKETS, METRIC, type AgentStatus, type DropReason } from './names.js';
import { REVOCATION_SCOPES } from './revocations.js';
import type { SelfMetrics } from './self-metrics.js';
import type { ExporterState, LifetimeGroup, ObservedSvid } from './state.js';

export interface RenderOptions {
  readonly maxSeries: number;
  readonly perSvidSeries: boolean;
  readonly perSvidMaxSeries: number;
  /** Per trust domain cap of authority_key_id values. */
  readonly authorityMaxSeries: number;
}

function formatValue(v: number | bigint): string {
  return typeof v === 'bigint' ? v.toString() : formatSampleValue(v);
}

/** Labels as `k="v",…` (no braces), for building series names cheaply. */
function labels(pairs: Record<string, string>): string {
  let out = '';
  for (const k in pairs) out += `${out ? ',' : ''}${k}="${escapeLabelValue(pairs[k])}"`;
  return out;
}

/** Number of sorted values <= x. */
export function countAtMost(sorted: Float64Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

class Writer {
  readonly lines: string[] = [];
  series = 0;
  truncated = false;
  readonly dropped: Record<DropReason, number> = { series_cap: 0, per_svid_cap: 0, authority_cap: 0 };

  constructor(private readonly maxSeries: number, private readonly deadline: number, private readonly format: ExpositionFormat) {}

  family(name: string, type: 'gauge' | 'histogram', help: string): void {
    this.lines.push(familyHeader(name, type, help, this.format).slice(0, -1));
  }

  /** Room for `n` more series? Otherwise they are counted as dropped. */
  room(n: number): boolean {
    if (this.series + n > this.maxSeries) {
      this.dropped.series_cap += n;
      return false;
    }
    this.series += n;
    return true;
  }

  sample(name: string, lbl: string, value: number | bigint): void {
    if (this.room(1)) this.lines.push(`${name}{${lbl}} ${formatValue(value)}`);
  }

  /** Out of time: stop rendering further groups (checked between groups). */
  overBudget(): boolean {
    if (!this.truncated && performance.now() > this.deadline) this.truncated = true;
    return this.truncated;
  }

  /** A snapshot histogram of remaining lifetime from a group's sorted expiry times. */
  lifetimeHistogram(name: string, lbl: string, g: LifetimeGroup, nowSec: number): void {
    if (!this.room(LIFETIME_BUCKETS.length + 3)) return;
    for (const b of LIFETIME_BUCKETS) this.lines.push(`${name}_bucket{${lbl},le="${b}"} ${countAtMost(g.notAfter, nowSec + b)}`);
    const n = g.notAfter.length;
    this.lines.push(`${name}_bucket{${lbl},le="+Inf"} ${n}`, `${name}_sum{${lbl}} ${formatValue(g.sumNotAfter - n * nowSec)}`, `${name}_count{${lbl}} ${n}`);
  }
}

interface Group {
  source: string;
  trustDomain: string;
  kind: 'x509_svid' | 'ca';
  group: LifetimeGroup;
}

function groups(state: ExporterState): Group[] {
  const out: Group[] = [];
  for (const s of state.sources()) {
    for (const [td, g] of s.svidGroups) out.push({ source: s.name, trustDomain: td, kind: 'x509_svid', group: g });
    for (const [td, v] of s.bundles) if (v.caGroup && v.caGroup.notAfter.length > 0) out.push({ source: s.name, trustDomain: td, kind: 'ca', group: v.caGroup });
  }
  return out;
}

/** The earliest-expiring SVIDs over all sources, at most `limit`. */
function earliestSvids(state: ExporterState, limit: number): { picked: { source: string; svid: ObservedSvid }[]; total: number } {
  const all: { source: string; svid: ObservedSvid }[] = [];
  let total = 0;
  for (const s of state.sources()) {
    total += s.sortedSvids.length;
    for (let i = 0; i < Math.min(limit, s.sortedSvids.length); i++) all.push({ source: s.name, svid: s.sortedSvids[i] });
  }
  all.sort((a, b) => a.svid.notAfterMs - b.svid.notAfterMs);
  return { picked: all.slice(0, limit), total };
}

export interface RenderResult {
  body: string;
  seconds: number;
  series: number;
  truncated: boolean;
  dropped: Record<DropReason, number>;
}

/**
 * Renders one scrape. `budgetMs` bounds the observation families; the prom-client families are
 * always appended (they are bounded by the config), and the scrape's own duration is recorded
 * into them for the next scrape.
 */
export async function renderMetrics(state: ExporterState, metrics: SelfMetrics, clock: Clock, opts: RenderOptions, budgetMs: number, format: ExpositionFormat = 'text'): Promise<RenderResult> {
  const started = performance.now();
  const w = new Writer(opts.maxSeries, started + budgetMs, format);
  const nowSec = clock.nowMs() / 1000;
  const all = groups(state);
  const sources = [...state.sources()];

  w.family(METRIC.remainingLifetime, 'histogram', 'Remaining lifetime of the credentials a source holds now (a snapshot at scrape time: read the buckets directly, do not rate() them).');
  for (const g of all) {
    if (w.overBudget()) break;
    w.lifetimeHistogram(METRIC.remainingLifetime, labels({ source: g.source, trust_domain: g.trustDomain, kind: g.kind }), g.group, nowSec);
  }

  w.family(METRIC.earliestExpiry, 'gauge', 'Earliest notAfter among the credentials a source holds now, Unix seconds.');
  for (const g of all) w.sample(METRIC.earliestExpiry, labels({ source: g.source, trust_domain: g.trustDomain, kind: g.kind }), g.group.notAfter[0]);

  if (opts.perSvidSeries && !w.overBudget()) {
    w.family(METRIC.svidExpiry, 'gauge', 'notAfter of one observed X509-SVID, Unix seconds (opt-in per-SVID mode; the earliest-expiring ones up to the cap).');
    const { picked, total } = earliestSvids(state, opts.perSvidMaxSeries);
    w.dropped.per_svid_cap += total - picked.length;
    for (const { source, svid } of picked) {
      w.sample(METRIC.svidExpiry, labels({ source, trust_domain: svid.trustDomain, spiffe_id: svid.spiffeId, serial: svid.serial }), svid.notAfterMs / 1000);
    }
  }

  if (!w.overBudget()) {
    // Key compromise: which authority signed the SVIDs still held, and since when the oldest is held.
    const { views, folded } = state.svidsByAuthority(nowSec * 1000, opts.authorityMaxSeries);
    w.dropped.authority_cap += folded;
    w.family(METRIC.svidsByAuthority, 'gauge', 'Unexpired X509-SVIDs held by any source, by trust domain and issuing authority (the leaf\'s authorityKeyIdentifier, hex); each SVID counted once across sources.');
    for (const v of views) w.sample(METRIC.svidsByAuthority, labels({ trust_domain: v.trustDomain, authority_key_id: v.authorityKeyId }), v.held);
    w.family(METRIC.oldestSvidAge, 'gauge', 'Age (now − notBefore) of the oldest unexpired X509-SVID each authority signed that a source holds, seconds.');
    for (const v of views) if (v.oldestNotBeforeMs !== undefined && Number.isFinite(v.oldestNotBeforeMs)) w.sample(METRIC.oldestSvidAge, labels({ trust_domain: v.trustDomain, authority_key_id: v.authorityKeyId }), nowSec - v.oldestNotBeforeMs / 1000);
  }

  if (!w.overBudget()) {
    w.family(METRIC.bundleSequence, 'gauge', 'Bundle sequence a source shows: its spiffe_sequence, or for sources without one (Workload API, PEM files) the reference sequence whose content it holds.');
    for (const s of sources) for (const [td, v] of s.bundles) {
      const seq = v.bundle.sequence ?? v.shownSequence;
      if (seq !== undefined) w.sample(METRIC.bundleSequence, labels({ source: s.name, trust_domain: td }), seq);
    }
    w.family(METRIC.bundleAuthorities, 'gauge', 'Authorities in the bundle a source shows, by kind (ca: X.509 authorities, jwt_authority: JWT keys).');
    for (const s of sources) for (const [td, v] of s.bundles) {
      if (v.bundle.x509) w.sample(METRIC.bundleAuthorities, labels({ source: s.name, trust_domain: td, kind: 'ca' }), v.bundle.x509.length);
      if (v.bundle.jwtKeyIds) w.sample(METRIC.bundleAuthorities, labels({ source: s.name, trust_domain: td, kind: 'jwt_authority' }), v.bundle.jwtKeyIds.length);
    }
    w.family(METRIC.bundleLastChange, 'gauge', 'When the bundle a source shows last changed (as seen by the exporter), Unix seconds; time() minus this is the bundle age.');
    for (const s of sources) for (const [td, v] of s.bundles) w.sample(METRIC.bundleLastChange, labels({ source: s.name, trust_domain: td }), v.contentSinceMs / 1000);
    w.family(METRIC.bundleRefreshHint, 'gauge', 'spiffe_refresh_hint of the bundle a source serves, seconds.');
    for (const s of sources) for (const [td, v] of s.bundles) {
      if (v.bundle.refreshHintSeconds !== undefined) w.sample(METRIC.bundleRefreshHint, labels({ source: s.name, trust_domain: td }), v.bundle.refreshHintSeconds);
    }
  }

  if (!w.overBudget()) {
    // Key compromise: who still holds a revoked key (the revocation histogram times when none does).
    w.family(METRIC.revokedAuthorityHolders, 'gauge', 'Watched holders still holding a key their server revoked since the exporter started, by scope: agents (Workload API sources, the trust domain\'s own bundle) and federated_peers (peer servers\' stored copies, peer agents\' federated bundles). 0 once the revoke reached all of them.');
    for (const [td, counts] of state.revocations.holders()) for (const scope of REVOCATION_SCOPES) w.sample(METRIC.revokedAuthorityHolders, labels({ scope, trust_domain: td }), counts[scope]);
  }

  if (!w.overBudget()) {
    const withoutSvid = state.entriesWithoutSvid();
    w.family(METRIC.registrationEntries, 'gauge', 'Workload registration entries on the server (node alias entries left out).');
    for (const s of sources) if (s.coverage) w.sample(METRIC.registrationEntries, labels({ source: s.name }), s.coverage.entries.length);
    w.family(METRIC.entriesWithoutSvid, 'gauge', 'Workload entries for which none of the exporter\'s sources holds an SVID.');
    for (const s of sources) if (s.coverage) w.sample(METRIC.entriesWithoutSvid, labels({ source: s.name }), withoutSvid.get(s.name) ?? 0);
    w.family(METRIC.agents, 'gauge', 'Attested agents known to the server, by status (active, banned, expired: SVID past its notAfter).');
    for (const s of sources) {
      if (!s.coverage) continue;
      const counts: Record<AgentStatus, number> = { active: 0, banned: 0, expired: 0 };
      for (const a of s.coverage.agents) counts[a.banned ? 'banned' : a.expiresAtMs <= nowSec * 1000 ? 'expired' : 'active']++;
      for (const status of AGENT_STATUSES) w.sample(METRIC.agents, labels({ source: s.name, status }), counts[status]);
    }
  }

  w.family(METRIC.sourceUp, 'gauge', '1 if the source\'s last poll or stream message succeeded, else 0 (its last data is still exported).');
  for (const s of sources) w.sample(METRIC.sourceUp, labels({ source: s.name }), s.up ? 1 : 0);
  w.family(METRIC.sourceLastSuccess, 'gauge', 'When the source last delivered data, Unix seconds.');
  for (const s of sources) if (s.lastSuccessMs !== undefined) w.sample(METRIC.sourceLastSuccess, labels({ source: s.name }), s.lastSuccessMs / 1000);

  const own = await renderFamilies(metrics.registry, format);
  const seconds = (performance.now() - started) / 1000;
  metrics.scrapeDone(seconds, w.dropped, w.truncated);
  return { body: endExposition(`${w.lines.join('\n')}\n${own}`, format), seconds, series: w.series, truncated: w.truncated, dropped: w.dropped };
}
