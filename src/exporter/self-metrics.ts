/**
 * The event families (counters and histograms that move when something happens) and the
 * exporter's own health, on a prom-client registry of the exporter's own (never the global one).
 * Label values are source names from the config and fixed sets from names.ts, so these families
 * are bounded by construction; the snapshot families are rendered separately (render.ts).
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../common/telemetry/registry.js';
import {
  DROP_REASONS,
  ERROR_REASONS,
  LAG_BUCKETS,
  LIFETIME_BUCKETS,
  METRIC,
  SCRAPE_BUCKETS,
  type CredentialKind,
  type DropReason,
  type ErrorReason,
} from './names.js';
import { REVOCATION_SCOPES, type RevocationScope } from './revocations.js';

export class SelfMetrics {
  readonly registry = new Registry();
  private readonly rotations: Counter<'source' | 'kind'>;
  private readonly rotationLifetime: Histogram<'source' | 'kind'>;
  private readonly lag: Histogram<'source'>;
  private readonly errors: Counter<'source' | 'reason'>;
  private readonly updates: Counter<'source'>;
  private readonly scrape: Histogram;
  private readonly dropped: Counter<'reason'>;
  private readonly truncated: Counter;
  private readonly revocation: Histogram<'scope' | 'trust_domain'>;
  private readonly revocationDomains = new Set<string>();

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.rotations = new Counter({ name: METRIC.rotations, help: 'Credential rotations seen: a slot (SPIFFE ID, file, agent) got a new certificate, or a bundle got a new authority.', labelNames: ['source', 'kind'], registers });
    this.rotationLifetime = new Histogram({
      name: METRIC.rotationRemainingLifetime, help: 'Lifetime the replaced credential had left when its rotation was seen (negative: rotated after expiry).',
      labelNames: ['source', 'kind'], buckets: [...LIFETIME_BUCKETS], registers,
    });
    this.lag = new Histogram({ name: METRIC.propagationLag, help: 'Time from the reference source showing a new bundle sequence to this source showing it.', labelNames: ['source'], buckets: [...LAG_BUCKETS], registers });
    this.errors = new Counter({ name: METRIC.sourceErrors, help: 'Failed polls, stream errors and unreadable items of a source, by reason.', labelNames: ['source', 'reason'], registers });
    this.updates = new Counter({ name: METRIC.sourceUpdates, help: 'Observations a source delivered (polls that succeeded, stream messages).', labelNames: ['source'], registers });
    this.scrape = new Histogram({ name: METRIC.scrapeDuration, help: 'Time to render /metrics.', buckets: [...SCRAPE_BUCKETS], registers });
    this.dropped = new Counter({ name: METRIC.seriesDropped, help: 'Series left out of scrapes by a cap, summed over scrapes.', labelNames: ['reason'], registers });
    this.truncated = new Counter({ name: METRIC.scrapeTruncated, help: 'Scrapes that ran out of their time budget and left families out.', registers });
    this.revocation = new Histogram({
      name: METRIC.revocationPropagation,
      help: 'Time from a key\'s revoke at its server (revoked_at in the admin CaStatus) until every holder the exporter watches was seen without it, one observation per revoked key and scope: agents (the Workload API sources serving the trust domain\'s own bundle) or federated_peers (peer servers\' stored copies and peer agents serving it as a federated bundle).',
      labelNames: ['scope', 'trust_domain'], buckets: [...LAG_BUCKETS], registers,
    });
    for (const reason of DROP_REASONS) this.dropped.inc({ reason }, 0);
    // prom-client's defaults minus the *_total gauges promtool rejects (the shared helper).
    if (opts.processMetrics ?? true) registerProcessMetrics(this.registry);
  }

  /** Pre-initialises a source's series at 0 so rates and absent() behave from the first scrape. */
  addSource(source: string, opts: { kinds: readonly CredentialKind[]; lag: boolean }): void {
    this.updates.inc({ source }, 0);
    for (const reason of ERROR_REASONS) this.errors.inc({ source, reason }, 0);
    for (const kind of opts.kinds) {
      this.rotations.inc({ source, kind }, 0);
      if (kind !== 'jwt_authority') this.rotationLifetime.zero({ source, kind });
    }
    if (opts.lag) this.lag.zero({ source });
  }

  rotation(source: string, kind: CredentialKind, remainingSeconds: number | undefined): void {
    this.rotations.inc({ source, kind });
    if (remainingSeconds !== undefined) this.rotationLifetime.observe({ source, kind }, remainingSeconds);
  }

  propagation(source: string, lagSeconds: number): void {
    this.lag.observe({ source }, lagSeconds);
  }

  /** A server-reported trust domain: its revocation series exist from now on (0 until a revoke clears). */
  revocationDomain(trustDomain: string): void {
    // zero() resets a series: only the first report of a domain may create them, never a later poll.
    if (this.revocationDomains.has(trustDomain)) return;
    this.revocationDomains.add(trustDomain);
    for (const scope of REVOCATION_SCOPES) this.revocation.zero({ scope, trust_domain: trustDomain });
  }

  revocationCleared(scope: RevocationScope, trustDomain: string, seconds: number): void {
    this.revocation.observe({ scope, trust_domain: trustDomain }, seconds);
  }

  sourceError(source: string, reason: ErrorReason): void {
    this.errors.inc({ source, reason });
  }

  sourceUpdate(source: string): void {
    this.updates.inc({ source });
  }

  scrapeDone(seconds: number, dropped: Partial<Record<DropReason, number>>, truncated: boolean): void {
    this.scrape.observe(seconds);
    for (const [reason, n] of Object.entries(dropped)) if (n) this.dropped.inc({ reason }, n);
    if (truncated) this.truncated.inc();
  }
}

