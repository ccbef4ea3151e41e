import { decodeProtectedHeader } from 'jose';
import { JwtSvidCache } from './jwt-cache.js';
import { chainAuthorityIds, TaintedAuthorities } from './taint.js';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Clock, TimerHandle } from '../../../common/clock.js';
import { SvidscopeError, isSvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { parseSpiffeBundle, x509BundleToPem, BundleSet, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import { parseTrustDomain } from '../../spiffe/id/index.js';
import { encodePem, certificateFacts } from '../../spiffe/x509/index.js';
import { createCsr, generateKeyPair, generateWorkloadKey, type KeyType } from '../../spiffe/mint/index.js';
import { verifyX509Svid } from '../../spiffe/x509svid/index.js';
import type { EntryMsg, SyncRequestMsg } from '../../server-api/messages.js';
import { ChangeWatch } from './change-watch.js';
import { entrySetDigest } from '../../server-api/entry-sync.js';
import { BundleFetchTracker } from '../../server-api/bundle-state.js';
import type { AgentConfig } from '../config.js';
import { ServerCallError, type ServerClient } from '../../server-api/node-client.js';
import type { AgentSvidStore } from '../svid-store.js';
import type { CachedX509Svid, WorkloadCache } from './cache.js';
import { ChainReader } from './svid-parts.js';
import * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import { SpanAttr, withSpan } from '../../../common/telemetry/tracing.js';

export type RotationReason = 'new' | 'scheduled' | 'ca_change' | 'entry_change' | 'forced' | 'tainted';

/** Unexpired SVIDs the agent holds that one authority signed (X.509: its key identifier; JWT: its kid). */
export interface AuthorityHolding {
  kind: 'x509' | 'jwt';
  /** '' when the SVID does not name its signer. */
  authorityKeyId: string;
  count: number;
  /** When the oldest of them was issued (received, for X.509; see CachedX509Svid.notBefore), epoch ms. */
  oldestIssuedAtMs: number;
}

/** Telemetry hooks; the manager knows nothing of metrics libraries. */
export interface ManagerEvents {
  sync?(result: 'ok' | 'error', seconds: number): void;
  rotation?(reason: RotationReason, ttlFractionLeft: number): void;
  rotationFailure?(reason: string): void;
  /** A new bundle sequence is being served; `serverUpdatedAtMs` is when the server stored it (0 if unknown). */
  bundleUpdated?(kind: 'own' | 'federated', trustDomain: string, sequence: bigint, serverUpdatedAtMs: number): void;
  /** A JWT-SVID was dropped from the cache to keep it within its bounds. */
  jwtCacheEvicted?(): void;
  /** No SVID signed by a tainted authority is held any more, `seconds` after the agent first saw one. */
  taintCleared?(seconds: number): void;
  /** One entry sync, by the kind of answer. */
  entrySync?(kind: 'unchanged' | 'incremental' | 'full'): void;
  /** The change stream to the server opened (true) or closed (false). */
  pushConnected?(up: boolean): void;
  /** A change notification arrived on the stream. */
  pushNotification?(kind: 'entries' | 'bundle' | 'initial'): void;
}

export interface ManagerDeps {
  config: AgentConfig;
  clock: Clock;
  logger: Logger;
  server: ServerClient;
  cache: WorkloadCache;
  store: AgentSvidStore;
  events?: ManagerEvents;
  tracer?: Tracer;
}

/** SPIRE's cap on CSRs per BatchNewX509SVID. */
const BATCH_SIZE = 500;
/** Batches at the server at once while minting: one being signed, the next being prepared or sent. */
const PIPELINE_DEPTH = 2;
const MAX_BACKOFF_MS = 60_000;
/**
 * Every this many entry syncs the agent asks for the full list instead of a delta: a consistency
 * check besides the digest of every incremental answer (≈ 5 min at the default 5 s interval, at
 * most 30 min while the change stream is up and the poll runs every push_sync_interval).
 */
export const FULL_SYNC_EVERY = 60;
/** Entry cap of the JWT-SVID cache, besides its byte bound (jwt_cache_max_bytes). */
const JWT_CACHE_MAX_ENTRIES = 10_000;

/**
 * The agent's control loop: attest (or reuse the SVID on disk), then every sync interval fetch the
 * authorized entries and bundles, mint what is missing or due for rotation in batches (keys are
 * generated here and never leave the agent), renew the agent SVID at half-life, and keep serving
 * what is cached while the server is away. Eviction leads back to attestation with a new token.
 */
export class AgentManager {
  private agentId: string | undefined;
  private agentNotAfter = 0;
  private agentRenewAt = 0;
  private knownRevision = '0';
  private lastSyncSuccessMs = 0;
  private lastBundleSequence: bigint | undefined;
  /** The own bundle as last fetched, and under which bundle state (GetBundles is skipped while it holds). */
  private ownBundle: SpiffeBundle | undefined;
  private readonly bundleFetch = new BundleFetchTracker();
  private readonly federatedSequences = new Map<string, bigint | undefined>();
  private timer: TimerHandle | undefined;
  /** When the poll timer fires (epoch ms). */
  private timerDueMs = 0;
  private failures = 0;
  private stopped = false;
  private readonly jwtCache: JwtSvidCache;
  private readonly forced = new Set<string>();
  /** What the server marked tainted, as of the last sync. */
  private taint = TaintedAuthorities.none;
  /** When the agent first held an SVID signed by a tainted authority, until it holds none (epoch ms). */
  private taintSeenAt: number | undefined;
  /** Entry syncs since the last full one; a full one is due at FULL_SYNC_EVERY or when the view is in doubt. */
  private syncsSinceFull = 0;
  private needFullSync = true;
  /** A sync is running; another request during it runs one more right after (bursts coalesce). */
  private syncing = false;
  /** The last sync started through syncOnce; the next one waits for it. */
  private syncChain: Promise<void> = Promise.resolve();
  private syncAgain = false;
  /** For the next run: a pushed bundle state (bundle-only notification), and whether an entry sync was asked for too. */
  private pushedBundleState: Buffer | undefined;
  private entrySyncAsked = false;
  /** The change stream (push); polling stays the fallback. */
  private readonly watch: ChangeWatch;

  constructor(private readonly deps: ManagerDeps) {
    const events = {
      ...deps.events,
      pushConnected: (up: boolean) => {
        deps.events?.pushConnected?.(up);
        if (!up) this.pollSoon();
      },
    };
    this.watch = new ChangeWatch({ server: deps.server, clock: deps.clock, logger: deps.logger, attested: () => this.agentId !== undefined, syncNow: (bundleState) => this.requestSync(bundleState), events });
    this.jwtCache = new JwtSvidCache({ maxEntries: JWT_CACHE_MAX_ENTRIES, maxBytes: deps.config.jwtCacheMaxBytes }, () => deps.events?.jwtCacheEvicted?.());
  }

  /** Bytes the JWT-SVID cache holds now (for the gauge). */
  get jwtCacheBytes(): number {
    return this.jwtCache.bytes;
  }

  get status() {
    return { agentId: this.agentId, agentSvidNotAfter: this.agentNotAfter, lastSyncSuccessMs: this.lastSyncSuccessMs, attested: this.agentId !== undefined };
  }

  /** Attests or restores the identity, runs a first sync, then keeps syncing in the background. */
  async start(): Promise<void> {
    try {
      await this.ensureIdentity();
      await this.syncOnce();
    } catch (err) {
      this.deps.logger.error({ err: describe(err) }, 'initial sync failed; retrying in the background');
      this.failures++;
    }
    this.schedule();
    if (this.deps.config.push !== false) this.watch.start();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.watch.stop();
  }

  /** Whether the change stream to the server is open. */
  get pushConnected(): boolean {
    return this.watch.connected;
  }

  /**
   * Runs a sync now (a change notification), or right after the one running: a burst of
   * notifications costs at most one extra sync. The poll timer restarts after it. With
   * `bundleState` (a bundle notification that carries it) the sync skips the entry call and takes
   * that state as the entry answer's, unless an entry sync was asked for as well.
   */
  requestSync(bundleState?: Buffer): void {
    if (this.stopped) return;
    if (bundleState) this.pushedBundleState = bundleState;
    else this.entrySyncAsked = true;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    void this.runSync();
  }

  private async runSync(): Promise<void> {
    this.syncing = true;
    try {
      do {
        this.syncAgain = false;
        const bundleOnly = this.entrySyncAsked ? undefined : this.pushedBundleState;
        this.entrySyncAsked = false;
        this.pushedBundleState = undefined;
        try {
          await this.syncOnce(bundleOnly);
        } catch (err) {
          this.failures++;
          this.deps.logger.warn({ err: describe(err), failures: this.failures }, 'sync failed; serving cached SVIDs');
          break;
        }
      } while (this.syncAgain && !this.stopped);
    } finally {
      this.syncing = false;
      this.schedule();
    }
  }

  /** Re-mints every cached SVID at the next sync (a forced rotation). */
  forceRotation(): void {
    for (const e of this.deps.cache.allEntries()) this.forced.add(e.id);
  }

  /**
   * One sync, after any sync already running: the start-up sync, the poll, push notifications and
   * callers of this method never overlap, so two syncs cannot both mint the same missing SVIDs (the
   * surplus would only be evicted again under x509_svid_cache_max_size).
   */
  syncOnce(bundleState?: Buffer): Promise<void> {
    const run = this.syncChain.then(() => withSpan(this.deps.tracer, 'svidscope.agent/sync', { [SpanAttr.trustDomain]: this.deps.config.trustDomain.name }, () => this.sync(bundleState)));
    this.syncChain = run.catch(() => undefined);
    return run;
  }

  /** One sync; `pushedBundleState` (a bundle-only notification's) stands in for the entry call's answer. */
  private async sync(pushedBundleState?: Buffer): Promise<void> {
    const { cache, clock } = this.deps;
    const start = clock.nowMs();
    try {
      await this.ensureIdentity();
      if (clock.nowMs() >= this.agentRenewAt) await this.renewAgentSvid();
      const bundleState = pushedBundleState ?? await this.syncEntries();
      const federatedNames = [...new Set(cache.allEntries().flatMap((e) => e.federates_with))];
      let own = this.ownBundle;
      let bundleChanged = false;
      if (!own || this.bundleFetch.stale(bundleState, federatedNames)) {
        ({ own, bundleChanged } = await this.fetchBundles(federatedNames));
        this.bundleFetch.fetched(bundleState, federatedNames);
      } else {
        // Nothing GetBundles could answer changed: the taint in force still applies (a renewal it asked for may have failed).
        await this.applyTaint(this.taint);
      }
      await this.mintStale(own, bundleChanged);
      this.noteTaintProgress();
      this.lastSyncSuccessMs = clock.nowMs();
      this.failures = 0;
      this.deps.events?.sync?.('ok', (clock.nowMs() - start) / 1000);
    } catch (err) {
      this.handleEviction(err);
      this.deps.events?.sync?.('error', (clock.nowMs() - start) / 1000);
      throw err;
    }
  }

  /**
   * GetBundles and what follows from it: the own bundle (refused when it would lock the agent out),
   * federated bundles, the tainted authorities. Skipped when the sync answer's bundle state says
   * nothing changed since the last fetch.
   */
  private async fetchBundles(federatedNames: string[]): Promise<{ own: SpiffeBundle; bundleChanged: boolean }> {
    const { server, cache, logger } = this.deps;
    const bundles = await server.getBundles(federatedNames);
    const own = parseSpiffeBundle(this.deps.config.trustDomain, bundles.bundle.document);
    const federated = new Map<string, SpiffeBundle>();
    for (const b of bundles.federated_bundles) {
      try {
        federated.set(b.trust_domain, parseSpiffeBundle(parseTrustDomain(b.trust_domain), b.document));
      } catch (err) {
        logger.warn({ trustDomain: b.trust_domain, err: describe(err) }, 'ignoring an unparsable federated bundle');
      }
    }
    const bundleChanged = own.sequenceNumber !== this.lastBundleSequence;
    if (bundleChanged) this.refuseLockout(own);
    if (cache.setBundles(own, federated) || bundleChanged) {
      if (bundleChanged) {
        this.deps.store.saveBundle(bundles.bundle.document);
        server.setTrust(x509BundleToPem(own));
        this.lastBundleSequence = own.sequenceNumber;
        this.deps.events?.bundleUpdated?.('own', own.trustDomain.name, own.sequenceNumber ?? 0n, Number(bundles.bundle.updated_at_ms ?? 0));
      }
    }
    for (const msg of bundles.federated_bundles) {
      const b = federated.get(msg.trust_domain);
      if (!b || this.federatedSequences.get(msg.trust_domain) === b.sequenceNumber) continue;
      this.federatedSequences.set(msg.trust_domain, b.sequenceNumber);
      this.deps.events?.bundleUpdated?.('federated', msg.trust_domain, b.sequenceNumber ?? 0n, Number(msg.updated_at_ms ?? 0));
    }
    await this.applyTaint(TaintedAuthorities.fromMessage(bundles.tainted));
    this.ownBundle = own;
    return { own, bundleChanged };
  }

  /**
   * Fetches the entry view: a delta against the (id, revision) pairs the cache holds, or the full
   * list when one is due (first sync, every FULL_SYNC_EVERY, or after a digest mismatch). A server
   * without the incremental protocol ignores the new fields and answers as before. Returns the
   * answer's bundle state (empty from a server without it).
   */
  private async syncEntries(): Promise<Buffer | undefined> {
    const { server, cache, logger } = this.deps;
    const full = this.needFullSync || this.syncsSinceFull >= FULL_SYNC_EVERY - 1;
    const request: SyncRequestMsg = full
      ? { known_revision: '0' }
      : { known_revision: this.knownRevision, incremental: true, known_entries: cache.allEntries().map(pairOf) };
    const res = await server.sync(request);
    if (res.unchanged) {
      this.syncsSinceFull++;
      this.deps.events?.entrySync?.('unchanged');
      return res.bundle_state;
    }
    this.knownRevision = res.revision;
    if (res.incremental) {
      cache.applyEntryDelta(res.entries, res.deleted_ids ?? []);
      this.syncsSinceFull++;
      this.deps.events?.entrySync?.('incremental');
      if (res.digest?.length && !entrySetDigest(cache.allEntries().map(pairOf)).equals(res.digest)) {
        logger.warn({ entries: cache.entryCount }, 'entry view differs from the server\'s after a delta; asking for the full list');
        this.needFullSync = true;
      }
      return res.bundle_state;
    }
    cache.setEntries(res.entries);
    this.needFullSync = false;
    this.syncsSinceFull = 0;
    this.deps.events?.entrySync?.('full');
    return res.bundle_state;
  }

  /** A JWT-SVID for one of the caller's entries, cached until half its lifetime has passed. */
  async fetchJwtSvid(entry: EntryMsg, audience: string[]): Promise<{ token: string; expiresAt: number }> {
    const key = `${entry.id}\n${[...audience].sort().join('\n')}`;
    const now = this.deps.clock.nowMs();
    const cached = this.jwtCache.get(key);
    if (cached && now < cached.issuedAt + (cached.expiresAt - cached.issuedAt) / 2 && !this.taint.jwtKeyIds.has(cached.keyId)) return cached;
    const res = await this.deps.server.newJwtSvid(entry.id, audience);
    const fresh = { token: res.svid.token, issuedAt: Number(res.svid.issued_at) * 1000, expiresAt: Number(res.svid.expires_at) * 1000, keyId: keyIdOf(res.svid.token) };
    this.jwtCache.set(key, fresh);
    return fresh;
  }

  /** SVIDs held now (unexpired) that a tainted authority signed, the agent's own SVID included. */
  taintedSvids(): { x509: number; jwt: number } {
    const taint = this.taint;
    if (taint.empty) return { x509: 0, jwt: 0 };
    const now = this.deps.clock.nowMs();
    let x509 = 0;
    for (const s of this.deps.cache.allSvids()) if (s.notAfter > now && taint.chainIsTainted(s.authorityIds, s.chain)) x509++;
    if (this.agentChainDer && this.agentNotAfter > now && taint.chainIsTainted(this.agentAuthorityIds, this.agentChainDer)) x509++;
    let jwt = 0;
    for (const t of this.jwtCache.values()) if (t.expiresAt > now && taint.jwtKeyIds.has(t.keyId)) jwt++;
    return { x509, jwt };
  }

  /** Unexpired SVIDs held per signing authority (workload X.509-SVIDs, the agent's own, cached JWT-SVIDs). */
  svidsByAuthority(): AuthorityHolding[] {
    const now = this.deps.clock.nowMs();
    const out = new Map<string, AuthorityHolding>();
    const add = (kind: 'x509' | 'jwt', authorityKeyId: string, issuedAt: number) => {
      const key = `${kind}/${authorityKeyId}`;
      const h = out.get(key);
      if (h) {
        h.count++;
        h.oldestIssuedAtMs = Math.min(h.oldestIssuedAtMs, issuedAt);
      } else {
        out.set(key, { kind, authorityKeyId, count: 1, oldestIssuedAtMs: issuedAt });
      }
    };
    for (const s of this.deps.cache.allSvids()) if (s.notAfter > now) add('x509', s.authorityIds[0] ?? '', s.notBefore);
    if (this.agentChainDer && this.agentNotAfter > now) add('x509', this.agentAuthorityIds[0] ?? '', this.agentIssuedAt);
    for (const t of this.jwtCache.values()) if (t.expiresAt > now) add('jwt', t.keyId, t.issuedAt);
    return [...out.values()];
  }

  /**
   * Acts on the server's tainted authorities (every sync, as the mark does not change the bundle):
   * cached JWT-SVIDs they signed are dropped, and the agent's own SVID is renewed at once if they
   * signed it. Workload X.509-SVIDs follow in mintStale, through the same batches as any rotation.
   */
  private async applyTaint(taint: TaintedAuthorities): Promise<void> {
    const { logger, clock } = this.deps;
    if (taint.description !== this.taint.description && !taint.empty) {
      logger.warn({ tainted: taint.description }, 'the server marked authorities tainted: replacing every SVID they signed');
    }
    this.taint = taint;
    if (taint.empty) return;
    const held = this.taintedSvids();
    if (this.taintSeenAt === undefined && held.x509 + held.jwt > 0) this.taintSeenAt = clock.nowMs();
    const dropped = this.jwtCache.deleteWhere((t) => taint.jwtKeyIds.has(t.keyId));
    if (dropped > 0) logger.info({ count: dropped }, 'dropped cached JWT-SVIDs signed by a tainted key');
    if (this.agentChainDer && taint.chainIsTainted(this.agentAuthorityIds, this.agentChainDer)) {
      logger.warn({ agentId: this.agentId }, 'the agent SVID was signed by a tainted authority; renewing it now');
      await this.renewAgentSvid();
    }
  }

  /** Reports the end of a taint response: nothing signed by a tainted authority is held any more. */
  private noteTaintProgress(): void {
    if (this.taintSeenAt === undefined) return;
    const left = this.taintedSvids();
    if (left.x509 + left.jwt > 0) return;
    const seconds = (this.deps.clock.nowMs() - this.taintSeenAt) / 1000;
    this.taintSeenAt = undefined;
    this.deps.logger.info({ seconds }, 'replaced every SVID signed by a tainted authority');
    this.deps.events?.taintCleared?.(seconds);
  }

  private schedule(): void {
    if (this.stopped) return;
    const base = this.deps.config.syncIntervalSeconds * 1000;
    this.setPollTimer(this.failures === 0 ? this.pollDelayMs(base) : Math.min(MAX_BACKOFF_MS, base * 1.5 ** this.failures));
  }

  private setPollTimer(delay: number): void {
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timerDueMs = this.deps.clock.nowMs() + delay;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      void this.runSync();
    }, delay);
  }

  /**
   * Until the next poll: sync_interval, or with the change stream up push_sync_interval (±10 %
   * jitter, so a fleet that synced together after a bundle change drifts apart) but no later than
   * the next renewal of a workload SVID or of the agent's own, so rotation stays on time. Pushed
   * changes arrive at once either way; this poll is the consistency check, and at 10,000 agents
   * polling every 5 s was a full core of the server's event loop.
   */
  private pollDelayMs(base: number): number {
    const pushed = (this.deps.config.pushSyncIntervalSeconds ?? 0) * 1000;
    if (!this.watch.connected || pushed <= base) return base;
    const due = Math.min(this.agentRenewAt, this.nextSvidRotationMs()) - this.deps.clock.nowMs();
    return Math.max(base, Math.min(pushed * (0.9 + Math.random() * 0.2), due));
  }

  /** When the first cached workload X509-SVID is due for rotation (epoch ms; Infinity when none is cached). */
  private nextSvidRotationMs(): number {
    const { cache, config } = this.deps;
    let next = Infinity;
    for (const e of cache.allEntries()) {
      const svid = cache.svidFor(e.id);
      if (svid) next = Math.min(next, renewalDueMs(svid, config.rotationFraction));
    }
    return next;
  }

  /** The change stream went down: changes are no longer pushed, so the poll comes back to sync_interval. */
  private pollSoon(): void {
    if (this.stopped || !this.timer) return; // no timer: a sync is running, and schedules after it
    const base = this.deps.config.syncIntervalSeconds * 1000;
    if (this.timerDueMs - this.deps.clock.nowMs() > base) this.setPollTimer(base);
  }

  /**
   * The bundle the agent already holds at start (from disk, or from attestation): later syncs
   * measure propagation against it. Without this, the first sync after every restart would count
   * the age of the server's bundle as propagation lag. Reported without a lag (0 = unknown).
   */
  private bundleKnown(own: SpiffeBundle): void {
    if (this.lastBundleSequence !== undefined) return;
    this.lastBundleSequence = own.sequenceNumber;
    this.deps.events?.bundleUpdated?.('own', own.trustDomain.name, own.sequenceNumber ?? 0n, 0);
  }

  private async ensureIdentity(): Promise<void> {
    if (this.agentId && this.deps.clock.nowMs() < this.agentNotAfter) return;
    const { store, server, config, logger } = this.deps;
    const stored = this.agentId ? undefined : store.load();
    if (stored) {
      const leaf = new X509Certificate(stored.chainDer[0]);
      const notAfter = certificateFacts(leaf).notAfter.getTime();
      if (notAfter > this.deps.clock.nowMs()) {
        const storedBundle = parseSpiffeBundle(config.trustDomain, stored.bundleDocument);
        server.setTrust(x509BundleToPem(storedBundle));
        this.bundleKnown(storedBundle);
        this.adoptIdentity(stored.chainDer, stored.privateKey, leaf);
        logger.info({ agentId: this.agentId }, 'reusing the agent SVID on disk');
        return;
      }
    }
    if (stored?.bundleDocument) server.setTrust(x509BundleToPem(parseSpiffeBundle(config.trustDomain, stored.bundleDocument)));
    else if (config.trustBundlePath) server.setTrust(readFileSync(config.trustBundlePath, 'utf8'));
    const token = this.joinToken();
    const key = generateKeyPair('ec-p256');
    server.clearIdentity();
    const res = await server.attest(token, createCsr(key.privateKey, key.publicKey));
    const own = parseSpiffeBundle(config.trustDomain, res.bundle.document);
    store.saveBundle(res.bundle.document);
    server.setTrust(x509BundleToPem(own));
    this.bundleKnown(own);
    store.save({ chainDer: res.svid.cert_chain, privateKey: key.privateKey });
    this.adoptIdentity(res.svid.cert_chain, key.privateKey, new X509Certificate(res.svid.cert_chain[0]));
    logger.info({ agentId: this.agentId }, 'attested to the server');
  }

  private joinToken(): string {
    const { joinToken, joinTokenFile } = this.deps.config;
    const token = joinTokenFile ? readFileSync(joinTokenFile, 'utf8').trim() : joinToken;
    // A token others can read is as exposed as one on the command line: say so, then use it.
    if (joinTokenFile && (statSync(joinTokenFile).mode & 0o077) !== 0) {
      this.deps.logger.warn({ file: joinTokenFile, mode: (statSync(joinTokenFile).mode & 0o777).toString(8) }, 'join_token_file is readable by group or others; make it 0600');
    }
    if (!token) throw new SvidscopeError('config-invalid', 'agent: not attested and no join token configured (join_token or join_token_file)');
    return token;
  }

  /**
   * A bundle that no longer holds the authority of this agent's own SVID, or of the server's SVID
   * it just talked to, would lock the agent out: the server authenticates agents against that same
   * bundle, and the agent the server against it, so the next sync could never bring the fix. A correct rotation never does this (the old CA stays published until everything it
   * signed has expired), so such a bundle is a bad rotation: keep serving the one we have, and fail
   * the sync so SvidscopeAgentNotSyncing says so.
   */
  private refuseLockout(next: SpiffeBundle): void {
    const serverChain = this.deps.server.serverChain;
    for (const [whose, chain] of [['this agent\'s SVID', this.agentChain], ['the server\'s own SVID', serverChain]] as const) {
      if (!chain || chain.length === 0) continue;
      try {
        verifyX509Svid(chain, new BundleSet([next]), { now: new Date(this.deps.clock.nowMs()) });
      } catch (err) {
        if (!(isSvidscopeError(err) && err.code === 'unknown-authority')) continue; // expiry is ensureIdentity's business
        // The server's chain is the one from this connection's handshake, which may predate the
        // server renewing onto the new CA (it does so when its CA is tainted, revoked or
        // expired): handshake again before the next sync rather than judge by a stale chain.
        if (chain === serverChain) this.deps.server.reconnect();
        throw new SvidscopeError('unknown-authority', `agent: refusing trust bundle sequence ${next.sequenceNumber ?? '?'} from the server: it does not hold the authority that signed ${whose}, so adopting it would cut the agent off from the server (a bad CA rotation?); still serving sequence ${this.lastBundleSequence ?? '?'}`);
      }
    }
  }

  private agentChain: X509Certificate[] | undefined;
  private agentChainDer: Buffer[] | undefined;
  private agentAuthorityIds: string[] = [];
  private agentIssuedAt = 0;

  private adoptIdentity(chainDer: Buffer[], privateKey: import('node:crypto').KeyObject, leaf: X509Certificate): void {
    this.agentChain = chainDer.map((d, i) => (i === 0 ? leaf : new X509Certificate(d)));
    this.agentChainDer = chainDer;
    this.agentAuthorityIds = chainAuthorityIds(this.agentChain);
    const facts = certificateFacts(leaf);
    this.agentId = facts.uriSans[0];
    this.agentNotAfter = facts.notAfter.getTime();
    // Measured from receipt, not the backdated notBefore (see CachedX509Svid.notBefore).
    const start = Math.max(facts.notBefore.getTime(), Math.min(this.deps.clock.nowMs(), this.agentNotAfter));
    this.agentIssuedAt = start;
    this.agentRenewAt = start + (this.agentNotAfter - start) * this.deps.config.rotationFraction;
    this.deps.server.setIdentity(chainDer.map((d) => encodePem('CERTIFICATE', d)).join(''), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  }

  private async renewAgentSvid(): Promise<void> {
    const key = generateKeyPair('ec-p256');
    try {
      const res = await this.deps.server.renew(createCsr(key.privateKey, key.publicKey));
      this.deps.store.save({ chainDer: res.svid.cert_chain, privateKey: key.privateKey });
      this.adoptIdentity(res.svid.cert_chain, key.privateKey, new X509Certificate(res.svid.cert_chain[0]));
      this.deps.logger.info({ agentId: this.agentId, notAfter: new Date(this.agentNotAfter).toISOString() }, 'renewed the agent SVID');
    } catch (err) {
      this.handleEviction(err);
      throw err;
    }
  }

  /** Evicted or banned: forget the identity so the next sync attests again (with a fresh token). */
  private handleEviction(err: unknown): void {
    // The server's code trailer says why it refused: no record (never attested or evicted), or an SVID it replaced since.
    if (err instanceof ServerCallError && (err.code === 'agent-not-attested' || err.code === 'agent-svid-stale')) {
      this.deps.logger.warn({ agentId: this.agentId }, 'the server evicted this agent; attesting again at the next sync');
      this.agentId = undefined;
      this.agentNotAfter = 0;
      this.deps.store.clear();
    }
  }

  /**
   * What needs a (new) SVID this sync: cached SVIDs due for rotation, and entries without one as
   * far as the cache bound allows (entries a workload is subscribed to or asked for recently always
   * get one; the rest are minted on demand, see mintOnDemand).
   */
  private async mintStale(bundle: SpiffeBundle, bundleChanged: boolean): Promise<void> {
    const { cache, clock, config } = this.deps;
    const now = clock.nowMs();
    const trust = bundleChanged ? new BundleSet([bundle]) : undefined;
    cache.enforceBound();
    let room = cache.svidRoom;
    const wanted = room === Infinity ? undefined : cache.wantedEntryIds();
    const stale: MintItem[] = [];
    for (const entry of cache.allEntries()) {
      if (this.minting.has(entry.id)) continue;
      const current = cache.svidFor(entry.id);
      if (!current && wanted && !wanted.has(entry.id)) {
        if (room <= 0) continue;
        room--;
      }
      const tainted = current !== undefined && this.taint.chainIsTainted(current.authorityIds, current.chain);
      const reason = rotationReason(entry, current, now, config.rotationFraction, trust, this.forced.has(entry.id), tainted);
      if (reason) stale.push({ entry, reason, previous: current });
    }
    await this.mint(stale);
  }

  private readonly minting = new Set<string>();
  private readonly demanded = new Set<string>();
  private demandTimer: TimerHandle | undefined;

  /**
   * A workload asked for entries whose SVID is not cached (evicted by the bound, or never minted
   * because of it): mint them now rather than at the next sync. Requests arriving in the same turn
   * of the event loop share one batch; entries being minted already are not asked for twice.
   */
  mintOnDemand(entryIds: readonly string[]): void {
    if (this.stopped || this.agentId === undefined) return;
    for (const id of entryIds) if (!this.minting.has(id)) this.demanded.add(id);
    if (this.demanded.size === 0 || this.demandTimer) return;
    this.demandTimer = this.deps.clock.setTimeout(() => {
      this.demandTimer = undefined;
      const items: MintItem[] = [];
      for (const id of this.demanded) {
        const entry = this.deps.cache.entry(id);
        if (entry && !this.deps.cache.svidFor(id) && !this.minting.has(id)) items.push({ entry, reason: 'new' });
      }
      this.demanded.clear();
      this.mint(items).catch((err: unknown) => this.deps.logger.warn({ err: describe(err), count: items.length }, 'minting X509-SVIDs a workload asked for failed; retrying at the next sync'));
    }, 0);
  }

  /**
   * Mints in batches of BATCH_SIZE with two batches in flight: the agent generates the keys and
   * CSRs of the next batch while the server signs the current one. Each batch goes into the cache
   * at once, so a workload's stream is told once per batch, and only when it holds one of them.
   */
  private async mint(items: MintItem[]): Promise<void> {
    if (items.length === 0) return;
    for (const it of items) this.minting.add(it.entry.id);
    const inFlight = new Set<Promise<void>>();
    let failed: unknown;
    try {
      for (let i = 0; i < items.length && failed === undefined; i += BATCH_SIZE) {
        const chunk = items.slice(i, i + BATCH_SIZE);
        const p = this.mintBatch(chunk).catch((err: unknown) => {
          failed ??= err;
        });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        if (inFlight.size >= PIPELINE_DEPTH) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    } finally {
      for (const it of items) this.minting.delete(it.entry.id);
    }
    if (failed !== undefined) throw failed;
  }

  private async mintBatch(chunk: MintItem[]): Promise<void> {
    const { cache, clock, config, server, logger } = this.deps;
    const keys = chunk.map(() => generateWorkloadKey(config.workloadKeyType as KeyType));
    const csrs = chunk.map((s, j) => ({ entry_id: s.entry.id, csr: createCsr(keys[j].privateKey, keys[j].publicKey) }));
    let res;
    try {
      res = await withSpan(this.deps.tracer, 'svidscope.agent/mint x509-svid batch', { [SpanAttr.svidType]: 'x509', [SpanAttr.count]: chunk.length },
        () => server.batchNewX509Svid(csrs));
    } catch (err) {
      chunk.forEach(() => this.deps.events?.rotationFailure?.(isSvidscopeError(err) ? err.code : 'internal'));
      throw err;
    }
    const now = clock.nowMs();
    const minted: CachedX509Svid[] = [];
    res.results.forEach((r, j) => {
      const { entry, reason, previous } = chunk[j];
      if (r.status_code !== grpc.status.OK || !r.svid) {
        logger.warn({ entryId: entry.id, status: grpc.status[r.status_code], msg: r.status_message }, 'server refused to sign an X509-SVID');
        this.deps.events?.rotationFailure?.(grpc.status[r.status_code]?.toLowerCase() ?? 'unknown');
        return;
      }
      let facts;
      try {
        facts = this.chains.read(r.svid.cert_chain, keys[j].pkcs8());
      } catch (err) {
        logger.warn({ entryId: entry.id, err: describe(err) }, 'the server answered with an unreadable X509-SVID');
        this.deps.events?.rotationFailure?.('malformed');
        return;
      }
      minted.push({
        authorityIds: facts.authorityIds,
        entryId: entry.id, spiffeId: r.svid.spiffe_id, chain: facts.chain,
        keyDer: facts.keyDer,
        notBefore: Math.max(facts.notBefore, Math.min(now, facts.notAfter)), notAfter: facts.notAfter, entryRevision: entry.revision_number, hint: entry.hint,
      });
      this.forced.delete(entry.id);
      const left = previous ? Math.max(0, (previous.notAfter - now) / (previous.notAfter - previous.notBefore)) : 1;
      this.deps.events?.rotation?.(reason, left);
    });
    // An entry removed while its batch was at the server gets no SVID.
    cache.putSvids(minted.filter((m) => cache.entry(m.entryId) !== undefined));
    if (minted.length) logger.debug({ count: minted.length }, 'minted X509-SVIDs');
  }

  private readonly chains = new ChainReader();
}

interface MintItem {
  entry: EntryMsg;
  reason: RotationReason;
  previous?: CachedX509Svid;
}

/** An entry as the incremental sync names it. */
const pairOf = (e: EntryMsg) => ({ id: e.id, revision: e.revision_number });

/** Why an entry needs a (new) SVID now, or undefined when its cached one is good. */
export function rotationReason(entry: EntryMsg, svid: CachedX509Svid | undefined, now: number, fraction: number, trust: BundleSet | undefined, forced: boolean, tainted = false): RotationReason | undefined {
  if (!svid) return 'new';
  if (tainted) return 'tainted';
  if (forced) return 'forced';
  if (svid.entryRevision !== entry.revision_number) return 'entry_change';
  if (now >= renewalDueMs(svid, fraction)) return 'scheduled';
  if (trust) {
    try {
      verifyX509Svid(svid.chain.map((d) => new X509Certificate(d)), trust, { now: new Date(now) });
    } catch {
      return 'ca_change'; // the bundle no longer holds this SVID's authority
    }
  }
  return undefined;
}

/** When a cached SVID is due for rotation: at `fraction` of its lifetime (epoch ms). */
function renewalDueMs(svid: CachedX509Svid, fraction: number): number {
  return svid.notBefore + (svid.notAfter - svid.notBefore) * fraction;
}

/** The `kid` of a JWT-SVID's header ('' if absent or unreadable: such a token is never matched as tainted). */
function keyIdOf(token: string): string {
  try {
    return decodeProtectedHeader(token).kid ?? '';
  } catch {
    return '';
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
