import type { Clock, TimerHandle } from '../../../common/clock.js';
import { isSvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { parseSpiffeBundle, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import { parseSpiffeId, type TrustDomain } from '../../spiffe/id/index.js';
import { pathLimitOf } from '../../spiffe/x509svid/index.js';
import type { Datastore } from '../datastore/types.js';
import { authoritiesDigest, documentWithSequence, latestAuthorityExpiryMs } from './bundle-doc.js';
import { fetchBundleDocument, FederationFetchError, type EndpointAuth, type FetchFailureReason } from './fetch.js';
import type { Relationship } from './store.js';

/** Push-style hook for telemetry; the Prometheus families are read from `status()` at scrape time instead. */
export interface FederationMetrics {
  refreshed?(trustDomain: string, outcome: 'updated' | 'unchanged' | 'error', reason: FetchFailureReason | undefined, seconds: number): void;
  /** A refresh refused by a limit (path building of the endpoint's X509-SVID), by the limit's name. */
  limitHit?(limit: string): void;
}

export interface RefreshLimits {
  minRefreshSeconds: number;
  maxRefreshSeconds: number;
  defaultRefreshSeconds: number;
  fetchTimeoutSeconds: number;
}

export interface RefresherDeps {
  relationship: Relationship;
  /** The relationship's trust domain, parsed where the relationship entered; every bundle of it is built with this. */
  trustDomain: TrustDomain;
  datastore: Datastore;
  clock: Clock;
  logger: Logger;
  limits: RefreshLimits;
  /** The bundle to authenticate an https_spiffe endpoint of trust domain `td` with (own domain or a stored foreign one). */
  trustBundleFor(td: TrustDomain): Promise<SpiffeBundle | undefined>;
  metrics?: FederationMetrics;
}

export interface RelationshipStatus {
  readonly relationship: Relationship;
  /** The stored bundle of the trust domain, if any. */
  readonly bundleSequence?: bigint;
  /** When the stored bundle's content last changed (ms). */
  readonly bundleUpdatedAtMs?: number;
  /** Latest notAfter of the stored bundle's X.509 authorities (ms). */
  readonly authorityExpiryMs?: number;
  /** `spiffe_refresh_hint` of the stored bundle, seconds. */
  readonly refreshHintSeconds?: number;
  readonly lastAttemptMs?: number;
  /** Last fetch that ended with the stored bundle current (updated or unchanged). */
  readonly lastSuccessMs?: number;
  readonly lastError?: { readonly atMs: number; readonly reason: FetchFailureReason; readonly message: string };
  readonly consecutiveFailures: number;
  readonly nextRefreshMs?: number;
  /** Failed refreshes since start, by reason. */
  readonly errors: ReadonlyMap<FetchFailureReason, number>;
}

export type RefreshOutcome = 'updated' | 'unchanged';

interface StoredView {
  bundle: SpiffeBundle;
  sequence: bigint;
  digest: string;
  updatedAtMs: number;
}

/**
 * Keeps one federated bundle current: fetch from the peer's bundle endpoint, authenticate per
 * profile, parse, refuse a lower sequence, store. Polls at the bundle's refresh hint clamped to
 * [refresh_min, refresh_max] (default hint when absent); after a failure it retries at
 * refresh_min × 2^(failures−1), never later than the regular interval, so an endpoint that comes
 * back is picked up within one interval. A failure never touches the stored bundle: consumers keep
 * the last good one.
 */
export class BundleRefresher {
  private timer: TimerHandle | undefined;
  private stopped = false;
  private queue: Promise<unknown> = Promise.resolve();
  private stored: StoredView | undefined;
  private lastAttemptMs: number | undefined;
  private lastSuccessMs: number | undefined;
  private lastError: RelationshipStatus['lastError'];
  private failures = 0;
  private nextRefreshMs: number | undefined;
  /**
   * The refresh hint of the last document the endpoint served. An unchanged bundle is not stored
   * again, so without this a peer that shortened its hint (or a bootstrap bundle carrying another
   * hint) would keep us on the stored document's schedule.
   */
  private servedHintSeconds: number | undefined;
  private readonly errors = new Map<FetchFailureReason, number>();

  constructor(private readonly deps: RefresherDeps) {}

  get trustDomain(): string {
    return this.deps.relationship.trustDomain;
  }

  /** Loads the stored bundle (if any) and schedules the first fetch at once. */
  async start(): Promise<void> {
    await this.reloadStored();
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.nextRefreshMs = undefined;
  }

  /** Resolves when the refreshes queued so far have ended (tests, shutdown). */
  async idle(): Promise<void> {
    await this.queue;
  }

  status(): RelationshipStatus {
    return {
      relationship: this.deps.relationship,
      bundleSequence: this.stored?.sequence,
      bundleUpdatedAtMs: this.stored?.updatedAtMs,
      authorityExpiryMs: this.stored ? latestAuthorityExpiryMs(this.stored.bundle) : undefined,
      refreshHintSeconds: this.stored?.bundle.refreshHintSeconds,
      lastAttemptMs: this.lastAttemptMs,
      lastSuccessMs: this.lastSuccessMs,
      lastError: this.lastError,
      consecutiveFailures: this.failures,
      nextRefreshMs: this.nextRefreshMs,
      errors: new Map(this.errors),
    };
  }

  /** Fetches now (after any refresh under way) and reschedules; rejects with a FederationFetchError on failure. */
  refreshNow(): Promise<RefreshOutcome> {
    const run = this.queue.then(() => this.attempt());
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Re-reads the stored bundle, e.g. after an operator replaced it. */
  async reloadStored(): Promise<void> {
    const td = this.trustDomain;
    try {
      const row = await this.deps.datastore.getBundle(td);
      const bundle = parseSpiffeBundle(this.deps.trustDomain, row.document);
      this.stored = { bundle, sequence: row.sequence, digest: authoritiesDigest(bundle), updatedAtMs: row.updatedAt.getTime() };
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'not-found') this.stored = undefined;
      else throw err;
    }
  }

  private interval(): number {
    const { minRefreshSeconds, maxRefreshSeconds, defaultRefreshSeconds } = this.deps.limits;
    const hint = this.servedHintSeconds ?? this.stored?.bundle.refreshHintSeconds;
    const seconds = hint !== undefined && hint > 0 ? hint : defaultRefreshSeconds;
    return Math.min(maxRefreshSeconds, Math.max(minRefreshSeconds, seconds)) * 1000;
  }

  private backoff(): number {
    return Math.min(this.interval(), this.deps.limits.minRefreshSeconds * 1000 * 2 ** Math.max(0, this.failures - 1));
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const { clock } = this.deps;
    if (this.timer) clock.clearTimeout(this.timer);
    this.nextRefreshMs = clock.nowMs() + delayMs;
    this.timer = clock.setTimeout(() => {
      this.timer = undefined;
      this.refreshNow().catch(() => undefined); // recorded in the status; the next attempt is scheduled
    }, delayMs);
  }

  private async attempt(): Promise<RefreshOutcome> {
    if (this.stopped) throw new FederationFetchError('connect', `the relationship with ${this.trustDomain} was stopped`);
    const { clock, logger, relationship } = this.deps;
    const started = clock.nowMs();
    this.lastAttemptMs = started;
    try {
      const outcome = await this.fetchAndStore();
      this.failures = 0;
      this.lastSuccessMs = clock.nowMs();
      this.deps.metrics?.refreshed?.(this.trustDomain, outcome, undefined, (clock.nowMs() - started) / 1000);
      logger.debug({ trustDomain: this.trustDomain, url: relationship.endpointUrl, outcome, sequence: this.stored?.sequence.toString() }, 'fetched federated bundle');
      this.schedule(this.interval());
      return outcome;
    } catch (err) {
      if (this.stopped) throw err; // deleted or shutting down: nothing to record or reschedule
      const failure = err instanceof FederationFetchError ? err : new FederationFetchError('datastore', `cannot store the bundle of ${this.trustDomain}: ${(err as Error).message}`, { cause: err });
      this.failures++;
      this.lastError = { atMs: clock.nowMs(), reason: failure.reason, message: failure.message };
      this.errors.set(failure.reason, (this.errors.get(failure.reason) ?? 0) + 1);
      this.deps.metrics?.refreshed?.(this.trustDomain, 'error', failure.reason, (clock.nowMs() - started) / 1000);
      const limit = pathLimitOf(failure);
      if (limit) this.deps.metrics?.limitHit?.(limit);
      const retryMs = this.backoff();
      logger.warn({ trustDomain: this.trustDomain, url: relationship.endpointUrl, reason: failure.reason, code: innermostCode(failure), err: failure.message, failures: this.failures, retryInMs: retryMs },
        'federated bundle refresh failed; keeping the stored bundle');
      this.schedule(retryMs);
      throw failure;
    }
  }

  private async endpointAuth(): Promise<EndpointAuth> {
    const rel = this.deps.relationship;
    if (rel.profile === 'https_web') return { profile: 'https_web', rootsPem: rel.webRootsPem };
    const endpointId = parseSpiffeId(rel.endpointSpiffeId ?? '');
    // Self-serving: the latest stored bundle of the domain (bootstrap first); otherwise the endpoint domain's own bundle.
    const trustBundle = endpointId.trustDomain.equals(this.deps.trustDomain) ? this.stored?.bundle : await this.deps.trustBundleFor(endpointId.trustDomain);
    return { profile: 'https_spiffe', endpointSpiffeId: endpointId.toString(), trustBundle };
  }

  private async fetchAndStore(): Promise<RefreshOutcome> {
    const { clock, datastore, logger, relationship } = this.deps;
    await this.reloadStored(); // another server sharing the datastore may have stored a newer one
    const document = await fetchBundleDocument({
      url: relationship.endpointUrl, auth: await this.endpointAuth(), timeoutMs: this.deps.limits.fetchTimeoutSeconds * 1000, now: clock.now(),
    });
    let fetched: SpiffeBundle;
    try {
      fetched = parseSpiffeBundle(this.deps.trustDomain, document);
    } catch (err) {
      throw new FederationFetchError('malformed', `the bundle endpoint of ${this.trustDomain} served a document that is not a SPIFFE bundle: ${(err as Error).message}`, { cause: err });
    }
    this.servedHintSeconds = fetched.refreshHintSeconds;
    const stored = this.stored;
    const sequence = fetched.sequenceNumber;
    if (stored && sequence !== undefined && sequence < stored.sequence) {
      throw new FederationFetchError('sequence_regressed', `the bundle endpoint of ${this.trustDomain} served sequence ${sequence}, lower than the stored ${stored.sequence}`);
    }
    const digest = authoritiesDigest(fetched);
    if (stored && digest === stored.digest && (sequence === undefined || sequence === stored.sequence)) return 'unchanged';
    // No sequence in the peer's document: the latest fetch wins, under a local sequence so consumers see the change.
    const nextSequence = sequence ?? (stored ? stored.sequence + 1n : 0n);
    const toStore = sequence === undefined ? documentWithSequence(fetched, nextSequence) : document;
    if (stored && sequence === stored.sequence) logger.warn({ trustDomain: this.trustDomain, sequence: String(sequence) }, 'federated bundle changed without a new spiffe_sequence; storing it');
    if (this.stopped) throw new FederationFetchError('connect', `the relationship with ${this.trustDomain} was stopped`);
    const now = clock.now();
    try {
      await datastore.setBundle({ trustDomain: this.trustDomain, document: toStore, sequence: nextSequence, updatedAt: now });
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'bundle-sequence-regressed') {
        throw new FederationFetchError('sequence_regressed', `the stored bundle of ${this.trustDomain} is newer than sequence ${nextSequence}`, { cause: err });
      }
      throw new FederationFetchError('datastore', `cannot store the bundle of ${this.trustDomain}: ${(err as Error).message}`, { cause: err });
    }
    const bundle = sequence === undefined ? parseSpiffeBundle(this.deps.trustDomain, toStore) : fetched;
    this.stored = { bundle, sequence: nextSequence, digest, updatedAtMs: now.getTime() };
    logger.info({ trustDomain: this.trustDomain, sequence: nextSequence.toString(), previous: stored?.sequence.toString(), x509Authorities: bundle.x509Authorities.length, jwtAuthorities: bundle.jwtAuthorities.size },
      'stored federated bundle');
    return 'updated';
  }
}

/** The most specific catalogue code behind a failure (e.g. `x509-path-budget` under `unavailable`), for the log. */
function innermostCode(err: unknown): string | undefined {
  let code: string | undefined;
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (isSvidscopeError(e)) code = e.code;
  }
  return code;
}
