import { createPublicKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import type { Clock } from '../../../common/clock.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import type { TrustDomain } from '../../spiffe/id/index.js';
import { certificateFacts } from '../../spiffe/x509/index.js';
import { createSelfSignedCa, signIntermediateCa, generateKeyPair, type KeyType, createX509SvidMinter, NOT_BEFORE_BACKDATE_SECONDS, type X509SvidMinter } from '../../spiffe/mint/index.js';
import { KeyJournal, type KeyKind, type KeyPhase, type KeySlot, type UpstreamRecord } from './journal.js';

export interface RotationConfig {
  /** Lifetime of each X.509 CA and JWT key, seconds (SPIRE's ca_ttl; default 24 h). */
  caTtlSeconds: number;
  /** Fraction of a key's lifetime after which its successor is prepared and published (default 1/2). */
  prepareFraction: number;
  /** Fraction after which the successor becomes active (default 5/6). */
  activateFraction: number;
  /** How often the rotation points are checked, seconds (default 10). */
  checkIntervalSeconds: number;
  keyType: KeyType;
  jwtKeyType: KeyType;
}

export interface UpstreamAuthority {
  certificate: X509Certificate;
  privateKey: KeyObject;
}

export interface CaManagerDeps {
  trustDomain: TrustDomain;
  dir: string;
  config: RotationConfig;
  clock: Clock;
  logger: Logger;
  upstream?: UpstreamAuthority;
  /** Called after any change of the key set, so the server republishes its bundle. */
  onChange?: (event: { kind: KeyKind; phase: KeyPhase; id: string }) => void;
}

/** What a key contributes to the trust bundle. */
export interface PublishedAuthorities {
  x509: X509Certificate[];
  jwt: { keyId: string; publicKey: KeyObject; notAfter: number }[];
  /**
   * This server's authorities an operator withheld from the bundle (not in `x509`/`jwt` above).
   * Reported so the publisher removes their CA key records, which an earlier sync may have stored.
   */
  withheld: { x509: X509Certificate[]; jwt: { keyId: string }[] };
}

/**
 * The active X.509 CA as what signs SVIDs: its key, its certificate, the chain to append, and a
 * generation that changes with every activation. A signing worker is handed this (never a file),
 * and a result signed under a generation that is no longer current is discarded by the caller.
 */
export interface X509Signer {
  readonly generation: number;
  readonly keyId: string;
  readonly caCertificateDer: Buffer;
  readonly privateKey: KeyObject;
  /** What follows an SVID in its chain (see {@link CaManager.x509ChainTail}). */
  readonly chainTail: readonly Buffer[];
}

/** One key as the admin API reports it. */
export interface KeyStatus {
  kind: KeyKind;
  phase: KeyPhase;
  id: string;
  notBefore: number;
  notAfter: number;
  /** Withheld from the published bundle (see {@link CaManager.setWithheld}). */
  withheld: boolean;
  /** Marked compromised (see {@link CaManager.taintAuthority}); absent = not tainted. */
  tainted?: boolean;
  /** Revoked: out of the bundle for good, kept in the journal only until it expires. */
  revoked?: boolean;
  /** When it was tainted / revoked (ms). */
  taintedAt?: number;
  revokedAt?: number;
}

/**
 * An upstream X.509 authority as the admin API reports it: the configured one, the ones an
 * operator tainted or revoked, and the bundle's authorities this server's CAs are signed under.
 */
export interface UpstreamStatus {
  /** subjectKeyIdentifier, lower-case hex: what `--upstream --subject-key-id` names. */
  subjectKeyId: string;
  notAfter: number;
  /** The `ca.upstream` of this server's config: every new CA is signed under it. */
  configured: boolean;
  /** Why it cannot be tainted or revoked now (the configured one, or the active or prepared CA chains to it); absent = not in use. */
  inUse?: string;
  tainted: boolean;
  revoked: boolean;
  taintedAt?: number;
  revokedAt?: number;
}

/**
 * Owns the server's signing keys through prepared → active → old. A successor is prepared (and
 * published in the bundle) at `prepareFraction` of the active key's life, activated at
 * `activateFraction`, and the old key stays published until its own notAfter: every SVID it
 * signed is capped at that instant, so nothing it signed is still valid when it leaves.
 */
export class CaManager {
  private slots: KeySlot[] = [];
  private upstreamRecords: UpstreamRecord[] = [];
  private minter: X509SvidMinter | undefined;
  private signer: X509Signer | undefined;
  private generation = 0;
  private timer: { id: number } | undefined;
  private readonly journal: KeyJournal;

  constructor(private readonly deps: CaManagerDeps) {
    this.journal = new KeyJournal(deps.dir);
  }

  /** Loads the journal, creates or catches up keys as the clock requires, and starts the check loop. */
  start(): void {
    const { slots, upstream } = this.journal.load();
    this.slots = slots;
    this.upstreamRecords = upstream;
    const configured = this.deps.upstream && this.upstreamRecord(this.deps.upstream.certificate);
    if (configured?.revoked) this.deps.logger.error({ subjectKeyId: configured.subjectKeyId }, 'the configured upstream authority (ca.upstream) was revoked: it stays out of the trust bundle, so nothing signed under it verifies; configure another one');
    this.rotate();
    this.schedule();
  }

  stop(): void {
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Runs the rotation points once; returns whether anything changed. Called by the loop and by tests. */
  rotate(): boolean {
    let changed = false;
    for (const kind of ['x509', 'jwt'] as const) changed = this.rotateKind(kind) || changed;
    // A marked upstream authority leaves the journal once expired: nothing signed under it verifies any more.
    const now = this.deps.clock.nowMs();
    const marked = this.upstreamRecords.length;
    this.upstreamRecords = this.upstreamRecords.filter((r) => r.notAfter > now);
    changed = changed || this.upstreamRecords.length !== marked;
    if (changed) this.persist();
    return changed;
  }

  /** Prepares and activates a fresh key of `kind` now (forced rotation, e.g. for a game day). */
  forceRotate(kind: KeyKind): void {
    const next = this.slot(kind, 'prepared') ?? this.prepare(kind);
    this.activate(next);
    this.persist();
  }

  get x509Minter(): X509SvidMinter {
    const active = this.slot('x509', 'active');
    if (!this.minter || !active) throw new SvidscopeError('internal', 'ca: no active X.509 CA (start() not called)');
    return this.minter;
  }

  /**
   * The active X.509 CA's chain, CA certificate first (DER), to append to every SVID. Decoded once
   * per activation, not per SVID; callers must not modify it.
   */
  get x509ChainTail(): Buffer[] {
    return [...(this.signer?.chainTail ?? [])];
  }

  /** The active X.509 CA for signing elsewhere (worker threads); its generation moves with every activation. */
  get x509Signer(): X509Signer {
    if (!this.signer) throw new SvidscopeError('internal', 'ca: no active X.509 CA (start() not called)');
    return this.signer;
  }

  get activeJwtKey(): { keyId: string; privateKey: KeyObject; notAfter: number } {
    const active = this.slot('jwt', 'active');
    if (!active) throw new SvidscopeError('internal', 'ca: no active JWT key (start() not called)');
    return { keyId: active.id, privateKey: active.privateKey, notAfter: active.notAfter };
  }

  /**
   * The authorities this server publishes: every prepared, active and old key not yet expired and
   * not withheld; the withheld ones are listed apart so the publisher can take them out.
   */
  published(): PublishedAuthorities {
    const now = this.deps.clock.nowMs();
    const live = this.slots.filter((s) => s.notAfter > now);
    const shown = live.filter((s) => !this.isWithheld(s));
    const held = this.slots.filter((s) => this.isWithheld(s));
    const caCert = (s: KeySlot) => new X509Certificate(Buffer.from(s.chain![0], 'base64'));
    const revokedUpstream = this.upstreamRecords.filter((r) => r.revoked && r.notAfter > now).map((r) => new X509Certificate(Buffer.from(r.certificate, 'base64')));
    const x509 = (this.deps.upstream ? [this.deps.upstream.certificate] : shown.filter((s) => s.kind === 'x509').map(caCert))
      .filter((c) => !this.upstreamRecord(c)?.revoked);
    const jwt = shown
      .filter((s) => s.kind === 'jwt')
      .map((s) => ({ keyId: s.id, publicKey: createPublicKey({ key: Buffer.from(s.publicKeySpki!, 'base64'), format: 'der', type: 'spki' }), notAfter: s.notAfter }));
    const withheld = {
      // Revoked upstream authorities too: their records must leave the bundle, though no slot holds them.
      x509: [...held.filter((s) => s.kind === 'x509').map(caCert), ...revokedUpstream],
      jwt: held.filter((s) => s.kind === 'jwt').map((s) => ({ keyId: s.id })),
    };
    return { x509, jwt, withheld };
  }

  /**
   * This server's tainted keys not yet expired, revoked ones included: X.509 CAs as their
   * certificates (DER), JWT keys by key id. Agents replace every SVID these signed.
   */
  taintedAuthorities(): { x509: Buffer[]; jwt: string[] } {
    const now = this.deps.clock.nowMs();
    const tainted = this.slots.filter((s) => s.tainted && s.notAfter > now);
    return {
      x509: [
        ...tainted.filter((s) => s.kind === 'x509' && s.chain?.length).map((s) => Buffer.from(s.chain![0], 'base64')),
        // Agents match every certificate of a chain, so an SVID under a CA signed by a tainted upstream is replaced too.
        ...this.upstreamRecords.filter((r) => r.tainted && r.notAfter > now).map((r) => Buffer.from(r.certificate, 'base64')),
      ],
      jwt: tainted.filter((s) => s.kind === 'jwt').map((s) => s.id),
    };
  }

  /**
   * Every key this server holds. An X.509 CA signed under a tainted upstream authority reports
   * tainted as well: what it signed chains to the compromised key (the server re-keys its own SVID
   * off such a CA, and the authorities gauge counts it there).
   */
  status(): KeyStatus[] {
    const taintedUpstream = new Set(this.upstreamRecords.filter((r) => r.tainted).map((r) => r.subjectKeyId));
    return this.slots.map((s) => {
      const tainted = s.tainted || (s.kind === 'x509' && taintedUpstream.size > 0 && taintedUpstream.has(this.caFacts(s).authorityKeyId ?? ''));
      return { kind: s.kind, phase: s.phase, id: s.id, notBefore: s.notBefore, notAfter: s.notAfter, withheld: this.isWithheld(s),
        ...(tainted ? { tainted: true } : {}), ...(s.revoked ? { revoked: true } : {}),
        ...(s.taintedAt !== undefined ? { taintedAt: s.taintedAt } : {}), ...(s.revokedAt !== undefined ? { revokedAt: s.revokedAt } : {}) };
    });
  }

  /**
   * The upstream X.509 authorities: the configured one, the ones an operator marked, and those of
   * `bundleAuthorities` (the trust bundle's X.509 authorities) that one of this server's CAs is
   * signed under, e.g. the previous upstream after `ca.upstream` was replaced.
   */
  upstreamStatus(bundleAuthorities: readonly X509Certificate[]): UpstreamStatus[] {
    const out = new Map<string, UpstreamStatus>();
    const add = (cert: X509Certificate) => {
      const ski = certificateFacts(cert).subjectKeyId;
      if (!ski || out.has(ski)) return;
      const rec = this.upstreamRecords.find((r) => r.subjectKeyId === ski);
      const inUse = this.inUse(cert, ski);
      out.set(ski, { subjectKeyId: ski, notAfter: new Date(cert.validTo).getTime(), configured: this.isConfigured(cert, ski), ...(inUse ? { inUse } : {}),
        tainted: rec?.tainted ?? false, revoked: rec?.revoked ?? false, ...(rec ? { taintedAt: rec.taintedAt } : {}), ...(rec?.revokedAt !== undefined ? { revokedAt: rec.revokedAt } : {}) });
    };
    if (this.deps.upstream) add(this.deps.upstream.certificate);
    for (const r of this.upstreamRecords) add(new X509Certificate(Buffer.from(r.certificate, 'base64')));
    const signers = new Set(this.slots.filter((s) => s.kind === 'x509').map((s) => this.caFacts(s).authorityKeyId).filter((k): k is string => k !== undefined));
    for (const cert of bundleAuthorities) if (signers.has(certificateFacts(cert).subjectKeyId ?? '') && !this.ownCa(certificateFacts(cert).subjectKeyId!)) add(cert);
    return [...out.values()];
  }

  /**
   * Taints an upstream X.509 authority named by its subject key identifier (hex, colons allowed):
   * agents replace every SVID whose chain passes through it. It must be one of the trust bundle's
   * X.509 authorities (`bundleAuthorities`) and not this server's own CA (taint that by key id),
   * and nothing may still sign under it: not the configured upstream, not the active or prepared
   * CA (`authority-in-use`). Persisted in the journal.
   */
  taintUpstreamAuthority(subjectKeyId: string, bundleAuthorities: readonly X509Certificate[]): UpstreamStatus {
    const ski = normalizeKeyId(subjectKeyId);
    let rec = this.upstreamRecords.find((r) => r.subjectKeyId === ski);
    if (!rec) {
      const cert = this.bundleAuthority(ski, bundleAuthorities);
      this.refuseInUse(cert, ski, 'taint');
      rec = { subjectKeyId: ski, certificate: cert.raw.toString('base64'), notAfter: new Date(cert.validTo).getTime(), tainted: true, taintedAt: this.deps.clock.nowMs() };
      this.upstreamRecords.push(rec);
      this.persist();
      this.deps.logger.warn({ kind: 'x509', subjectKeyId: ski, upstream: true }, 'tainted upstream authority: agents replace every SVID whose chain passes through it');
      this.deps.onChange?.({ kind: 'x509', phase: 'old', id: ski });
    }
    return this.upstreamStatusOf(rec);
  }

  /**
   * Takes a tainted upstream X.509 authority out of the trust bundle for good; refused while it
   * is not tainted (`authority-order`) or still in use (`authority-in-use`, see
   * {@link taintUpstreamAuthority}). Persisted in the journal until the authority expires.
   */
  revokeUpstreamAuthority(subjectKeyId: string, bundleAuthorities: readonly X509Certificate[]): UpstreamStatus {
    const ski = normalizeKeyId(subjectKeyId);
    const rec = this.upstreamRecords.find((r) => r.subjectKeyId === ski);
    if (!rec) {
      this.bundleAuthority(ski, bundleAuthorities); // not-found, or this server's own CA
      throw new SvidscopeError('authority-order', `ca: the upstream authority ${ski} is not tainted; taint it first so agents replace every SVID chained to it before it leaves the bundle`);
    }
    if (!rec.revoked) {
      this.refuseInUse(new X509Certificate(Buffer.from(rec.certificate, 'base64')), ski, 'revoke');
      rec.revoked = true;
      rec.revokedAt = this.deps.clock.nowMs();
      this.persist();
      this.deps.logger.warn({ kind: 'x509', subjectKeyId: ski, upstream: true }, 'revoked upstream authority: removed from the trust bundle');
      this.deps.onChange?.({ kind: 'x509', phase: 'old', id: ski });
    }
    return this.upstreamStatusOf(rec);
  }

  /**
   * Withholds one of this server's keys from the trust bundle, or publishes it again (game days:
   * a "bad rotation" where the active CA keeps signing but the bundle no longer holds it, so
   * nothing it signs verifies). `id` undefined = the active key of `kind`. The flag is persisted
   * in the journal; an unchanged flag is a no-op. Returns the key's status.
   */
  setWithheld(kind: KeyKind, id: string | undefined, withheld: boolean): KeyStatus {
    if (withheld && kind === 'x509' && this.deps.upstream) {
      throw new SvidscopeError('usage', 'ca: this server signs under an upstream authority, so the bundle holds the upstream root, not this server\'s X.509 CA; there is no X.509 authority of this server to withhold');
    }
    const slot = id === undefined ? this.slot(kind, 'active') : this.slots.find((s) => s.id === id);
    if (!slot) throw new SvidscopeError('not-found', id === undefined ? `ca: no active ${kind} key` : `ca: no ${kind} key with id ${id}`);
    if (slot.kind !== kind) throw new SvidscopeError('not-found', `ca: no ${kind} key with id ${slot.id} (that id is ${slot.kind === 'x509' ? 'an X.509 CA' : 'a JWT key'})`);
    if (Boolean(slot.withheld) !== withheld) {
      if (withheld) slot.withheld = true;
      else delete slot.withheld; // journals without withheld keys stay as they were
      this.persist();
      const fields = { kind, keyId: slot.id, phase: slot.phase };
      if (withheld && slot.phase === 'active') {
        this.deps.logger.warn(fields, `withheld the active ${kind === 'x509' ? 'X.509 CA' : 'JWT key'} from the trust bundle: SVIDs it signs will not verify against the bundle`);
      } else {
        this.deps.logger.info(fields, withheld ? 'withheld signing key from the trust bundle' : 'published signing key in the trust bundle again');
      }
      this.deps.onChange?.({ kind, phase: slot.phase, id: slot.id });
    }
    return this.status().find((s) => s.id === slot.id)!;
  }

  /**
   * Key-compromise response, step 1: prepares (publishes without signing) a fresh key of `kind`,
   * or returns the one already prepared. Activation waits for the operator, so the new key can
   * reach every agent and federated peer first.
   */
  prepareAuthority(kind: KeyKind): KeyStatus {
    const slot = this.slot(kind, 'prepared') ?? this.prepare(kind);
    this.persist();
    return this.statusOf(slot);
  }

  /** Step 2: switches signing to the prepared key; refused unless `id` (default: the prepared one) is prepared. */
  activateAuthority(kind: KeyKind, id?: string): KeyStatus {
    const slot = id === undefined ? this.slot(kind, 'prepared') : this.findSlot(kind, id);
    if (!slot || slot.phase !== 'prepared') {
      throw new SvidscopeError('authority-order', slot
        ? `ca: the ${kind} key ${slot.id} is ${slot.phase}, not prepared; only a prepared key (published, so every verifier already trusts it) can be activated`
        : `ca: no prepared ${kind} key; run prepare first so the new key reaches every verifier before it signs`);
    }
    this.activate(slot);
    this.persist();
    return this.statusOf(slot);
  }

  /** Step 3: marks a non-active key tainted, so agents replace every SVID it signed at once. */
  taintAuthority(kind: KeyKind, id: string): KeyStatus {
    const slot = this.findSlot(kind, id);
    if (!slot) throw new SvidscopeError('not-found', `ca: no ${kind} key with id ${id}`);
    if (slot.phase === 'active') {
      throw new SvidscopeError('authority-order', `ca: the ${kind} key ${id} is the active one; prepare and activate a successor before tainting it, or every new SVID would be signed by a tainted key`);
    }
    if (!slot.tainted) {
      slot.tainted = true;
      slot.taintedAt = this.deps.clock.nowMs();
      this.persist();
      this.deps.logger.warn({ kind, keyId: id, phase: slot.phase }, 'tainted signing key: agents replace every SVID it signed');
      this.deps.onChange?.({ kind, phase: slot.phase, id });
    }
    return this.statusOf(slot);
  }

  /**
   * Step 4: takes a tainted, non-active key out of the bundle for good. It stays in the journal
   * (as revoked) until it expires, so the publisher keeps removing any record an earlier sync stored.
   */
  revokeAuthority(kind: KeyKind, id: string): KeyStatus {
    const slot = this.findSlot(kind, id);
    if (!slot) throw new SvidscopeError('not-found', `ca: no ${kind} key with id ${id}`);
    if (slot.phase === 'active') throw new SvidscopeError('authority-order', `ca: the ${kind} key ${id} is the active one and cannot be revoked; activate a successor, then taint it`);
    if (!slot.tainted) throw new SvidscopeError('authority-order', `ca: the ${kind} key ${id} is not tainted; taint it first so agents replace what it signed before it leaves the bundle`);
    if (!slot.revoked) {
      slot.revoked = true;
      slot.revokedAt = this.deps.clock.nowMs();
      this.persist();
      this.deps.logger.warn({ kind, keyId: id }, 'revoked signing key: removed from the trust bundle');
      this.deps.onChange?.({ kind, phase: slot.phase, id });
    }
    return this.statusOf(slot);
  }

  /**
   * When the next key of `kind` must be active (ms), for telemetry; read-only. Normally the active
   * key's activate point, where the loop switches to the scheduled successor. A successor prepared
   * before the active key's prepare point was prepared by an operator (a key-compromise response),
   * and that response is due to finish by the prepare point. Undefined before the first key.
   */
  activationDue(kind: KeyKind): number | undefined {
    const active = this.slot(kind, 'active');
    if (!active) return undefined;
    const life = active.notAfter - active.notBefore;
    const preparePoint = active.notBefore + life * this.deps.config.prepareFraction;
    const prepared = this.slot(kind, 'prepared');
    // X.509 notBefore is backdated and floored to the second: a scheduled successor can look up to that much earlier.
    if (prepared && prepared.notBefore < preparePoint - (NOT_BEFORE_BACKDATE_SECONDS + 1) * 1000) return preparePoint;
    return active.notBefore + life * this.deps.config.activateFraction;
  }

  /** notAfter of the upstream authority the X.509 CAs are signed under (ms), if any; read-only, for telemetry. */
  get upstreamNotAfter(): number | undefined {
    const u = this.deps.upstream;
    return u ? new Date(u.certificate.validTo).getTime() : undefined;
  }

  private persist(): void {
    this.journal.save(this.slots, this.upstreamRecords);
  }

  private readonly factsBySlot = new Map<string, { subjectKeyId?: string; authorityKeyId?: string }>();

  /** The key identifiers of an X.509 slot's CA certificate, decoded once per slot. */
  private caFacts(s: KeySlot): { subjectKeyId?: string; authorityKeyId?: string } {
    let facts = this.factsBySlot.get(s.id);
    if (!facts) {
      const f = s.chain?.length ? certificateFacts(new X509Certificate(Buffer.from(s.chain[0], 'base64'))) : undefined;
      facts = { subjectKeyId: f?.subjectKeyId, authorityKeyId: f?.authorityKeyId };
      this.factsBySlot.set(s.id, facts);
    }
    return facts;
  }

  private ownCa(ski: string): KeySlot | undefined {
    return this.slots.find((s) => s.kind === 'x509' && (s.id === ski || this.caFacts(s).subjectKeyId === ski));
  }

  private upstreamRecord(cert: X509Certificate): UpstreamRecord | undefined {
    const ski = certificateFacts(cert).subjectKeyId;
    return ski === undefined ? undefined : this.upstreamRecords.find((r) => r.subjectKeyId === ski);
  }

  private isConfigured(cert: X509Certificate, ski: string): boolean {
    const u = this.deps.upstream?.certificate;
    return u !== undefined && (u.raw.equals(cert.raw) || certificateFacts(u).subjectKeyId === ski);
  }

  /** Why nothing may taint or revoke `cert` now, or undefined: something this server signs with chains to it. */
  private inUse(cert: X509Certificate, ski: string): string | undefined {
    if (this.isConfigured(cert, ski)) return 'it is this server\'s configured upstream authority (ca.upstream): every new CA is signed under it; configure another upstream authority and restart the server, then prepare and activate a CA under it';
    for (const phase of ['active', 'prepared'] as const) {
      const slot = this.slot('x509', phase);
      if (!slot?.chain?.length) continue;
      const ca = new X509Certificate(Buffer.from(slot.chain[0], 'base64'));
      const chained = this.caFacts(slot).authorityKeyId === ski || (ca.checkIssued(cert) && ca.verify(cert.publicKey));
      if (chained) return `the ${phase} X.509 CA ${slot.id} chains to it; prepare and activate a CA under another upstream authority first, or every new SVID would chain to it`;
    }
    return undefined;
  }

  private refuseInUse(cert: X509Certificate, ski: string, op: 'taint' | 'revoke'): void {
    const why = this.inUse(cert, ski);
    if (why) throw new SvidscopeError('authority-in-use', `ca: cannot ${op} the upstream authority ${ski}: ${why}`);
  }

  /** The trust bundle's X.509 authority with subject key id `ski`, which must not be one of this server's own CAs. */
  private bundleAuthority(ski: string, bundleAuthorities: readonly X509Certificate[]): X509Certificate {
    const own = this.ownCa(ski);
    if (own) throw new SvidscopeError('usage', `ca: ${ski} is this server's own X.509 CA (${own.phase}), not an upstream authority; name it with --kind x509 --key-id ${own.id}`);
    const cert = bundleAuthorities.find((c) => certificateFacts(c).subjectKeyId === ski);
    if (!cert) throw new SvidscopeError('not-found', `ca: no X.509 authority of the trust bundle has subject key id ${ski} (\`svidscope authority list\` shows the upstream authorities)`);
    return cert;
  }

  private upstreamStatusOf(rec: UpstreamRecord): UpstreamStatus {
    return this.upstreamStatus([]).find((u) => u.subjectKeyId === rec.subjectKeyId)!;
  }

  private findSlot(kind: KeyKind, id: string): KeySlot | undefined {
    return this.slots.find((s) => s.kind === kind && s.id === id);
  }

  private statusOf(slot: KeySlot): KeyStatus {
    return this.status().find((s) => s.id === slot.id)!;
  }

  /** With an upstream authority the bundle holds the upstream root, so an X.509 CA's flag has no effect. */
  private isWithheld(s: KeySlot): boolean {
    if (s.revoked) return true; // a revoked key never returns to the bundle, upstream or not
    return Boolean(s.withheld) && !(s.kind === 'x509' && this.deps.upstream);
  }

  private schedule(): void {
    this.timer = this.deps.clock.setTimeout(() => {
      try {
        this.rotate();
      } catch (err) {
        this.deps.logger.error({ err }, 'ca rotation check failed; retrying at the next interval');
      }
      this.schedule();
    }, this.deps.config.checkIntervalSeconds * 1000);
  }

  private rotateKind(kind: KeyKind): boolean {
    const now = this.deps.clock.nowMs();
    // Old keys leave once expired: by then every SVID they signed has expired too.
    const before = this.slots.length;
    this.slots = this.slots.filter((s) => !(s.kind === kind && s.phase === 'old' && s.notAfter <= now));
    let changed = this.slots.length !== before;
    let active = this.slot(kind, 'active');
    if (!active || active.notAfter <= now) {
      // First start, or the server was down past the active key's life: nothing valid to hand
      // over from, so activate at once (the prepared key if it is still good).
      const prepared = this.slot(kind, 'prepared');
      this.activate(prepared && prepared.notAfter > now ? prepared : this.prepare(kind));
      return true;
    }
    const life = active.notAfter - active.notBefore;
    const prepared = this.slot(kind, 'prepared');
    if (!prepared && now >= active.notBefore + life * this.deps.config.prepareFraction) {
      this.prepare(kind);
      changed = true;
    }
    const next = this.slot(kind, 'prepared');
    if (next && now >= active.notBefore + life * this.deps.config.activateFraction) {
      this.activate(next);
      active = next;
      changed = true;
    }
    if (kind === 'x509' && !this.minter) this.loadMinter(active);
    return changed;
  }

  private slot(kind: KeyKind, phase: KeyPhase): KeySlot | undefined {
    return this.slots.find((s) => s.kind === kind && s.phase === phase);
  }

  private prepare(kind: KeyKind): KeySlot {
    const now = this.deps.clock.now();
    const { caTtlSeconds, keyType, jwtKeyType } = this.deps.config;
    let slot: KeySlot;
    if (kind === 'x509') {
      const { certificate, privateKey, chain } = this.newX509Ca(keyType, caTtlSeconds, now);
      // The CA's subject key identifier is its id: every SVID it signs names it as authority key
      // identifier, so the key id an operator taints is the one agents report SVIDs under.
      const id = certificateFacts(certificate).subjectKeyId ?? randomBytes(16).toString('hex');
      slot = {
        id, kind, phase: 'prepared', privateKey, chain: chain.map((d) => d.toString('base64')),
        notBefore: new Date(certificate.validFrom).getTime(), notAfter: new Date(certificate.validTo).getTime(),
      };
    } else {
      const id = randomBytes(16).toString('hex');
      const { privateKey, publicKey } = generateKeyPair(jwtKeyType);
      const notAfter = now.getTime() + caTtlSeconds * 1000;
      slot = { id, kind, phase: 'prepared', privateKey, notBefore: now.getTime(), notAfter,
        publicKeySpki: (publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64') };
    }
    const id = slot.id;
    this.journal.addKey(id, slot.privateKey);
    this.slots.push(slot);
    this.deps.logger.info({ kind, keyId: id, notAfter: new Date(slot.notAfter).toISOString() }, 'prepared next signing key');
    this.deps.onChange?.({ kind, phase: 'prepared', id });
    return slot;
  }

  private activate(next: KeySlot): void {
    const current = this.slot(next.kind, 'active');
    if (current) current.phase = 'old';
    next.phase = 'active';
    if (next.kind === 'x509') this.loadMinter(next);
    this.deps.logger.info({ kind: next.kind, keyId: next.id, previous: current?.id }, 'activated signing key');
    if (this.isWithheld(next)) this.deps.logger.warn({ kind: next.kind, keyId: next.id }, 'the activated signing key is withheld from the trust bundle; SVIDs it signs will not verify against the bundle');
    this.deps.onChange?.({ kind: next.kind, phase: 'active', id: next.id });
  }

  private loadMinter(slot: KeySlot): void {
    const caCertificateDer = Buffer.from(slot.chain![0], 'base64');
    this.minter = createX509SvidMinter({ caCertificate: new X509Certificate(caCertificateDer), caPrivateKey: slot.privateKey });
    const chainTail = (slot.chain ?? []).map((b64) => Buffer.from(b64, 'base64')).slice(this.deps.upstream ? 0 : 1);
    this.signer = Object.freeze({ generation: ++this.generation, keyId: slot.id, caCertificateDer, privateKey: slot.privateKey, chainTail: Object.freeze(chainTail) });
  }

  private newX509Ca(keyType: KeyType, ttlSeconds: number, now: Date): { certificate: X509Certificate; privateKey: KeyObject; chain: Buffer[] } {
    const upstream = this.deps.upstream;
    if (!upstream) {
      const ca = createSelfSignedCa({ trustDomain: this.deps.trustDomain, keyType, ttlSeconds, now });
      return { certificate: ca.certificate, privateKey: ca.privateKey, chain: [ca.der] };
    }
    // Never outlive the upstream authority: an intermediate past its parent would not verify.
    const upstreamLeft = Math.floor((new Date(upstream.certificate.validTo).getTime() - now.getTime()) / 1000);
    const { privateKey, publicKey } = generateKeyPair(keyType);
    const ca = signIntermediateCa({
      parentCert: upstream.certificate, parentKey: upstream.privateKey, trustDomain: this.deps.trustDomain,
      publicKey, ttlSeconds: Math.min(ttlSeconds, upstreamLeft), now,
    });
    return { certificate: ca.certificate, privateKey, chain: [ca.der] };
  }
}

/** A key identifier as operators paste it: hex, any case, with or without colons (openssl prints `AB:CD:…`). */
function normalizeKeyId(raw: string): string {
  const hex = raw.trim().replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) throw new SvidscopeError('usage', `ca: subject key id must be hex (colons allowed), got "${raw}"`);
  return hex;
}
